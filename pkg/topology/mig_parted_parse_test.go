package topology_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gpuslice/gpuslice/pkg/topology"
)

// partedSample is a small mig-parted file in the shapes config-default.yaml
// uses: unfiltered entries for several GPU generations, filters as a string
// and as a list, an empty layout and a disabled one.
const partedSample = `
version: v1
mig-configs:
  all-disabled:
    - devices: all
      mig-enabled: false
  all-enabled:
    - devices: all
      mig-enabled: true
      mig-devices: {}
  all-1g.5gb:
    - devices: all
      mig-enabled: true
      mig-devices:
        "1g.5gb": 7
  all-3g:
    - devices: all
      mig-enabled: true
      mig-devices:
        "3g.20gb": 2
    - devices: all
      mig-enabled: true
      mig-devices:
        "3g.40gb": 2
  all-balanced:
    - device-filter: ["0x20B010DE", "0x20b110de"]
      devices: all
      mig-enabled: true
      mig-devices:
        "1g.5gb": 2
        "2g.10gb": 1
        "3g.20gb": 1
    - device-filter: " 0x233010DE "
      devices: all
      mig-enabled: true
      mig-devices:
        "1g.10gb": 2
        "2g.20gb": 1
        "3g.40gb": 1
    - device-filter: ["0x20B710DE", "0x12345678"]
      devices: all
      mig-enabled: true
      mig-devices:
        "1g.6gb": 2
        "2g.12gb": 1
  two-gpus:
    - devices: [0, 1]
      mig-enabled: true
      mig-devices:
        "1g.5gb": 7
  both-apply:
    - devices: all
      mig-enabled: true
      mig-devices:
        "1g.5gb": 7
    - device-filter: "0x20B010DE"
      devices: all
      mig-enabled: true
      mig-devices:
        "7g.40gb": 1
  wrong-profile:
    - device-filter: "0x20B010DE"
      devices: all
      mig-enabled: true
      mig-devices:
        "1g.20gb": 4
  too-many:
    - devices: all
      mig-enabled: true
      mig-devices:
        "1g.5gb": 1000000000000
  no-fit:
    - devices: all
      mig-enabled: true
      mig-devices:
        "4g.20gb": 1
        "3g.20gb": 1
        "1g.5gb": 1
  zero:
    - devices: all
      mig-enabled: true
      mig-devices:
        "1g.5gb": 0
  none-apply:
    - device-filter: []
      devices: all
      mig-enabled: true
      mig-devices:
        "1g.5gb": 7
`

const (
	partedA100 = "NVIDIA A100-SXM4-40GB"
	partedH100 = "NVIDIA H100 80GB HBM3"
)

func TestParseMIGParted(t *testing.T) {
	f, err := topology.ParseMIGParted([]byte(partedSample))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"all-1g.5gb", "all-3g", "all-balanced", "all-disabled", "all-enabled", "both-apply", "no-fit", "none-apply", "too-many", "two-gpus", "wrong-profile", "zero"}
	if got := f.ConfigNames(); !slices.Equal(got, want) {
		t.Errorf("ConfigNames() = %v, want %v", got, want)
	}
	bal := f.Configs["all-balanced"]
	if len(bal) != 3 || !slices.Equal(bal[0].DeviceFilter, []string{"0x20B010DE", "0x20b110de"}) || !slices.Equal(bal[1].DeviceFilter, []string{" 0x233010DE "}) || !bal[0].AllDevices {
		t.Errorf("all-balanced parsed as %+v", bal)
	}
	if e := f.Configs["all-1g.5gb"][0]; e.DeviceFilter != nil || !e.AllDevices || !e.MIGEnabled || e.MIGDevices["1g.5gb"] != 7 {
		t.Errorf("all-1g.5gb parsed as %+v", e)
	}
	if e := f.Configs["two-gpus"][0]; e.AllDevices || !slices.Equal(e.Devices, []int{0, 1}) {
		t.Errorf("two-gpus parsed as %+v", e)
	}
	if e := f.Configs["none-apply"][0]; e.DeviceFilter == nil || len(e.DeviceFilter) != 0 {
		t.Errorf("an empty device-filter parsed as %#v, want empty and non-nil", e.DeviceFilter)
	}
}

