package topology

import (
	"fmt"
	"math"
	"os"
	"slices"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"
)

// MIGParted is NVIDIA mig-parted's configuration file
// (deployments/systemd/config-default.yaml upstream, the file the GPU
// operator's MIG manager applies): named MIG configs, each a list of entries
// that apply to the devices their device-filter selects. The node label
// nvidia.com/mig.config names the config a node's GPUs are partitioned with.
type MIGParted struct {
	Version string
	// Configs maps a config name ("all-balanced") to its entries.
	Configs map[string][]MIGPartedEntry
}

// MIGPartedEntry is one entry of a named config.
type MIGPartedEntry struct {
	// DeviceFilter lists the PCI IDs ("0x20B010DE", device then vendor) of
	// the devices the entry applies to. It is nil when the entry has no
	// device-filter and so applies to every device; an empty, non-nil list
	// selects none.
	DeviceFilter []string
	// AllDevices is set for "devices: all"; otherwise Devices lists the GPU
	// indexes the entry applies to.
	AllDevices bool
	Devices    []int
	MIGEnabled bool
	// MIGDevices maps MIG profile names ("3g.40gb") to instance counts.
	MIGDevices map[string]int
}

// migPartedFile and migPartedEntry are the file as YAML decodes it, before
// the loosely typed fields are checked.
type migPartedFile struct {
	Version string                      `json:"version"`
	Configs map[string][]migPartedEntry `json:"mig-configs"`
}

type migPartedEntry struct {
	// DeviceFilter is a PCI ID string or a list of them; nil when absent.
	DeviceFilter any `json:"device-filter,omitempty"`
	// Devices is "all" or a list of GPU indexes.
	Devices    any            `json:"devices"`
	MIGEnabled bool           `json:"mig-enabled"`
	MIGDevices map[string]int `json:"mig-devices"`
}

