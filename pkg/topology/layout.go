package topology

import (
	"fmt"
	"sort"
)

// Pack places the given profiles on one GPU of this model: largest instances
// first, each at the lowest allowed start that still lets the rest fit
// (a depth-first search; NVIDIA's all-balanced layout, for one, only fits
// with the 3g instance at start 4). It returns the instances, without device
// IDs, sorted by start, or an error when they cannot coexist.
func (m *Model) Pack(profiles []string) ([]GPUInstance, error) {
	ps := make([]*Profile, 0, len(profiles))
	for _, name := range profiles {
		p, ok := m.Profile(name)
		if !ok {
			return nil, fmt.Errorf("unknown MIG profile %q for %s", name, m.Name)
		}
		ps = append(ps, p)
	}
	sort.SliceStable(ps, func(i, j int) bool {
		if ps[i].MemorySlices != ps[j].MemorySlices {
			return ps[i].MemorySlices > ps[j].MemorySlices
		}
		return ps[i].Name < ps[j].Name
	})
	compute, memory, counts := 0, 0, map[string]int{}
	for _, p := range ps {
		compute += p.ComputeSlices
		memory += p.MemorySlices
		if counts[p.Name]++; counts[p.Name] > p.MaxInstances {
			return nil, fmt.Errorf("MIG profiles %v: more than %d instances of %s on %s", profiles, p.MaxInstances, p.Name, m.Name)
		}
	}
	if compute > m.ComputeSlices || memory > m.MemorySlices {
		return nil, fmt.Errorf("MIG profiles %v need %d compute and %d memory slices, %s has %d and %d", profiles, compute, memory, m.Name, m.ComputeSlices, m.MemorySlices)
	}
	out := make([]GPUInstance, len(ps))
	var place func(i int, occupied uint64) bool
	place = func(i int, occupied uint64) bool {
		if i == len(ps) {
			return true
		}
		p := ps[i]
		for _, start := range p.Placements {
			// Instances of one profile are interchangeable: keep them in
			// start order so the search never tries their permutations.
			if i > 0 && ps[i-1] == p && start <= out[i-1].Start {
				continue
			}
			if start+p.MemorySlices > m.MemorySlices {
				continue
			}
			mask := (uint64(1)<<uint(p.MemorySlices) - 1) << uint(start)
			if occupied&mask != 0 {
				continue
			}
			out[i] = GPUInstance{Profile: p.Name, Start: start, Size: p.MemorySlices}
			if place(i+1, occupied|mask) {
				return true
			}
		}
		return false
	}
	if m.MemorySlices > 64 || !place(0, 0) {
		return nil, fmt.Errorf("MIG profiles %v do not fit together on %s", profiles, m.Name)
	}
	if err := m.ValidateLayout(out); err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Start < out[j].Start })
	return out, nil
}
