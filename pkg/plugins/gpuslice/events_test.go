package gpuslice

import (
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"

	gpusliceapi "github.com/gpuslice/gpuslice/pkg/apis/gpuslice/v1alpha1"
	"github.com/gpuslice/gpuslice/pkg/topology"
	"github.com/gpuslice/gpuslice/pkg/topology/fixtures"
)

func unstructuredOf(t *testing.T, obj runtime.Object) *unstructured.Unstructured {
	t.Helper()
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		t.Fatal(err)
	}
	return &unstructured.Unstructured{Object: m}
}

func gpuNode(t *testing.T, spec fixtures.Spec, state gpusliceapi.NodeState, fingerprint string) *unstructured.Unstructured {
	gn := &gpusliceapi.GPUNode{ObjectMeta: metav1.ObjectMeta{Name: spec.Name}, Spec: gpusliceapi.SpecFromTopology(fixtures.MustBuild(topology.NewCatalog(), spec))}
	gn.Spec.State, gn.Spec.AllocationsFingerprint = state, fingerprint
	return unstructuredOf(t, gn)
}

func TestEventsToRegister(t *testing.T) {
	args := testArgs("binpack")
	pl := newPlugin(t, testShared(newCache(t), args), args, nil)
	events, err := pl.EventsToRegister(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := map[fwk.EventResource]bool{gpuNodeResource: true, leaseResource: true, fwk.AssignedPod: true, fwk.Node: true}
	for _, e := range events {
		if !want[e.Event.Resource] || e.QueueingHintFn == nil {
			t.Errorf("unexpected or hint-less event %+v", e.Event)
		}
		delete(want, e.Event.Resource)
	}
	if len(want) > 0 {
		t.Errorf("events not registered: %v", want)
	}
}

func TestQueueingHints(t *testing.T) {
	args := testArgs("binpack")
	pl := newPlugin(t, testShared(newCache(t), args), args, nil)
	logger := klog.Background()
	migPod := gpuPod("mig", map[string]int64{"nvidia.com/mig-1g.5gb": 1})
	tsPod := gpuPod("ts", map[string]int64{"nvidia.com/gpu": 1})
	lease := func(ns string, renew time.Time) *coordinationv1.Lease {
		rt := metav1.NewMicroTime(renew)
		return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "n", Namespace: ns}, Spec: coordinationv1.LeaseSpec{RenewTime: &rt}}
	}
	nodeWith := func(res string, n int64) *v1.Node {
		return &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n"}, Status: v1.NodeStatus{Allocatable: v1.ResourceList{v1.ResourceName(res): *resource.NewQuantity(n, resource.DecimalSI)}}}
	}
	tests := []struct {
		name     string
		fn       fwk.QueueingHintFn
		pod      *v1.Pod
		old, new any
		want     fwk.QueueingHint
	}{
		{"new Ready GPUNode offering the profile", pl.hintGPUNode, migPod, nil, gpuNode(t, a100, gpusliceapi.StateReady, ""), fwk.Queue},
		{"GPUNode without the profile", pl.hintGPUNode, migPod, nil, gpuNode(t, h100, gpusliceapi.StateReady, ""), fwk.QueueSkip},
		{"GPUNode reconfiguring", pl.hintGPUNode, migPod, nil, gpuNode(t, a100, gpusliceapi.StateReconfiguring, ""), fwk.QueueSkip},
		{"GPUNode became Ready", pl.hintGPUNode, migPod, gpuNode(t, a100, gpusliceapi.StateReconfiguring, ""), gpuNode(t, a100, gpusliceapi.StateReady, ""), fwk.Queue},
		{"allocations changed", pl.hintGPUNode, migPod, gpuNode(t, a100, gpusliceapi.StateReady, "a"), gpuNode(t, a100, gpusliceapi.StateReady, "b"), fwk.Queue},
		{"nothing that matters changed", pl.hintGPUNode, migPod, gpuNode(t, a100, gpusliceapi.StateReady, "a"), gpuNode(t, a100, gpusliceapi.StateReady, "a"), fwk.QueueSkip},
		{"lease appeared", pl.hintLease, tsPod, nil, lease("gpuslice-system", now), fwk.Queue},
		{"lease renewed on time", pl.hintLease, tsPod, lease("gpuslice-system", now), lease("gpuslice-system", now.Add(10*time.Second)), fwk.QueueSkip},
		{"lease renewed after a gap", pl.hintLease, tsPod, lease("gpuslice-system", now), lease("gpuslice-system", now.Add(5*time.Minute)), fwk.Queue},
		{"other namespace's lease", pl.hintLease, tsPod, nil, lease("kube-node-lease", now), fwk.QueueSkip},
		{"deleted pod held the resource", pl.hintPodDeleted, migPod, gpuPod("gone", map[string]int64{"nvidia.com/mig-1g.5gb": 2}), nil, fwk.Queue},
		{"deleted pod held another resource", pl.hintPodDeleted, migPod, gpuPod("gone", map[string]int64{"nvidia.com/gpu": 1}), nil, fwk.QueueSkip},
		{"allocatable grew", pl.hintNode, tsPod, nodeWith("nvidia.com/gpu", 0), nodeWith("nvidia.com/gpu", 8), fwk.Queue},
		{"allocatable of another resource", pl.hintNode, tsPod, nil, nodeWith("nvidia.com/mig-1g.5gb", 8), fwk.QueueSkip},
		{"allocatable shrank", pl.hintNode, tsPod, nodeWith("nvidia.com/gpu", 8), nodeWith("nvidia.com/gpu", 4), fwk.QueueSkip},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.fn(logger, tc.pod, tc.old, tc.new)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("hint %v, want %v", got, tc.want)
			}
		})
	}
	if _, err := pl.hintGPUNode(logger, migPod, nil, &v1.Pod{}); err == nil {
		t.Error("a wrong object type must be an error")
	}
}
