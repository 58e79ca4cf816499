// Package deviceplugin models how the stock NVIDIA device
// plugin answers GetPreferredAllocation for time-sliced replicas and MIG
// devices: candidates grouped by physical device; per pick, the group ranked
// first by the policy's comparator on (allocated = total - available,
// picked in this call) gives one device; ties are broken at random, as the
// plugin's map iteration and heap order do. It works on plain device-ID
// strings and is written apart from pkg/allocator's prediction, so tests can
// check one against the other.
package deviceplugin

import (
	"math/rand"
	"sort"

	"github.com/gpuslice/gpuslice/pkg/topology"
)

// Greedy returns size-len(required) devices picked from available (which
// excludes required) for a resource whose advertised devices are all.
// base maps a device ID to its physical device (the part before "::").
func Greedy(rng *rand.Rand, policy topology.AllocationPolicy, all, available, required []string, size int) []string {
	type group struct {
		total, available, picked int
		ids                      []string
	}
	baseOf := func(id string) string {
		b, _, _ := topology.SplitReplicaID(id)
		return b
	}
	groups := map[string]*group{}
	for _, id := range available {
		g := groups[baseOf(id)]
		if g == nil {
			g = &group{}
			groups[baseOf(id)] = g
		}
		g.available++
		g.ids = append(g.ids, id)
	}
	for _, id := range all {
		if g := groups[baseOf(id)]; g != nil {
			g.total++
		}
	}
	for _, id := range required {
		if g := groups[baseOf(id)]; g != nil {
			g.picked++
		}
	}
	order := make([]*group, 0, len(groups))
	for _, g := range groups {
		order = append(order, g)
	}
	var out []string
	for len(out) < size-len(required) && len(order) > 0 {
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		sort.SliceStable(order, func(i, j int) bool {
			a, b := order[i], order[j]
			aa, ba := a.total-a.available, b.total-b.available
			switch policy {
			case topology.PolicyPacked:
				if aa != ba {
					return aa > ba
				}
				return a.picked < b.picked
			case topology.PolicySpread:
				if a.picked != b.picked {
					return a.picked < b.picked
				}
				return aa < ba
			default:
				if aa != ba {
					return aa < ba
				}
				return a.picked < b.picked
			}
		})
		g := order[0]
		k := rng.Intn(len(g.ids))
		out = append(out, g.ids[k])
		g.ids = append(g.ids[:k], g.ids[k+1:]...)
		g.available--
		g.picked++
		if len(g.ids) == 0 {
			order = order[1:]
		}
	}
	return out
}
