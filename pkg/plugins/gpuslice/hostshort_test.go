package gpuslice

import (
	"context"
	"fmt"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"

	"github.com/gpuslice/gpuslice/pkg/topology/fixtures"
)

// podWithCPU asks for gpus whole GPUs (none: a CPU-only pod) and cores.
func podWithCPU(name string, gpus, cores int64) *v1.Pod {
	p := gpuPod(name, nil)
	req := v1.ResourceList{v1.ResourceCPU: *resource.NewQuantity(cores, resource.DecimalSI)}
	if gpus > 0 {
		req["nvidia.com/gpu"] = *resource.NewQuantity(gpus, resource.DecimalSI)
	}
	p.Spec.Containers[0].Resources = v1.ResourceRequirements{Requests: req, Limits: req}
	return p
}

// nodeInfoCPU is a node with alloc cores, used of them taken.
func nodeInfoCPU(name string, alloc, used int64) fwk.NodeInfo {
	holder := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name + "-holder", Namespace: "default", UID: types.UID(name + "-holder")},
		Spec: v1.PodSpec{NodeName: name, Containers: []v1.Container{{Name: "c", Resources: v1.ResourceRequirements{
			Requests: v1.ResourceList{v1.ResourceCPU: *resource.NewQuantity(used, resource.DecimalSI)},
		}}}},
	}
	ni := framework.NewNodeInfo(holder)
	ni.SetNode(&v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Status: v1.NodeStatus{Allocatable: v1.ResourceList{
			v1.ResourceCPU:    *resource.NewQuantity(alloc, resource.DecimalSI),
			v1.ResourceMemory: resource.MustParse("1Ti"),
		}},
	})
	return ni
}

// The fragmentation-aware profile counts the host shortfall. The mix asks
// for 2 GPUs and 20 cores per pod (and 7 GPUs and 70 cores, the pods that
// fill the nodes): 10 cores per GPU. Both nodes have 1 GPU free, which no
// class fits, so class by class a CPU-only pod strands nothing on either.
// But the free GPU will be taken at 10 cores per GPU: on "tight" (12 cores
// free) a CPU-only pod of 8 cores leaves 4, 0.6 GPU short; "roomy" has 100.
// The pod must score lower on tight; with binpack, CPU-only pods are not
// scored at all.
func TestFragmentationAwareCountsHostShortfall(t *testing.T) {
	ctx := context.Background()
	specs := []fixtures.Spec{{Name: "tight", Product: "NVIDIA H200", GPUs: 8}, {Name: "roomy", Product: "NVIDIA H200", GPUs: 8}}
	args := testArgs("fragmentation-aware")
	pl := newPlugin(t, testShared(newCache(t, specs...), args), args, nil)
	if pl.scorer.HostShortfall != fragmentationHostShortfall {
		t.Fatalf("scorer's host shortfall weight %v, want %v", pl.scorer.HostShortfall, fragmentationHostShortfall)
	}
	for i := range 20 {
		cycle(t, pl, podWithCPU(fmt.Sprint("mix", i), 2, 20))
	}
	for _, n := range []string{"tight", "roomy"} {
		fill := podWithCPU("fill-"+n, 7, 70) // at the mix's rate too
		cs := cycle(t, pl, fill)
		if st := pl.Filter(ctx, cs, fill, nodeInfo(n)); !st.IsSuccess() {
			t.Fatal(st)
		}
		if st := pl.Reserve(ctx, cs, fill, n); !st.IsSuccess() {
			t.Fatal(st)
		}
	}
	// PreFilter keeps a CPU-only pod's state for scoring and skips Filter.
	cpuOnlyCycle := func(pod *v1.Pod) *framework.CycleState {
		cs := framework.NewCycleState()
		if _, st := pl.PreFilter(ctx, cs, pod, nil); !st.IsSkip() {
			t.Fatalf("PreFilter of a CPU-only pod: %v, want Skip", st)
		}
		return cs
	}
	pod := podWithCPU("cpu-only", 0, 8)
	cs := cpuOnlyCycle(pod)
	tight, st := pl.Score(ctx, cs, pod, nodeInfoCPU("tight", 100, 88))
	if !st.IsSuccess() {
		t.Fatal(st)
	}
	roomy, st := pl.Score(ctx, cs, pod, nodeInfoCPU("roomy", 200, 100))
	if !st.IsSuccess() {
		t.Fatal(st)
	}
	// Both nodes are as full, so the binpack tie-break adds the same to both.
	if got, want := tight-roomy, int64(-0.6*scoreScale); got != want {
		t.Errorf("CPU-only pod: tight %d, roomy %d; want tight lower by %d", tight, roomy, -want)
	}

	// Without the shortfall (the allocator's own scorer, weight 0) the two
	// tie: the class does not fit either node.
	sc := pl.scorer
	sc.HostShortfall = 0
	pl.scorer = sc
	cs = cpuOnlyCycle(podWithCPU("cpu-only-2", 0, 8))
	a, _ := pl.Score(ctx, cs, pod, nodeInfoCPU("tight", 100, 88))
	b, _ := pl.Score(ctx, cs, pod, nodeInfoCPU("roomy", 200, 100))
	if a != b {
		t.Errorf("without the shortfall: tight %d, roomy %d; want a tie", a, b)
	}
}
