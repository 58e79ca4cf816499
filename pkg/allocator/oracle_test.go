package allocator

import (
	"fmt"
	"math/rand"
	"sort"
	"testing"

	"github.com/gpuslice/gpuslice/pkg/sim/deviceplugin"
	"github.com/gpuslice/gpuslice/pkg/topology"
	"github.com/gpuslice/gpuslice/pkg/topology/fixtures"
)

// signature describes a pick up to the symmetry of equal GPUs: the multiset
// of (replicas allocated before, replicas picked, healthy) over all GPUs.
func signature(before map[string]int, healthy map[string]bool, picks []string) string {
	picked := map[string]int{}
	for _, id := range picks {
		base, _, _ := topology.SplitReplicaID(id)
		picked[base]++
	}
	var sig []string
	for base, b := range before {
		sig = append(sig, fmt.Sprintf("%d/%d/%v", b, picked[base], healthy[base]))
	}
	sort.Strings(sig)
	return fmt.Sprint(sig)
}

func TestPredictionMatchesPluginUpToSymmetry(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	policies := []topology.AllocationPolicy{topology.PolicyPacked, topology.PolicyDistributed, topology.PolicySpread}
	cat := topology.NewCatalog()
	cases := 0
	for iter := 0; iter < 400; iter++ {
		policy := policies[iter%len(policies)]
		gpus, replicas := 1+rng.Intn(8), 1+rng.Intn(8)
		topo := fixtures.MustBuild(cat, fixtures.Spec{Name: fmt.Sprintf("n%d", iter), Product: "NVIDIA H100 80GB HBM3", GPUs: gpus, Replicas: replicas, Policy: policy})
		if rng.Intn(4) == 0 {
			topo.GPUs[rng.Intn(gpus)].Healthy = false
		}
		n, err := Compile(topo, cat, "")
		if err != nil {
			t.Fatal(err)
		}
		s := NewState(n)
		// Random prior allocation on healthy GPUs.
		var all, free []string
		before := map[string]int{}
		healthy := map[string]bool{}
		var taken []string
		for _, g := range topo.GPUs {
			before[g.UUID] = 0
			healthy[g.UUID] = g.Healthy
			for r := 0; r < replicas; r++ {
				id := topology.ReplicaID(g.UUID, r)
				all = append(all, id)
				switch {
				case !g.Healthy:
				case rng.Intn(3) == 0:
					taken = append(taken, id)
					before[g.UUID]++
				default:
					free = append(free, id)
				}
			}
		}
		if err := s.Apply([]ResourceDevices{{Resource: "nvidia.com/gpu", DeviceIDs: taken}}); err != nil {
			t.Fatal(err)
		}
		if len(free) == 0 {
			continue
		}
		size := 1 + rng.Intn(len(free))
		p, v := s.Place(req("nvidia.com/gpu", size))
		if !v.OK() {
			t.Fatalf("iter %d: %s", iter, v.Reason())
		}
		ours := signature(before, healthy, p.Devices()[0].DeviceIDs)
		for trial := 0; trial < 5; trial++ {
			theirs := signature(before, healthy, deviceplugin.Greedy(rng, policy, all, free, nil, size))
			if ours != theirs {
				t.Fatalf("iter %d policy %s gpus %d replicas %d size %d:\nours   %s\nplugin %s", iter, policy, gpus, replicas, size, ours, theirs)
			}
		}
		cases++
	}
	if cases < 300 {
		t.Fatalf("only %d cases exercised", cases)
	}
}
