package topology

import (
	"fmt"
	"sort"

	"sigs.k8s.io/yaml"
)

// MIG manager's node labels.
const (
	// MIGConfigLabel names the mig-parted config MIG manager applies.
	MIGConfigLabel = "nvidia.com/mig.config"
	// MIGConfigStateLabel is MIG manager's progress: pending, rebooting,
	// success or failed.
	MIGConfigStateLabel = "nvidia.com/mig.config.state"
)

// PerGPUConfig is a named config that lists every GPU index of a node with
// its own counts (mig-parted applies an entry to the indexes it lists).
// layout maps GPU index to profile counts; indexes in disabled get
// mig-enabled: false (listed so that the config names every GPU: MIG
// manager leaves a GPU no entry matches as it is, but a config that names
// each one says exactly what is wanted).
func PerGPUConfig(layout map[int]map[string]int, disabled []int) []MIGPartedEntry {
	idx := make([]int, 0, len(layout))
	for i := range layout {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	var out []MIGPartedEntry
	for _, i := range idx {
		c := map[string]int{}
		for p, n := range layout[i] {
			if n > 0 {
				c[p] = n
			}
		}
		out = append(out, MIGPartedEntry{Devices: []int{i}, MIGEnabled: true, MIGDevices: c})
	}
	d := append([]int(nil), disabled...)
	sort.Ints(d)
	for _, i := range d {
		out = append(out, MIGPartedEntry{Devices: []int{i}})
	}
	return out
}

// Marshal writes the file as mig-parted reads it (version v1).
func (f *MIGParted) Marshal() ([]byte, error) {
	out := migPartedFile{Version: "v1", Configs: map[string][]migPartedEntry{}}
	if f.Version != "" && f.Version != "v1" {
		return nil, fmt.Errorf("mig-parted config version %q, only v1 is written", f.Version)
	}
	for name, entries := range f.Configs {
		raw := make([]migPartedEntry, len(entries))
		for i, e := range entries {
			r := migPartedEntry{MIGEnabled: e.MIGEnabled, MIGDevices: e.MIGDevices}
			if e.AllDevices {
				r.Devices = "all"
			} else {
				if len(e.Devices) == 0 {
					return nil, fmt.Errorf("mig-parted config %s[%d]: no devices", name, i)
				}
				ds := make([]any, len(e.Devices))
				for j, d := range e.Devices {
					ds[j] = d
				}
				r.Devices = ds
			}
			if e.DeviceFilter != nil {
				fs := make([]any, len(e.DeviceFilter))
				for j, s := range e.DeviceFilter {
					fs[j] = s
				}
				r.DeviceFilter = fs
			}
			raw[i] = r
		}
		out.Configs[name] = raw
	}
	return yaml.Marshal(out)
}
