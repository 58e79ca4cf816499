package topology_test

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/gpuslice/gpuslice/pkg/topology"
)

// placeLayout turns profile counts into concrete placements: largest profile
// first (memory slices, then compute slices, then name), each at the lowest
// allowed start whose memory slices are free. Pure greedy placement cannot
// place NVIDIA's own all-balanced layout (3g@0, 2g@4, 1g@6, and 1g@7 is not
// an allowed start), just as the MIG user guide warns that creation order
// matters, so the greedy choice backtracks to the next allowed start when the
// rest cannot be placed. The first layout found is the greedy one whenever
// greedy succeeds. greedy reports whether no backtracking was needed.
func placeLayout(m *topology.Model, counts map[string]int) (layout []topology.GPUInstance, greedy bool, err error) {
	var todo []*topology.Profile
	for name, n := range counts {
		p, ok := m.Profile(name)
		if !ok {
			return nil, false, fmt.Errorf("profile %s not on %s", name, m.Name)
		}
		if n < 0 {
			return nil, false, fmt.Errorf("profile %s: negative count %d", name, n)
		}
		for range n {
			todo = append(todo, p)
		}
	}
	sort.SliceStable(todo, func(a, b int) bool {
		pa, pb := todo[a], todo[b]
		if pa.MemorySlices != pb.MemorySlices {
			return pa.MemorySlices > pb.MemorySlices
		}
		if pa.ComputeSlices != pb.ComputeSlices {
			return pa.ComputeSlices > pb.ComputeSlices
		}
		return pa.Name < pb.Name
	})

	used := make([]bool, m.MemorySlices)
	free := func(start, size int) bool {
		if start < 0 || start+size > len(used) {
			return false
		}
		for s := start; s < start+size; s++ {
			if used[s] {
				return false
			}
		}
		return true
	}
	mark := func(start, size int, v bool) {
		for s := start; s < start+size; s++ {
			used[s] = v
		}
	}
	greedy = true
	var place func(i int) bool
	place = func(i int) bool {
		if i == len(todo) {
			return true
		}
		p := todo[i]
		minStart := -1
		if i > 0 && todo[i-1] == p {
			// Instances of one profile are interchangeable: keep them in
			// increasing start order to avoid revisiting permutations.
			minStart = layout[i-1].Start
		}
		tried := false
		for _, s := range p.Placements {
			if s <= minStart || !free(s, p.MemorySlices) {
				continue
			}
			if tried {
				greedy = false
			}
			tried = true
			mark(s, p.MemorySlices, true)
			layout = append(layout, topology.GPUInstance{Profile: p.Name, Start: s, Size: p.MemorySlices, DeviceID: fmt.Sprintf("MIG-%s-%d", p.Name, s)})
			if place(i + 1) {
				return true
			}
			layout = layout[:len(layout)-1]
			mark(s, p.MemorySlices, false)
		}
		return false
	}
	if !place(0) {
		return nil, false, fmt.Errorf("no placement of %v fits %s's %d memory slices", counts, m.Name, m.MemorySlices)
	}
	return layout, greedy, nil
}

