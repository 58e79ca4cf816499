package topology

import (
	"fmt"
	"sort"
	"strings"
)

// CreateLargestFirst models how NVIDIA's MIG manager (mig-parted) builds a
// GPU's layout from a named config, which gives counts only: the GPU is
// emptied, then the instances are created largest first (by compute slices,
// then memory slices) without a placement, and the driver puts each at the
// first free start the profile allows. It returns the instances, sorted by
// start, or an error when one of them finds no free start or the counts are
// not a valid layout of the model.
//
// mig-parted retries other creation orders when one fails; a layout that
// only such a retry builds is still rejected here, so that whoever asks MIG
// manager for counts asks only for what its first attempt builds.
func (m *Model) CreateLargestFirst(counts map[string]int) ([]GPUInstance, error) {
	type item struct {
		p *Profile
		n int
	}
	var items []item
	total := 0
	for name, n := range counts {
		if n < 0 {
			return nil, fmt.Errorf("%s: negative count %d of %s", m.Name, n, name)
		}
		if n == 0 {
			continue
		}
		p, ok := m.Profile(name)
		if !ok {
			return nil, fmt.Errorf("unknown MIG profile %q for %s (known: %s)", name, m.Name, strings.Join(m.ProfileNames(), ", "))
		}
		if n > p.MaxInstances {
			return nil, fmt.Errorf("%s: %d instances of %s, at most %d", m.Name, n, name, p.MaxInstances)
		}
		items = append(items, item{p, n})
		total += n
	}
	sort.Slice(items, func(i, j int) bool {
		a, b := items[i].p, items[j].p
		if a.ComputeSlices != b.ComputeSlices {
			return a.ComputeSlices > b.ComputeSlices
		}
		if a.MemorySlices != b.MemorySlices {
			return a.MemorySlices > b.MemorySlices
		}
		return a.Name < b.Name
	})
	if m.MemorySlices > 64 {
		return nil, fmt.Errorf("%s: %d memory slices exceed the supported maximum 64", m.Name, m.MemorySlices)
	}
	var occupied uint64
	out := make([]GPUInstance, 0, total)
	for _, it := range items {
		p := it.p
		for range it.n {
			placed := false
			for _, start := range p.Placements {
				if start < 0 || start+p.MemorySlices > m.MemorySlices {
					continue
				}
				mask := (uint64(1)<<uint(p.MemorySlices) - 1) << uint(start)
				if occupied&mask != 0 {
					continue
				}
				occupied |= mask
				out = append(out, GPUInstance{Profile: p.Name, Start: start, Size: p.MemorySlices})
				placed = true
				break
			}
			if !placed {
				return nil, fmt.Errorf("%s: largest-first creation of %s finds no free start for %s", m.Name, FormatCounts(counts), p.Name)
			}
		}
	}
	if err := m.ValidateLayout(out); err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Start < out[j].Start })
	return out, nil
}

// Counts returns the instance count of each profile in a layout.
func Counts(instances []GPUInstance) map[string]int {
	out := map[string]int{}
	for _, in := range instances {
		out[in.Profile]++
	}
	return out
}

// FormatCounts writes profile counts largest count first, as in
// "7×1g.10gb" or "2×3g.40gb+1×1g.10gb"; "empty" when there are none.
func FormatCounts(counts map[string]int) string {
	names := make([]string, 0, len(counts))
	for name, n := range counts {
		if n > 0 {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return "empty"
	}
	sort.Slice(names, func(i, j int) bool {
		if counts[names[i]] != counts[names[j]] {
			return counts[names[i]] > counts[names[j]]
		}
		return names[i] < names[j]
	})
	parts := make([]string, len(names))
	for i, name := range names {
		parts[i] = fmt.Sprintf("%d×%s", counts[name], name)
	}
	return strings.Join(parts, "+")
}

// SameCounts reports whether two layouts hold the same number of instances
// of every profile (what MIG manager compares to decide whether a GPU
// changes).
func SameCounts(a, b map[string]int) bool {
	for k, v := range a {
		if v != 0 && b[k] != v {
			return false
		}
	}
	for k, v := range b {
		if v != 0 && a[k] != v {
			return false
		}
	}
	return true
}
