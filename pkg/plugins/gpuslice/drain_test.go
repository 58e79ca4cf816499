package gpuslice

import (
	"context"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"

	"github.com/gpuslice/gpuslice/pkg/assignment"
	"github.com/gpuslice/gpuslice/pkg/topology/fixtures"
)

func drainedNode(name, drain string) fwk.NodeInfo {
	ni := framework.NewNodeInfo()
	n := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if drain != "" {
		n.Annotations = map[string]string{assignment.DrainAnnotation: drain}
	}
	ni.SetNode(n)
	return ni
}

// A pod the kubelet could put on a GPU the repartitioner drains is turned
// away from the node; one asking for a resource the drained GPU has no
// free device of is not.
func TestFilterHonoursDrains(t *testing.T) {
	args := testArgs("binpack")
	// Two H100s, each 3g.40gb + 2×2g.20gb.
	spec := fixtures.Spec{Name: "n", Product: "NVIDIA H100 80GB HBM3", GPUs: 2, MIG: []string{"3g.40gb", "2g.20gb", "2g.20gb"}}
	pl := newPlugin(t, testShared(newCache(t, spec), args), args, nil)
	// Take both 3g.40gb: GPU 0's and GPU 1's.
	for _, name := range []string{"a", "b"} {
		pod := gpuPod(name, map[string]int64{"nvidia.com/mig-3g.40gb": 1})
		cs := cycle(t, pl, pod)
		if st := pl.Filter(context.Background(), cs, pod, drainedNode("n", "")); !st.IsSuccess() {
			t.Fatal(st)
		}
		if st := pl.Reserve(context.Background(), cs, pod, "n"); !st.IsSuccess() {
			t.Fatal(st)
		}
	}
	tests := []struct {
		name, drain, res string
		code             fwk.Code
		msg              string
	}{
		{"no drain", "", "nvidia.com/mig-2g.20gb", fwk.Success, ""},
		{"drained GPU has a free 2g", "1", "nvidia.com/mig-2g.20gb", fwk.Unschedulable, "GPU 1 is draining for a MIG layout change and the kubelet could hand out its free nvidia.com/mig-2g.20gb"},
		{"drained GPU has no free 3g", "1", "nvidia.com/mig-3g.40gb", fwk.Unschedulable, "no free nvidia.com/mig-3g.40gb"},
		{"malformed annotation drains nothing", "one", "nvidia.com/mig-2g.20gb", fwk.Success, ""},
		{"unknown GPU index", "7", "nvidia.com/mig-2g.20gb", fwk.Success, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pod := gpuPod("p", map[string]int64{tc.res: 1})
			cs := cycle(t, pl, pod)
			st := pl.Filter(context.Background(), cs, pod, drainedNode("n", tc.drain))
			if st.Code() != tc.code || !strings.Contains(st.Message(), tc.msg) {
				t.Fatalf("Filter = %v %q, want %v %q", st.Code(), st.Message(), tc.code, tc.msg)
			}
		})
	}
	// The drain is judged after the memo: a fit remembered for the node's
	// state does not let a drained node through.
	pod := gpuPod("p", map[string]int64{"nvidia.com/mig-2g.20gb": 1})
	for range 2 {
		cs := cycle(t, pl, pod)
		if st := pl.Filter(context.Background(), cs, pod, drainedNode("n", "0,1")); st.Code() != fwk.Unschedulable {
			t.Fatalf("Filter on a node draining both GPUs = %v", st)
		}
	}
}

// Lifting a drain wakes the pods it kept off; adding one does not.
func TestHintNodeDrainLifted(t *testing.T) {
	args := testArgs("binpack")
	pl := newPlugin(t, testShared(newCache(t), args), args, nil)
	pod := gpuPod("p", map[string]int64{"nvidia.com/mig-1g.10gb": 1})
	with := func(v string) *v1.Node {
		n := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n"}}
		if v != "" {
			n.Annotations = map[string]string{assignment.DrainAnnotation: v}
		}
		return n
	}
	for _, tc := range []struct {
		old, new string
		want     fwk.QueueingHint
	}{
		{"0,3", "3", fwk.Queue},
		{"3", "", fwk.Queue},
		{"3", "bad", fwk.Queue},
		{"", "3", fwk.QueueSkip},
		{"3", "3,4", fwk.QueueSkip},
	} {
		got, err := pl.hintNode(klog.Background(), pod, with(tc.old), with(tc.new))
		if err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("drain %q → %q: hint %v, want %v", tc.old, tc.new, got, tc.want)
		}
	}
}