func TestMIGPartedDefaultLayoutsAreValid(t *testing.T) {
	path := sharedDataFile(t, "mig-parted-config-default.yaml")
	cfg, err := topology.LoadMIGParted(path)
	if err != nil {
		t.Fatal(err)
	}

	cat := topology.NewCatalog()
	checked, empty, backtracked := 0, 0, 0
	perModel := map[string][]string{}
	unknownPCI := map[string]bool{}
	for _, name := range cfg.ConfigNames() {
		for ei, e := range cfg.Configs[name] {
			if !e.MIGEnabled {
				continue
			}

			// Models the entry applies to. A filtered entry is meant for
			// exactly its devices: every profile it names must exist there.
			// An unfiltered one applies to each model that has all its
			// profiles (the file mixes layouts of many GPU generations).
			models, unknown := e.Models(cat)
			for _, id := range unknown {
				unknownPCI[id] = true
			}

			for _, m := range models {
				label := fmt.Sprintf("%s[%d] on %s", name, ei, m.Name)
				missing := false
				for p := range e.MIGDevices {
					if _, ok := m.Profile(p); !ok {
						t.Errorf("%s: device-filter selects %s, which has no profile %s (has %v)", label, m.Name, p, m.ProfileNames())
						missing = true
					}
				}
				if missing {
					continue
				}
				layout, greedy, err := placeLayout(m, e.MIGDevices)
				if err != nil {
					t.Errorf("%s: %v", label, err)
					continue
				}
				if !greedy {
					backtracked++
				}
				if err := m.ValidateLayout(layout); err != nil {
					t.Errorf("%s: NVIDIA's layout %v placed as %v rejected: %v", label, e.MIGDevices, layout, err)
					continue
				}
				checkLayoutCapacity(t, label, m, layout, e.MIGDevices)
				checkPack(t, label, m, e.MIGDevices)
				if len(layout) == 0 {
					empty++ // all-enabled: MIG on, no instances
				} else {
					checked++
				}
				perModel[m.Name] = append(perModel[m.Name], name)

				// A uniform layout (one profile) is the profile's maximum
				// count in mig-parted: it must equal MaxInstances.
				if len(e.MIGDevices) == 1 {
					for p, n := range e.MIGDevices {
						if prof, _ := m.Profile(p); prof.MaxInstances != n {
							t.Errorf("%s: mig-parted fills %s with %d, catalog MaxInstances %d", label, p, n, prof.MaxInstances)
						}
					}
				}
			}
		}
	}

	for _, m := range cat.Models() {
		got := perModel[m.Name]
		if len(got) == 0 {
			t.Errorf("no mig-parted layout applies to %s", m.Name)
			continue
		}
		if !slices.Contains(got, "all-balanced") {
			t.Errorf("%s: all-balanced did not apply (checked %v)", m.Name, got)
		}
		t.Logf("%s: %d layouts: %s", m.Name, len(got), strings.Join(got, ", "))
	}
	ids := make([]string, 0, len(unknownPCI))
	for id := range unknownPCI {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	t.Logf("device-filter IDs without a catalog model (skipped): %v", ids)
	t.Logf("checked %d non-empty mig-parted layouts × models (plus %d empty all-enabled layouts); %d needed backtracking beyond greedy placement", checked, empty, backtracked)
	if checked <= 20 {
		t.Errorf("only %d non-empty layouts × models checked, want > 20", checked)
	}
}

// checkLayoutCapacity puts the layout on a one-GPU mixed-strategy node and
// checks the node validates and advertises exactly the requested counts.
func checkLayoutCapacity(t *testing.T, label string, m *topology.Model, layout []topology.GPUInstance, counts map[string]int) {
	t.Helper()
	n := &topology.Node{
		Name:        "n",
		MIGStrategy: topology.MIGStrategyMixed,
		GPUs: []topology.GPU{{
			UUID: "GPU-0", Index: 0, Product: m.NVMLNames[0], Healthy: true,
			MIGEnabled: true, Instances: layout,
		}},
	}
	if err := n.Validate(topology.NewCatalog()); err != nil {
		t.Errorf("%s: node validation: %v", label, err)
		return
	}
	capacity, err := n.Capacity()
	if err != nil {
		t.Errorf("%s: Capacity: %v", label, err)
		return
	}
	want := map[string]int64{}
	for p, c := range counts {
		if c > 0 {
			want[topology.MIGResourceName(p)] = int64(c)
		}
	}
	if !mapsEqual(capacity, want) {
		t.Errorf("%s: capacity %v, want %v", label, capacity, want)
	}
}

// checkPack checks Model.Pack on the same profile counts: it must succeed
// (the layout is NVIDIA's) with a valid layout, sorted by start, holding
// exactly the requested profiles.
func checkPack(t *testing.T, label string, m *topology.Model, counts map[string]int) {
	t.Helper()
	var list []string
	for p, n := range counts {
		for range n {
			list = append(list, p)
		}
	}
	sort.Strings(list)
	packed, err := m.Pack(list)
	if err != nil {
		t.Errorf("%s: Pack(%v): %v", label, list, err)
		return
	}
	if err := m.ValidateLayout(packed); err != nil {
		t.Errorf("%s: Pack(%v) = %v, invalid: %v", label, list, packed, err)
	}
	got := make([]string, 0, len(packed))
	for i, in := range packed {
		got = append(got, in.Profile)
		if p, ok := m.Profile(in.Profile); ok && in.Size != p.MemorySlices {
			t.Errorf("%s: Pack instance %v has size %d, want %d", label, in, in.Size, p.MemorySlices)
		}
		if i > 0 && packed[i-1].Start >= in.Start {
			t.Errorf("%s: Pack(%v) = %v, not sorted by start", label, list, packed)
		}
	}
	sort.Strings(got)
	if !slices.Equal(got, list) {
		t.Errorf("%s: Pack(%v) placed %v", label, list, got)
	}
}

func mapsEqual(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestPackRejects(t *testing.T) {
	cat := topology.NewCatalog()
	a100, _ := cat.ModelByName("A100-40GB")
	a30, _ := cat.ModelByName("A30-24GB")
	for _, c := range []struct {
		m        *topology.Model
		profiles []string
		want     string
	}{
		{a100, []string{"1g.5gb", "9g.1gb"}, `unknown MIG profile "9g.1gb"`},
		{a100, []string{"1g.5gb", "1g.5gb", "1g.5gb", "1g.5gb", "1g.5gb", "1g.5gb", "1g.5gb", "1g.5gb"}, "more than 7 instances of 1g.5gb"},
		{a100, []string{"3g.20gb", "3g.20gb", "3g.20gb"}, "more than 2 instances of 3g.20gb"},
		{a100, []string{"4g.20gb", "3g.20gb", "1g.5gb"}, "need 8 compute"},
		{a100, []string{"4g.20gb", "2g.10gb", "1g.5gb", "1g.5gb"}, "need 8 compute"},
		{a100, []string{"1g.5gb+me", "1g.5gb+me"}, "more than 1 instances of 1g.5gb+me"},
		{a30, []string{"1g.6gb+me", "2g.12gb+me"}, "more than one +me instance"},
		{a30, []string{"4g.24gb", "1g.6gb"}, "need 5 compute and 5 memory slices"},
	} {
		got, err := c.m.Pack(c.profiles)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s Pack(%v) = %v, %v; want error containing %q", c.m.Name, c.profiles, got, err, c.want)
		}
	}
	// all-balanced only fits with the 3g instance at start 4.
	got, err := a100.Pack([]string{"1g.5gb", "3g.20gb", "1g.5gb", "2g.10gb"})
	want := []topology.GPUInstance{
		{Profile: "2g.10gb", Start: 0, Size: 2},
		{Profile: "1g.5gb", Start: 2, Size: 1},
		{Profile: "1g.5gb", Start: 3, Size: 1},
		{Profile: "3g.20gb", Start: 4, Size: 4},
	}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("Pack(all-balanced) = %v, %v; want %v", got, err, want)
	}
	if got, err := a100.Pack(nil); err != nil || len(got) != 0 {
		t.Errorf("Pack(nil) = %v, %v", got, err)
	}
}

