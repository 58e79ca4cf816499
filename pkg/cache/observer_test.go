package cache

import (
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/gpuslice/gpuslice/pkg/allocator"
	"github.com/gpuslice/gpuslice/pkg/topology"
	"github.com/gpuslice/gpuslice/pkg/topology/fixtures"
)

type recorder struct {
	mu       sync.Mutex
	readBack []ReadBack
	rebuilt  map[string]int
}

func (r *recorder) ReadBack(rb ReadBack) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.readBack = append(r.readBack, rb)
}

func (r *recorder) Rebuilt(node string, took time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if took < 0 {
		panic("negative rebuild time")
	}
	r.rebuilt[node]++
}

// TestObserverReadBack: a read-back is reported once per pod, corrected only
// when the kubelet gave another physical device (another replica of the
// same GPU is the same device), and never for a pod that had no prediction.
func TestObserverReadBack(t *testing.T) {
	obs := &recorder{rebuilt: map[string]int{}}
	cat := topology.NewCatalog()
	spec := fixtures.Spec{Name: "ts", Product: "NVIDIA H100 80GB HBM3", GPUs: 2, Replicas: 4, Policy: topology.PolicyPacked}
	c := New(Options{DefaultPolicy: topology.PolicyPacked, StaleAfter: time.Minute, Observer: obs})
	c.SetTopology("ts", &Topology{Node: fixtures.MustBuild(cat, spec), State: "Ready"})
	c.SetHeartbeat("ts", time.Now())
	if obs.rebuilt["ts"] == 0 {
		t.Fatal("SetTopology rebuilt the node without telling the observer")
	}
	r := req("nvidia.com/gpu", 1)
	pa := placeOn(t, c, "ts", r)
	if err := c.Assume("a", "ns", "a", r, pa); err != nil {
		t.Fatal(err)
	}
	pb := placeOn(t, c, "ts", r)
	if err := c.Assume("b", "ns", "b", r, pb); err != nil {
		t.Fatal(err)
	}
	c.UpsertPod(PodUpdate{UID: "a", Namespace: "ns", Name: "a", Node: "ts", Request: r, Assignment: pa})
	c.UpsertPod(PodUpdate{UID: "b", Namespace: "ns", Name: "b", Node: "ts", Request: r, Assignment: pb})
	// A pod of another scheduler: predicted by the cache, not claimed.
	c.UpsertPod(PodUpdate{UID: "other", Namespace: "ns", Name: "other", Node: "ts", Request: r})

	predA, _, _ := topology.SplitReplicaID(pa.Devices()[0].DeviceIDs[0])
	predB, _, _ := topology.SplitReplicaID(pb.Devices()[0].DeviceIDs[0])
	if predA != predB {
		t.Fatalf("packed policy predicted two GPUs for two replicas: %s, %s", predA, predB)
	}
	var otherGPU string
	for _, g := range c.View("ts").State.GPUs() {
		if g.UUID != predA {
			otherGPU = g.UUID
		}
	}
	otherInfo, _ := c.Pod("other")
	report := map[types.UID][]allocator.ResourceDevices{
		// a: another replica of the predicted GPU (interchangeable).
		"a": {{Resource: "nvidia.com/gpu", DeviceIDs: []string{topology.ReplicaID(predA, 3)}}},
		// b: a replica of the other GPU: corrected.
		"b": {{Resource: "nvidia.com/gpu", DeviceIDs: []string{topology.ReplicaID(otherGPU, 3)}}},
		// other: exactly what the cache predicted.
		"other": otherInfo.Devices,
		// never: a pod the cache does not track.
		"never": {{Resource: "nvidia.com/gpu", DeviceIDs: []string{topology.ReplicaID(otherGPU, 2)}}},
	}
	for range 2 { // the second report is the same: no new read-back
		c.SetTopology("ts", &Topology{Node: fixtures.MustBuild(cat, spec), State: "Ready", Allocations: report})
	}
	got := map[types.UID]ReadBack{}
	for _, rb := range obs.readBack {
		if _, dup := got[rb.UID]; dup {
			t.Fatalf("pod %s read back twice", rb.UID)
		}
		got[rb.UID] = rb
	}
	if len(got) != 3 {
		t.Fatalf("read-backs %+v, want a, b and other", obs.readBack)
	}
	if rb := got["a"]; rb.Corrected || !rb.Claimed || rb.Namespace != "ns" || rb.Name != "a" || rb.Node != "ts" {
		t.Errorf("a (another replica of the predicted GPU): %+v", rb)
	}
	if rb := got["b"]; !rb.Corrected || !rb.Claimed || rb.Reported[0].DeviceIDs[0] != topology.ReplicaID(otherGPU, 3) {
		t.Errorf("b (another GPU): %+v", rb)
	}
	if rb := got["other"]; rb.Corrected || rb.Claimed {
		t.Errorf("other (foreign pod, as predicted): %+v", rb)
	}
}

// TestReadBackAfterRestartNotCounted: a scheduler that starts with the
// exporter's report already there predicted nothing, so reads nothing back.
func TestReadBackAfterRestartNotCounted(t *testing.T) {
	obs := &recorder{rebuilt: map[string]int{}}
	cat := topology.NewCatalog()
	c := New(Options{DefaultPolicy: topology.PolicyPacked, Observer: obs})
	node := fixtures.MustBuild(cat, ts4)
	dev := []allocator.ResourceDevices{{Resource: "nvidia.com/gpu", DeviceIDs: []string{topology.ReplicaID(node.GPUs[1].UUID, 0)}}}
	c.SetTopology("ts", &Topology{Node: node, State: "Ready", Allocations: map[types.UID][]allocator.ResourceDevices{"a": dev}})
	c.UpsertPod(PodUpdate{UID: "a", Namespace: "ns", Name: "a", Node: "ts", Request: req("nvidia.com/gpu", 1),
		Assignment: &allocator.Placement{Node: "ts", Containers: []allocator.ContainerDevices{{Name: "main", Devices: dev}}}})
	if info, _ := c.Pod("a"); info.Phase != Confirmed {
		t.Fatalf("pod %+v, want confirmed", info)
	}
	if len(obs.readBack) != 0 {
		t.Fatalf("read-backs %+v, want none", obs.readBack)
	}
}
