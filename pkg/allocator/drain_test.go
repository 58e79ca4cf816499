package allocator

import (
	"slices"
	"testing"

	"github.com/gpuslice/gpuslice/pkg/topology"
	"github.com/gpuslice/gpuslice/pkg/topology/fixtures"
)

func TestFreeOnGPUAndDrainConflicts(t *testing.T) {
	// Two A100s, each 3g.20gb + 2g.10gb + 2×1g.5gb; time-sliced 2 ways.
	s := compile(t, fixtures.Spec{Name: "n", Product: "NVIDIA A100-SXM4-40GB", GPUs: 2, MIG: []string{"3g.20gb", "2g.10gb", "1g.5gb", "1g.5gb"}, Replicas: 2})
	one := "nvidia.com/mig-1g.5gb"
	if got := s.FreeOnGPU(1, one); got != 4 {
		t.Fatalf("free 1g replicas on GPU 1 = %d, want 2 instances × 2 replicas", got)
	}
	occupy(t, s, one, map[int]int{1: 1}) // a replica of each 1g instance
	if got := s.FreeOnGPU(1, one); got != 2 {
		t.Fatalf("after taking 2, free on GPU 1 = %d, want 2", got)
	}
	if got := s.FreeOnGPU(0, one); got != 4 {
		t.Errorf("GPU 0 changed: %d free", got)
	}
	if got := s.FreeOnGPU(9, one) + s.FreeOnGPU(0, "nvidia.com/mig-7g.40gb"); got != 0 {
		t.Errorf("unknown GPU or resource: %d free", got)
	}
	r := req(one, 1, "nvidia.com/mig-3g.20gb", 1)
	if c := s.DrainConflicts(r, nil); c != nil {
		t.Errorf("no drain, conflicts %v", c)
	}
	c := s.DrainConflicts(r, []int{1})
	if len(c) != 2 || c[0].GPU != 1 {
		t.Fatalf("drain of GPU 1: conflicts %v, want its free 1g and 3g", c)
	}
	if want := "GPU 1 is draining for a MIG layout change and the kubelet could hand out its free nvidia.com/mig-1g.5gb"; c[0].String() != want {
		t.Errorf("%q", c[0].String())
	}
	occupy(t, s, one, map[int]int{1: 1})
	occupy(t, s, "nvidia.com/mig-3g.20gb", map[int]int{1: 2})
	if c := s.DrainConflicts(r, []int{1}); c != nil {
		t.Errorf("GPU 1 has no free device of the request, conflicts %v", c)
	}
}

func TestGPUsHolding(t *testing.T) {
	cat := topology.NewCatalog()
	topo := fixtures.MustBuild(cat, fixtures.Spec{Name: "n", Product: "NVIDIA H100 80GB HBM3", GPUs: 3, MIG: []string{"3g.40gb", "3g.40gb"}, Replicas: 2})
	devs := []ResourceDevices{
		{Resource: "nvidia.com/mig-3g.40gb", DeviceIDs: []string{topology.ReplicaID(topo.GPUs[2].Instances[1].DeviceID, 1), topo.GPUs[0].Instances[0].DeviceID}},
		{Resource: "nvidia.com/mig-3g.40gb", DeviceIDs: []string{topology.ReplicaID(topo.GPUs[2].Instances[0].DeviceID, 0), "MIG-unknown"}},
	}
	if got := GPUsHolding(topo, devs); !slices.Equal(got, []int{2, 0}) {
		t.Errorf("GPUsHolding = %v, want [2 0]", got)
	}
	if got := GPUsHolding(topo, nil); got != nil {
		t.Errorf("no devices: %v", got)
	}
}
