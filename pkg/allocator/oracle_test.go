package allocator

import (
	"fmt"
	"math/rand"
	"sort"
	"testing"

	"github.com/gpuslice/gpuslice/pkg/sim/deviceplugin"
	"github.com/gpuslice/gpuslice/pkg/topology"
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
	cases := 0
	for iter := 0; iter < 400; iter++ {
		policy := policies[iter%len(policies)]
		gpus, replicas := 1+rng.Intn(8), 1+rng.Intn(8)
		s, all, free, before, healthy := randomSlicedNode(t, rng, fmt.Sprintf("n%d", iter), gpus, replicas, policy)
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