func TestParseMIGPartedRejects(t *testing.T) {
	entry := func(lines string) string {
		return "version: v1\nmig-configs:\n  c:\n    - " + strings.ReplaceAll(strings.TrimSpace(lines), "\n", "\n      ") + "\n"
	}
	for _, c := range []struct{ name, yaml, want string }{
		{"empty", "", `version "" with 0 mig-configs`},
		{"not yaml", "version: v1\nmig-configs: [\n", "parse mig-parted config"},
		{"not a map", "- a\n- b\n", "parse mig-parted config"},
		{"wrong version", "version: v2\nmig-configs:\n  c: []\n", `version "v2"`},
		{"no configs", "version: v1\n", "with 0 mig-configs"},
		{"configs a list", "version: v1\nmig-configs: [a]\n", "parse mig-parted config"},
		{"entries a map", "version: v1\nmig-configs:\n  c: {devices: all}\n", "parse mig-parted config"},
		{"no devices", entry("mig-enabled: false"), "c[0]: no devices"},
		{"devices some", entry("devices: some"), `c[0]: devices "some"`},
		{"devices number", entry("devices: 3"), "c[0]: devices 3 has type float64"},
		{"devices negative", entry("devices: [0, -1]"), "devices element -1"},
		{"devices fraction", entry("devices: [0.5]"), "devices element 0.5"},
		{"devices string element", entry("devices: [a]"), "devices element a"},
		{"filter unquoted hex", entry("device-filter: 0x20B010DE\ndevices: all"), "c[0]: device-filter 5.4"},
		{"filter element", entry("device-filter: [\"0x20B010DE\", 7]\ndevices: all"), "device-filter element 7 (float64) is not a string"},
		{"filter map", entry("device-filter: {a: b}\ndevices: all"), "device-filter map[a:b]"},
		{"negative count", entry("devices: all\nmig-enabled: true\nmig-devices: {\"1g.5gb\": -1}"), "mig-devices 1g.5gb: negative count -1"},
		{"fractional count", entry("devices: all\nmig-enabled: true\nmig-devices: {\"1g.5gb\": 1.5}"), "parse mig-parted config"},
		{"count a string", entry("devices: all\nmig-enabled: true\nmig-devices: {\"1g.5gb\": x}"), "parse mig-parted config"},
		{"enabled a string", entry("devices: all\nmig-enabled: maybe"), "parse mig-parted config"},
	} {
		f, err := topology.ParseMIGParted([]byte(c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: ParseMIGParted = %v, %v; want error containing %q", c.name, f, err, c.want)
		}
	}
}

func TestLoadMIGParted(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(good, []byte(partedSample), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("version: v0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if f, err := topology.LoadMIGParted(good); err != nil || len(f.Configs) != 12 {
		t.Errorf("LoadMIGParted(good) = %v, %v", f, err)
	}
	if _, err := topology.LoadMIGParted(bad); err == nil || !strings.Contains(err.Error(), bad+": mig-parted config: version") {
		t.Errorf("LoadMIGParted(bad) error %v, want one naming the file and the version", err)
	}
	if _, err := topology.LoadMIGParted(filepath.Join(dir, "missing.yaml")); err == nil || !os.IsNotExist(err) {
		t.Errorf("LoadMIGParted(missing) error %v, want not-exist", err)
	}
}

func TestMIGPartedLayout(t *testing.T) {
	f, err := topology.ParseMIGParted([]byte(partedSample))
	if err != nil {
		t.Fatal(err)
	}
	cat := topology.NewCatalog()
	rep := func(p string, n int) []string { return slices.Repeat([]string{p}, n) }
	for _, c := range []struct {
		config, product string
		want            []string
	}{
		{"all-balanced", partedA100, []string{"1g.5gb", "1g.5gb", "2g.10gb", "3g.20gb"}},
		{"all-balanced", "A100-PCIE-40GB", []string{"1g.5gb", "1g.5gb", "2g.10gb", "3g.20gb"}}, // lower-case filter ID, no NVIDIA prefix
		{"all-balanced", partedH100, []string{"1g.10gb", "1g.10gb", "2g.20gb", "3g.40gb"}},     // filter ID with spaces
		{"all-1g.5gb", partedA100, rep("1g.5gb", 7)},
		{"all-3g", partedA100, rep("3g.20gb", 2)},
		{"all-3g", partedH100, rep("3g.40gb", 2)},
		{"all-3g", "NVIDIA A100-SXM4-80GB", rep("3g.40gb", 2)},
	} {
		got, err := f.Layout(cat, c.config, c.product)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("Layout(%s, %s) = %v, %v; want %v", c.config, c.product, got, err, c.want)
		}
	}
	for _, c := range []struct{ config, product, want string }{
		{"nope", partedA100, `mig-parted config "nope" not found`},
		{"all-balanced", "NVIDIA Tesla T4", `product "NVIDIA Tesla T4" not in the MIG catalog`},
		// The A100-80GB's PCI ID is in no filter of the sample.
		{"all-balanced", "NVIDIA A100-SXM4-80GB", "0 entries apply to NVIDIA A100-SXM4-80GB (A100-80GB)"},
		// The A30's filter applies by model, but the catalog does not know
		// which PCI ID the NVML name "NVIDIA A30" has.
		{"all-balanced", "NVIDIA A30", "0 entries apply"},
		{"all-1g.5gb", partedH100, "0 entries apply"},
		{"both-apply", partedA100, "2 entries apply"},
		{"none-apply", partedA100, "0 entries apply"},
		{"all-disabled", partedA100, "creates no MIG instances"},
		{"all-enabled", partedA100, "creates no MIG instances"},
		{"zero", partedA100, "creates no MIG instances"},
		{"two-gpus", partedA100, "applies to devices [0 1], want all"},
		{"wrong-profile", partedA100, "profile 1g.20gb does not exist on A100-40GB"},
		{"too-many", partedA100, "1000000000000 instances of 1g.5gb, A100-40GB allows at most 7"},
		{"no-fit", partedA100, "mig-parted config no-fit on NVIDIA A100-SXM4-40GB: MIG profiles"},
	} {
		if got, err := f.Layout(cat, c.config, c.product); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Layout(%s, %s) = %v, %v; want error containing %q", c.config, c.product, got, err, c.want)
		}
	}
}

