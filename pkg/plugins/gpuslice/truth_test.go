package gpuslice

import (
	"context"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	corelisters "k8s.io/client-go/listers/core/v1"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/gpuslice/gpuslice/pkg/allocator"
	gpusliceapi "github.com/gpuslice/gpuslice/pkg/apis/gpuslice/v1alpha1"
	"github.com/gpuslice/gpuslice/pkg/assignment"
	gpuslicelisters "github.com/gpuslice/gpuslice/pkg/generated/listers/gpuslice/v1alpha1"
)

// TestAssignmentTellsTheTruth: two pods each predicted to get MIG device
// MIG-a (the first of two equal 1g.5gb instances: the second pod was
// scheduled after the exporter had reported that the first got MIG-b). As
// written by PreBind, both annotations name MIG-a. Once the exporter reports
// what the kubelet gave, each annotation must say so, and no device may be
// held by two live pods in what the annotations claim.
func TestAssignmentTellsTheTruth(t *testing.T) {
	const node = "a100"
	predicted := func(id string) string {
		v, err := assignment.FromPlacement(&allocator.Placement{Node: node, Containers: []allocator.ContainerDevices{{Name: "main",
			Devices: []allocator.ResourceDevices{{Resource: "nvidia.com/mig-1g.5gb", DeviceIDs: []string{id}}}}}}).Encode()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	pod := func(name string) *v1.Pod {
		return &v1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID(name + "-uid"), Annotations: map[string]string{assignment.Annotation: predicted("MIG-a")}},
			Spec:       v1.PodSpec{NodeName: node},
		}
	}
	first, second := pod("first"), pod("second")
	other := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "other", Namespace: "default", UID: "other-uid"}, Spec: v1.PodSpec{NodeName: node}}
	gave := func(p *v1.Pod, id string) gpusliceapi.PodAllocation {
		return gpusliceapi.PodAllocation{PodUID: string(p.UID), Namespace: p.Namespace, Name: p.Name, Containers: []gpusliceapi.ContainerAllocation{{Name: "main",
			Devices: []gpusliceapi.ResourceDevices{{Resource: "nvidia.com/mig-1g.5gb", DeviceIDs: []string{id}}}}}}
	}
	gn := &gpusliceapi.GPUNode{ObjectMeta: metav1.ObjectMeta{Name: node}, Spec: gpusliceapi.GPUNodeSpec{NodeName: node,
		// A pod of another scheduler (no annotation) is left alone.
		Allocations: []gpusliceapi.PodAllocation{gave(first, "MIG-b"), gave(second, "MIG-a"), gave(other, "MIG-c")}}}

	client := fake.NewSimpleClientset(first, second, other)
	podStore := toolscache.NewIndexer(toolscache.MetaNamespaceKeyFunc, toolscache.Indexers{toolscache.NamespaceIndex: toolscache.MetaNamespaceIndexFunc})
	gnStore := toolscache.NewIndexer(toolscache.MetaNamespaceKeyFunc, toolscache.Indexers{})
	for _, p := range []*v1.Pod{first, second, other} {
		if err := podStore.Add(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := gnStore.Add(gn); err != nil {
		t.Fatal(err)
	}
	w := newTruthWriter(client, corelisters.NewPodLister(podStore), gpuslicelisters.NewGPUNodeLister(gnStore))
	defer w.queue.ShutDown()

	// held reads the annotations as a user or a tool would: the devices
	// each live pod's annotation says it holds.
	held := func() map[string][]string {
		holders := map[string][]string{}
		l, err := client.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for i := range l.Items {
			a, err := assignment.FromPod(&l.Items[i])
			if err != nil {
				t.Fatal(err)
			}
			if a == nil || !a.Held() {
				continue
			}
			for _, rd := range a.Placement().Devices() {
				for _, id := range rd.DeviceIDs {
					holders[id] = append(holders[id], l.Items[i].Name)
				}
			}
		}
		return holders
	}

	w.gpuNodeChanged(gn)
	if w.queue.Len() != 2 {
		t.Fatalf("%d pods queued, want the two with predictions", w.queue.Len())
	}
	for w.queue.Len() > 0 {
		key, _ := w.queue.Get()
		if err := w.sync(context.Background(), key); err != nil {
			t.Fatal(err)
		}
		w.queue.Done(key)
	}
	holders := held()
	for id, pods := range holders {
		if len(pods) > 1 {
			t.Errorf("device %s held by %v", id, pods)
		}
	}
	if len(holders["MIG-b"]) != 1 || holders["MIG-b"][0] != "first" || len(holders["MIG-a"]) != 1 || holders["MIG-a"][0] != "second" {
		t.Fatalf("held %v, want first on MIG-b and second on MIG-a (the kubelet's pick)", holders)
	}
	got, err := client.CoreV1().Pods("default").Get(context.Background(), "other", metav1.GetOptions{})
	if err != nil || got.Annotations[assignment.Annotation] != "" {
		t.Fatalf("pod of another scheduler annotated: %v %v", got.Annotations, err)
	}

	// Once the informer shows the truth, nothing is queued or written.
	for _, name := range []string{"first", "second"} {
		p, err := client.CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := podStore.Update(p); err != nil {
			t.Fatal(err)
		}
		w.podChanged(p)
	}
	client.ClearActions()
	w.gpuNodeChanged(gn)
	if w.queue.Len() != 0 {
		t.Fatalf("%d pods queued after the truth was written", w.queue.Len())
	}
}