// LoadMIGParted reads and parses a mig-parted configuration file.
func LoadMIGParted(path string) (*MIGParted, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	f, err := ParseMIGParted(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// ParseMIGParted parses a mig-parted configuration file. It accepts version
// v1 with at least one config and checks every entry's shape: device-filter
// is a PCI ID or a list of them, devices is "all" or a list of GPU indexes,
// and instance counts are not negative. Whether the profiles exist is a
// property of the GPU an entry is applied to (see Layout).
func ParseMIGParted(data []byte) (*MIGParted, error) {
	var raw migPartedFile
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("parse mig-parted config: %w", err)
	}
	if raw.Version != "v1" || len(raw.Configs) == 0 {
		return nil, fmt.Errorf("mig-parted config: version %q with %d mig-configs, want v1 with some", raw.Version, len(raw.Configs))
	}
	f := &MIGParted{Version: raw.Version, Configs: make(map[string][]MIGPartedEntry, len(raw.Configs))}
	for _, name := range sortedKeys(raw.Configs) {
		entries := make([]MIGPartedEntry, len(raw.Configs[name]))
		for i, r := range raw.Configs[name] {
			e, err := r.check()
			if err != nil {
				return nil, fmt.Errorf("mig-parted config %s[%d]: %w", name, i, err)
			}
			entries[i] = e
		}
		f.Configs[name] = entries
	}
	return f, nil
}

func (r *migPartedEntry) check() (MIGPartedEntry, error) {
	e := MIGPartedEntry{MIGEnabled: r.MIGEnabled, MIGDevices: r.MIGDevices}
	switch f := r.DeviceFilter.(type) {
	case nil:
	case string:
		e.DeviceFilter = []string{f}
	case []any:
		e.DeviceFilter = make([]string, 0, len(f))
		for _, v := range f {
			s, ok := v.(string)
			if !ok {
				return MIGPartedEntry{}, fmt.Errorf("device-filter element %v (%T) is not a string (quote PCI IDs)", v, v)
			}
			e.DeviceFilter = append(e.DeviceFilter, s)
		}
	default:
		return MIGPartedEntry{}, fmt.Errorf("device-filter %v has type %T, want a PCI ID string or a list of them", f, f)
	}
	switch d := r.Devices.(type) {
	case string:
		if d != "all" {
			return MIGPartedEntry{}, fmt.Errorf("devices %q, want all or a list of GPU indexes", d)
		}
		e.AllDevices = true
	case []any:
		e.Devices = make([]int, 0, len(d))
		for _, v := range d {
			// JSON numbers; YAML integers arrive as whole float64s.
			n, ok := v.(float64)
			if !ok || n < 0 || n != math.Trunc(n) || n > math.MaxInt32 {
				return MIGPartedEntry{}, fmt.Errorf("devices element %v (%T) is not a GPU index", v, v)
			}
			e.Devices = append(e.Devices, int(n))
		}
	case nil:
		return MIGPartedEntry{}, fmt.Errorf("no devices, want all or a list of GPU indexes")
	default:
		return MIGPartedEntry{}, fmt.Errorf("devices %v has type %T, want all or a list of GPU indexes", d, d)
	}
	for _, p := range sortedKeys(r.MIGDevices) {
		if n := r.MIGDevices[p]; n < 0 {
			return MIGPartedEntry{}, fmt.Errorf("mig-devices %s: negative count %d", p, n)
		}
	}
	return e, nil
}

// ConfigNames lists the file's config names, sorted.
func (f *MIGParted) ConfigNames() []string { return sortedKeys(f.Configs) }

// createsInstances reports whether the entry creates any MIG instance.
func (e *MIGPartedEntry) createsInstances() bool {
	if !e.MIGEnabled {
		return false
	}
	for _, n := range e.MIGDevices {
		if n > 0 {
			return true
		}
	}
	return false
}

// hasProfiles reports whether every profile the entry names exists on m.
func (e *MIGPartedEntry) hasProfiles(m *Model) bool {
	for p := range e.MIGDevices {
		if _, ok := m.Profile(p); !ok {
			return false
		}
	}
	return true
}

// filterHas reports whether the entry's device-filter lists the PCI ID.
func (e *MIGPartedEntry) filterHas(id string) bool {
	id = normalizePCIID(id)
	return slices.ContainsFunc(e.DeviceFilter, func(s string) bool { return normalizePCIID(s) == id })
}

// Models returns the catalog models the entry is meant for, in catalog
// order. A filtered entry is meant for the models of the PCI IDs it lists,
// whether or not they have the profiles it names (a mismatch is an error in
// the file, for the caller to report); unknown lists the listed IDs the
// catalog does not know. An unfiltered entry applies to every model that
// has all the profiles it names: the file mixes layouts of many GPU
// generations under unfiltered entries, and mig-parted would fail on a GPU
// lacking a profile.
func (e *MIGPartedEntry) Models(cat *Catalog) (models []*Model, unknown []string) {
	if e.DeviceFilter == nil {
		for _, m := range cat.Models() {
			if e.hasProfiles(m) {
				models = append(models, m)
			}
		}
		return models, nil
	}
	selected := map[*Model]bool{}
	for _, id := range e.DeviceFilter {
		m, ok := cat.ModelByPCIDeviceID(id)
		if !ok {
			unknown = append(unknown, id)
			continue
		}
		selected[m] = true
	}
	for _, m := range cat.Models() {
		if selected[m] {
			models = append(models, m)
		}
	}
	return models, unknown
}

// Layout returns the MIG profiles the named config creates on every GPU of
// the product (an NVML device name), one name per instance, sorted.
//
// An entry applies when its device-filter lists the product's PCI ID (see
// Catalog.PCIDeviceID; a product without a known ID matches no filter) or,
// having no filter, when every profile it names exists on the product's
// model (see Models). Exactly one entry must apply; it must apply to all
// devices, enable MIG with at least one instance, name only profiles of the
// model, and its instances must fit on one GPU together.
func (f *MIGParted) Layout(cat *Catalog, config, product string) ([]string, error) {
	entries, ok := f.Configs[config]
	if !ok {
		return nil, fmt.Errorf("mig-parted config %q not found", config)
	}
	model, ok := cat.Lookup(product)
	if !ok {
		return nil, fmt.Errorf("product %q not in the MIG catalog", product)
	}
	pci, hasPCI := cat.PCIDeviceID(product)
	var applies []int
	for i := range entries {
		e := &entries[i]
		if e.DeviceFilter != nil {
			if hasPCI && e.filterHas(pci) {
				applies = append(applies, i)
			}
		} else if e.hasProfiles(model) {
			applies = append(applies, i)
		}
	}
	if len(applies) != 1 {
		return nil, fmt.Errorf("mig-parted config %s: %d entries apply to %s (%s), want exactly 1", config, len(applies), product, model.Name)
	}
	e := &entries[applies[0]]
	if !e.AllDevices {
		return nil, fmt.Errorf("mig-parted config %s: entry for %s applies to devices %v, want all", config, product, e.Devices)
	}
	if !e.createsInstances() {
		return nil, fmt.Errorf("mig-parted config %s: entry for %s creates no MIG instances", config, product)
	}
	var profiles []string
	for _, name := range sortedKeys(e.MIGDevices) {
		p, ok := model.Profile(name)
		if !ok {
			return nil, fmt.Errorf("mig-parted config %s: profile %s does not exist on %s (has %s)", config, name, model.Name, strings.Join(model.ProfileNames(), ", "))
		}
		// Checked before the list is built, so that a huge count is an
		// error rather than a huge list.
		if n := e.MIGDevices[name]; n > p.MaxInstances {
			return nil, fmt.Errorf("mig-parted config %s on %s: %d instances of %s, %s allows at most %d", config, product, n, name, model.Name, p.MaxInstances)
		}
		for range e.MIGDevices[name] {
			profiles = append(profiles, name)
		}
	}
	if _, err := model.Pack(profiles); err != nil {
		return nil, fmt.Errorf("mig-parted config %s on %s: %w", config, product, err)
	}
	return profiles, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