func TestMIGPartedEntryModels(t *testing.T) {
	f, err := topology.ParseMIGParted([]byte(partedSample))
	if err != nil {
		t.Fatal(err)
	}
	cat := topology.NewCatalog()
	names := func(ms []*topology.Model) []string {
		var out []string
		for _, m := range ms {
			out = append(out, m.Name)
		}
		return out
	}
	for _, c := range []struct {
		config      string
		entry       int
		want, unkwn []string
	}{
		{"all-balanced", 0, []string{"A100-40GB"}, nil},
		{"all-balanced", 1, []string{"H100-80GB"}, nil},
		{"all-balanced", 2, []string{"A30-24GB"}, []string{"0x12345678"}},
		{"all-1g.5gb", 0, []string{"A100-40GB"}, nil},
		// 3g.40gb exists on the A100-80GB and the H100-80GB.
		{"all-3g", 1, []string{"A100-80GB", "H100-80GB"}, nil},
		// A filtered entry selects its models even where a profile is missing.
		{"wrong-profile", 0, []string{"A100-40GB"}, nil},
		{"none-apply", 0, nil, nil},
	} {
		e := f.Configs[c.config][c.entry]
		models, unknown := e.Models(cat)
		if got := names(models); !slices.Equal(got, c.want) || !slices.Equal(unknown, c.unkwn) {
			t.Errorf("%s[%d].Models() = %v, %v; want %v, %v", c.config, c.entry, got, unknown, c.want, c.unkwn)
		}
	}
	// An unfiltered entry without profiles applies to every model.
	if models, _ := f.Configs["all-enabled"][0].Models(cat); len(models) != len(cat.Models()) {
		t.Errorf("all-enabled applies to %v, want every model", names(models))
	}
}

// FuzzParseMIGParted checks that no input makes the parser or Layout panic,
// and that every layout Layout returns fits on its GPU.
func FuzzParseMIGParted(f *testing.F) {
	f.Add([]byte(partedSample))
	f.Add([]byte("version: v1\nmig-configs:\n  c:\n    - devices: all\n      mig-enabled: true\n      mig-devices: {\"1g.5gb\": 3, \"3g.20gb\": 1}\n"))
	f.Add([]byte("version: v1\nmig-configs:\n  c:\n    - device-filter: [\"0x233010DE\"]\n      devices: [0]\n"))
	f.Add([]byte("{}"))
	cat := topology.NewCatalog()
	products := []string{partedA100, partedH100, "NVIDIA A30", "NVIDIA Tesla T4"}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := topology.ParseMIGParted(data)
		if err != nil {
			return
		}
		for _, name := range p.ConfigNames() {
			for i := range p.Configs[name] {
				e := p.Configs[name][i]
				e.Models(cat)
			}
			for _, product := range products {
				profiles, err := p.Layout(cat, name, product)
				if err != nil {
					continue
				}
				m, _ := cat.Lookup(product)
				if _, err := m.Pack(profiles); err != nil || len(profiles) == 0 {
					t.Errorf("Layout(%s, %s) = %v, which does not pack: %v", name, product, profiles, err)
				}
			}
		}
	})
}