func TestPlaceLayout(t *testing.T) {
	cat := topology.NewCatalog()
	a100, _ := cat.ModelByName("A100-40GB")
	layout, greedy, err := placeLayout(a100, map[string]int{"1g.5gb": 2, "2g.10gb": 1, "3g.20gb": 1})
	if err != nil {
		t.Fatal(err)
	}
	if greedy {
		t.Error("all-balanced placed without backtracking; greedy 3g@0 should have failed")
	}
	want := []topology.GPUInstance{
		{Profile: "3g.20gb", Start: 4, Size: 4},
		{Profile: "2g.10gb", Start: 0, Size: 2},
		{Profile: "1g.5gb", Start: 2, Size: 1},
		{Profile: "1g.5gb", Start: 3, Size: 1},
	}
	for i := range layout {
		layout[i].DeviceID = ""
	}
	if !slices.Equal(layout, want) {
		t.Errorf("all-balanced placed as %v, want %v", layout, want)
	}
	if layout, greedy, err := placeLayout(a100, map[string]int{"1g.5gb": 7}); err != nil || !greedy || len(layout) != 7 || layout[6].Start != 6 {
		t.Errorf("7×1g: %v, %v, %v", layout, greedy, err)
	}
	if _, _, err := placeLayout(a100, map[string]int{"1g.5gb": 8}); err == nil {
		t.Error("8×1g.5gb placed on 7 allowed starts")
	}
	if _, _, err := placeLayout(a100, map[string]int{"9g.1gb": 1}); err == nil {
		t.Error("unknown profile placed")
	}
}
