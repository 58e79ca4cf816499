package mig

import (
	"fmt"
	"os"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/gpuslice/gpuslice/pkg/topology"
)

// MIGParted is NVIDIA mig-parted's configuration file
// (deployments/systemd/config-default.yaml upstream): named MIG layouts, each
// a list of entries that apply to the devices their device-filter selects.
type MIGParted struct {
	Version string                      `json:"version"`
	Configs map[string][]MIGPartedEntry `json:"mig-configs"`
}

// MIGPartedEntry is one entry of a named layout.
type MIGPartedEntry struct {
	// DeviceFilter is a PCI ID ("0x20B010DE", device then vendor) or a list of
	// them; nil when the entry applies to every device.
	DeviceFilter any `json:"device-filter"`
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
	var f MIGParted
	if err := yaml.Unmarshal(raw, &f); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	if f.Version != "v1" || len(f.Configs) == 0 {
		return nil, fmt.Errorf("%s: version %q with %d mig-configs, want v1 with some", path, f.Version, len(f.Configs))
	}
	return &f, nil
}

// filter returns the entry's PCI IDs, nil when it has no device-filter.
func (e *MIGPartedEntry) filter() ([]string, error) {
	switch f := e.DeviceFilter.(type) {
	case nil:
		return nil, nil
	case string:
		return []string{f}, nil
	case []any:
		out := make([]string, 0, len(f))
		for _, v := range f {
			s, ok := v.(string)
			if !ok {
				return nil, fmt.Errorf("device-filter element %v (%T) is not a string", v, v)
			}
			out = append(out, s)
		}
		return out, nil
	default:
		return nil, fmt.Errorf("device-filter %v has type %T", f, f)
	}
}

// Layout returns the MIG profiles the named layout creates on every GPU of
// the product (an NVML device name), one name per instance, sorted.
//
// An entry applies when its device-filter lists the product's PCI ID (see
// PCIDeviceID) or, having no filter, when every profile it names exists on
// the product's model: the file mixes layouts of many GPU generations under
// unfiltered entries (all-3g.20gb is meant for A100-40GB only), and
// mig-parted would fail on a GPU lacking the profile. Exactly one entry must
// apply, it must apply to all devices and enable MIG with at least one
// instance.
func (f *MIGParted) Layout(cat *topology.Catalog, config, product string) ([]string, error) {
	entries, ok := f.Configs[config]
	if !ok {
		return nil, fmt.Errorf("mig-parted config %q not found", config)
	}
	model, ok := cat.Lookup(product)
	if !ok {
		return nil, fmt.Errorf("product %q not in the MIG catalog", product)
	}
	pci, hasPCI := PCIDeviceID(product)
	var applies []int
	for i := range entries {
		e := &entries[i]
		filter, err := e.filter()
		if err != nil {
			return nil, fmt.Errorf("mig-parted config %s[%d]: %w", config, i, err)
		}
		if filter != nil {
			if hasPCI && containsFold(filter, pci) {
				applies = append(applies, i)
			}
			continue
		}
		all := true
		for p := range e.MIGDevices {
			if _, ok := model.Profile(p); !ok {
				all = false
				break
			}
		}
		if all {
			applies = append(applies, i)
		}
	}
	if len(applies) != 1 {
		return nil, fmt.Errorf("mig-parted config %s: %d entries apply to %s (%s), want exactly 1", config, len(applies), product, model.Name)
	}
	e := &entries[applies[0]]
	if d, ok := e.Devices.(string); !ok || d != "all" {
		return nil, fmt.Errorf("mig-parted config %s: entry for %s applies to devices %v, want all", config, product, e.Devices)
	}
	if !e.MIGEnabled || len(e.MIGDevices) == 0 {
		return nil, fmt.Errorf("mig-parted config %s: entry for %s creates no MIG instances", config, product)
	}
	var profiles []string
	for p, n := range e.MIGDevices {
		if _, ok := model.Profile(p); !ok {
			return nil, fmt.Errorf("mig-parted config %s: profile %s does not exist on %s", config, p, model.Name)
		}
		for range n {
			profiles = append(profiles, p)
		}
	}
	sort.Strings(profiles)
	if _, err := model.Pack(profiles); err != nil {
		return nil, fmt.Errorf("mig-parted config %s on %s: %w", config, product, err)
	}
	return profiles, nil
}

// PCIDeviceID is the PCI ID (device and vendor, as mig-parted's
// device-filter writes it) of the products this benchmark builds nodes of,
// from shared/data/mig-profiles.yaml (a test checks the two agree).
func PCIDeviceID(product string) (string, bool) {
	switch strings.TrimPrefix(strings.TrimSpace(product), "NVIDIA ") {
	case "A100-SXM4-40GB":
		return "0x20B010DE", true
	case "A100-PCIE-40GB":
		return "0x20B110DE", true
	case "A100-SXM4-80GB":
		return "0x20B210DE", true
	case "A100 80GB PCIe":
		return "0x20B510DE", true
	case "H100 80GB HBM3":
		return "0x233010DE", true
	case "H100 PCIe":
		return "0x233110DE", true
	}
	return "", false
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(strings.TrimSpace(x), s) {
			return true
		}
	}
	return false
}
