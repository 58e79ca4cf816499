package topology_test

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/gpuslice/gpuslice/pkg/topology"
)

// sharedDataFile finds shared/data/<name>, the hand-checked reference data
// that lives next to the repository (../shared/data relative to the repo
// root), by walking up from the package directory. It skips the test when the
// file is absent, except in CI (CI=true), where the data is always present and
// a missing file is an error.
func sharedDataFile(t testing.TB, name string) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatalf("getwd: %v", err)
	}
	for dir := wd; ; {
		p := filepath.Join(dir, "shared", "data", name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	msg := "shared/data/" + name + " not found in " + wd + " or any parent directory (expected at ../shared/data relative to the repository root)"
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s; CI=true, where the reference data must be present", msg)
	}
	t.Skipf("%s; skipping the check against the reference data", msg)
	return ""
}

// migProfilesFile is the part of shared/data/mig-profiles.yaml the tests use.
type migProfilesFile struct {
	GPUs []migProfilesGPU `json:"gpus"`
}

type migProfilesGPU struct {
	NVMLNames          []string            `json:"nvml_names"`
	PCIDeviceIDs       []string            `json:"pci_device_ids"`
	ComputeSlicesTotal int                 `json:"compute_slices_total"`
	MemorySlicesTotal  int                 `json:"memory_slices_total"`
	Profiles           []migProfilesRecord `json:"profiles"`
}

type migProfilesRecord struct {
	Name          string `json:"name"`
	ID            *int   `json:"nvidia_smi_profile_id"`
	ComputeSlices int    `json:"compute_slices"`
	MemorySlices  int    `json:"memory_slices"`
	Size          int    `json:"size"`
	MemoryMiB     int64  `json:"memory_mib"`
	MaxInstances  int    `json:"max_instances"`
	Placements    []int  `json:"placements"`
}

// stripNote drops a parenthetical note: "A100-SXM4-40GB (older drivers ...)"
// -> "A100-SXM4-40GB".
func stripNote(s string) string {
	s, _, _ = strings.Cut(s, " (")
	return strings.TrimSpace(s)
}

func loadMIGProfiles(t testing.TB) *migProfilesFile {
	t.Helper()
	path := sharedDataFile(t, "mig-profiles.yaml")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	var f migProfilesFile
	if err := yaml.Unmarshal(raw, &f); err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
	if len(f.GPUs) == 0 {
		t.Fatalf("%s: no gpus", path)
	}
	return &f
}

// modelOfEntry resolves every NVML name of a YAML GPU entry through the
// catalog and checks that they all land on one model.
func modelOfEntry(t *testing.T, cat *topology.Catalog, g *migProfilesGPU) *topology.Model {
	t.Helper()
	var model *topology.Model
	for _, raw := range g.NVMLNames {
		name := stripNote(raw)
		m, ok := cat.Lookup(name)
		if !ok {
			t.Errorf("NVML name %q (from %q): not in the catalog", name, raw)
			continue
		}
		if model != nil && m != model {
			t.Errorf("NVML name %q resolves to %s, other names of the entry to %s", name, m.Name, model.Name)
			continue
		}
		model = m
	}
	return model
}

func TestCatalogMatchesMIGProfilesData(t *testing.T) {
	data := loadMIGProfiles(t)
	cat := topology.NewCatalog()

	matched := map[*topology.Model]string{}
	for gi := range data.GPUs {
		g := &data.GPUs[gi]
		if len(g.NVMLNames) == 0 {
			t.Errorf("gpus[%d]: no nvml_names", gi)
			continue
		}
		label := stripNote(g.NVMLNames[0])
		t.Run(label, func(t *testing.T) {
			m := modelOfEntry(t, cat, g)
			if m == nil {
				t.Fatalf("no catalog model for %v", g.NVMLNames)
			}
			if prev, dup := matched[m]; dup {
				t.Errorf("model %s matched by two YAML entries: %s and %s", m.Name, prev, label)
			}
			matched[m] = label

			if m.ComputeSlices != g.ComputeSlicesTotal {
				t.Errorf("%s: ComputeSlices %d, YAML compute_slices_total %d", m.Name, m.ComputeSlices, g.ComputeSlicesTotal)
			}
			if m.MemorySlices != g.MemorySlicesTotal {
				t.Errorf("%s: MemorySlices %d, YAML memory_slices_total %d", m.Name, m.MemorySlices, g.MemorySlicesTotal)
			}
			if len(g.Profiles) == 0 {
				t.Fatalf("YAML entry %s has no profiles", label)
			}

			inYAML := map[string]bool{}
			for _, yp := range g.Profiles {
				if yp.Name == "" {
					t.Errorf("YAML profile without a name")
					continue
				}
				if inYAML[yp.Name] {
					t.Errorf("YAML lists profile %s twice", yp.Name)
				}
				inYAML[yp.Name] = true
				checkProfile(t, m, g, &yp)
			}
			for _, p := range m.Profiles {
				if !inYAML[p.Name] {
					t.Errorf("%s: catalog profile %s is not in the YAML", m.Name, p.Name)
				}
			}
			if len(m.Profiles) != len(g.Profiles) {
				t.Errorf("%s: catalog has %d profiles, YAML %d", m.Name, len(m.Profiles), len(g.Profiles))
			}
		})
	}

	for _, m := range cat.Models() {
		if _, ok := matched[m]; !ok {
			t.Errorf("catalog model %s (NVML names %v) is matched by no entry of mig-profiles.yaml", m.Name, m.NVMLNames)
		}
	}
}

func checkProfile(t *testing.T, m *topology.Model, g *migProfilesGPU, yp *migProfilesRecord) {
	t.Helper()
	// The YAML's own consistency first, so that a bad reference row is
	// reported as such rather than as a catalog mismatch.
	if yp.MemorySlices != yp.Size {
		t.Errorf("YAML %s: memory_slices %d != size %d", yp.Name, yp.MemorySlices, yp.Size)
	}
	if yp.ID == nil {
		t.Errorf("YAML %s: no nvidia_smi_profile_id", yp.Name)
	}
	if yp.ComputeSlices <= 0 || yp.MemorySlices <= 0 || yp.MaxInstances <= 0 || yp.MemoryMiB <= 0 || len(yp.Placements) == 0 {
		t.Errorf("YAML %s: missing or non-positive field: %+v", yp.Name, *yp)
	}
	for _, s := range yp.Placements {
		if s < 0 || s+yp.Size > g.MemorySlicesTotal {
			t.Errorf("YAML %s: placement %d+%d outside %d memory slices", yp.Name, s, yp.Size, g.MemorySlicesTotal)
		}
	}

	p, ok := m.Profile(yp.Name)
	if !ok {
		t.Errorf("%s: YAML profile %s missing from the catalog (catalog has %v)", m.Name, yp.Name, m.ProfileNames())
		return
	}
	if p.ComputeSlices != yp.ComputeSlices {
		t.Errorf("%s %s: ComputeSlices %d, YAML %d", m.Name, p.Name, p.ComputeSlices, yp.ComputeSlices)
	}
	if p.MemorySlices != yp.MemorySlices {
		t.Errorf("%s %s: MemorySlices %d, YAML memory_slices %d", m.Name, p.Name, p.MemorySlices, yp.MemorySlices)
	}
	if p.MemorySlices != yp.Size {
		t.Errorf("%s %s: MemorySlices %d, YAML size %d", m.Name, p.Name, p.MemorySlices, yp.Size)
	}
	if p.MaxInstances != yp.MaxInstances {
		t.Errorf("%s %s: MaxInstances %d, YAML %d", m.Name, p.Name, p.MaxInstances, yp.MaxInstances)
	}
	if !slices.Equal(p.Placements, yp.Placements) {
		t.Errorf("%s %s: Placements %v, YAML %v", m.Name, p.Name, p.Placements, yp.Placements)
	}
	if yp.ID != nil && p.ID != *yp.ID {
		t.Errorf("%s %s: ID %d, YAML nvidia_smi_profile_id %d", m.Name, p.Name, p.ID, *yp.ID)
	}
	if p.MemoryMiB != yp.MemoryMiB {
		t.Errorf("%s %s: MemoryMiB %d, YAML memory_mib %d", m.Name, p.Name, p.MemoryMiB, yp.MemoryMiB)
	}
	if want := strings.Contains(yp.Name, "+me"); p.MediaExtensions != want {
		t.Errorf("%s %s: MediaExtensions %v, want %v", m.Name, p.Name, p.MediaExtensions, want)
	}
}

// TestCatalogSelfConsistent checks invariants of the built-in table that hold
// independently of the reference data.
func TestCatalogSelfConsistent(t *testing.T) {
	cat := topology.NewCatalog()
	if len(cat.Models()) == 0 {
		t.Fatal("empty catalog")
	}
	shortNames := map[string]bool{}
	for _, m := range cat.Models() {
		if shortNames[m.Name] {
			t.Errorf("model name %s used twice", m.Name)
		}
		shortNames[m.Name] = true
		if got, ok := cat.ModelByName(m.Name); !ok || got != m {
			t.Errorf("ModelByName(%q) = %v, %v", m.Name, got, ok)
		}
		if len(m.NVMLNames) == 0 {
			t.Errorf("%s: no NVML names", m.Name)
		}
		for _, n := range m.NVMLNames {
			if got, ok := cat.Lookup(n); !ok || got != m {
				t.Errorf("Lookup(%q) = %v, %v; want %s", n, got, ok, m.Name)
			}
		}
		if m.ComputeSlices <= 0 || m.MemorySlices <= 0 || m.MemorySlices > 64 {
			t.Errorf("%s: bad slice totals %d/%d", m.Name, m.ComputeSlices, m.MemorySlices)
		}
		names := map[string]bool{}
		ids := map[int]string{}
		for _, p := range m.Profiles {
			if names[p.Name] {
				t.Errorf("%s: profile %s twice", m.Name, p.Name)
			}
			names[p.Name] = true
			if other, dup := ids[p.ID]; dup {
				t.Errorf("%s: profile ID %d used by %s and %s", m.Name, p.ID, other, p.Name)
			}
			ids[p.ID] = p.Name
			if !strings.HasPrefix(p.Name, strconv.Itoa(p.ComputeSlices)+"g.") {
				t.Errorf("%s: profile %s has %d compute slices; the name says otherwise", m.Name, p.Name, p.ComputeSlices)
			}
			if len(p.Placements) == 0 || !slices.IsSorted(p.Placements) || len(slices.Compact(slices.Clone(p.Placements))) != len(p.Placements) {
				t.Errorf("%s %s: placements %v not sorted and unique", m.Name, p.Name, p.Placements)
			}
			for _, s := range p.Placements {
				if s < 0 || s+p.MemorySlices > m.MemorySlices {
					t.Errorf("%s %s: placement %d+%d outside %d memory slices", m.Name, p.Name, s, p.MemorySlices, m.MemorySlices)
				}
				if !p.AllowsStart(s) {
					t.Errorf("%s %s: AllowsStart(%d) false for a listed placement", m.Name, p.Name, s)
				}
			}
			if p.AllowsStart(-1) || p.AllowsStart(m.MemorySlices) {
				t.Errorf("%s %s: AllowsStart accepts an offset outside the GPU", m.Name, p.Name)
			}
			if p.MaxInstances < 1 || p.MaxInstances > len(p.Placements) {
				t.Errorf("%s %s: MaxInstances %d with %d placements", m.Name, p.Name, p.MaxInstances, len(p.Placements))
			}
			if p.MediaExtensions && p.MaxInstances != 1 {
				t.Errorf("%s %s: +me profile with MaxInstances %d", m.Name, p.Name, p.MaxInstances)
			}
			// Every profile alone at each of its placements is a valid layout.
			for _, s := range p.Placements {
				if err := m.ValidateLayout([]topology.GPUInstance{{Profile: p.Name, Start: s, Size: p.MemorySlices}}); err != nil {
					t.Errorf("%s %s@%d alone: %v", m.Name, p.Name, s, err)
				}
			}
		}
		if got := m.ProfileNames(); len(got) != len(m.Profiles) {
			t.Errorf("%s: ProfileNames %v", m.Name, got)
		}
	}
}

func TestCatalogLookupNormalization(t *testing.T) {
	cat := topology.NewCatalog()
	for _, tc := range []struct {
		product string
		want    string // "" = not found
	}{
		{"NVIDIA A100-SXM4-40GB", "A100-40GB"},
		{"A100-SXM4-40GB", "A100-40GB"},
		{"  nvidia   a100-sxm4-40gb ", "A100-40GB"},
		{"NVIDIA A100-PCIE-40GB", "A100-40GB"},
		{"NVIDIA A100 80GB PCIe", "A100-80GB"},
		{"NVIDIA H100 80GB HBM3", "H100-80GB"},
		{"NVIDIA H100 NVL", "H100-94GB"},
		{"NVIDIA H200", "H200-141GB"},
		{"NVIDIA H200 141GB HBM3e", "H200-141GB"},
		{"NVIDIA A30", "A30-24GB"},
		{"NVIDIA B200", "B200"},
		{"NVIDIA GeForce RTX 4090", ""},
		{"NVIDIA A100", ""},
		{"", ""},
	} {
		m, ok := cat.Lookup(tc.product)
		switch {
		case tc.want == "" && ok:
			t.Errorf("Lookup(%q) = %s, want not found", tc.product, m.Name)
		case tc.want != "" && (!ok || m.Name != tc.want):
			t.Errorf("Lookup(%q) = %v, %v; want %s", tc.product, m, ok, tc.want)
		}
	}
	if _, ok := cat.ModelByName("nope"); ok {
		t.Error("ModelByName(nope) found a model")
	}
}

// normPCI normalizes a PCI ID of mig-profiles.yaml, which may carry a note:
// "0x20F610DE (A800-40GB)" -> "0x20f610de".
func normPCI(id string) string { return strings.ToLower(stripNote(id)) }

// TestCatalogPCIDevicesMatchMIGProfilesData checks the catalog's PCI device
// IDs against shared/data/mig-profiles.yaml: each model lists exactly the IDs
// of its entry there, and no ID belongs to two models.
func TestCatalogPCIDevicesMatchMIGProfilesData(t *testing.T) {
	data := loadMIGProfiles(t)
	cat := topology.NewCatalog()
	owner := map[string]*topology.Model{}
	for _, g := range data.GPUs {
		if len(g.NVMLNames) == 0 {
			continue
		}
		m, ok := cat.Lookup(stripNote(g.NVMLNames[0]))
		if !ok {
			t.Errorf("mig-profiles.yaml GPU %q not in the catalog", g.NVMLNames[0])
			continue
		}
		var want []string
		for _, id := range g.PCIDeviceIDs {
			key := normPCI(id)
			if prev, dup := owner[key]; dup && prev != m {
				t.Errorf("PCI ID %s maps to both %s and %s", id, prev.Name, m.Name)
			}
			owner[key] = m
			want = append(want, key)
			if got, ok := cat.ModelByPCIDeviceID(stripNote(id)); !ok || got != m {
				t.Errorf("ModelByPCIDeviceID(%s) = %v, %v; want %s", id, got, ok, m.Name)
			}
		}
		var got []string
		for _, d := range m.PCIDevices {
			got = append(got, normPCI(d.ID))
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: catalog PCI IDs %v, mig-profiles.yaml %v", m.Name, got, want)
		}
	}
	if len(owner) == 0 {
		t.Fatal("no PCI device IDs in mig-profiles.yaml")
	}
}

// TestPCIDeviceIDs checks the PCI IDs of the products the MIG benchmark
// builds nodes of (and their siblings) against shared/data/mig-profiles.yaml.
func TestPCIDeviceIDs(t *testing.T) {
	data := loadMIGProfiles(t)
	cat := topology.NewCatalog()
	for _, product := range []string{
		"NVIDIA A100-SXM4-40GB", "NVIDIA A100-PCIE-40GB", "NVIDIA A100-SXM4-80GB",
		"NVIDIA A100 80GB PCIe", "NVIDIA H100 80GB HBM3", "NVIDIA H100 PCIe",
	} {
		id, ok := cat.PCIDeviceID(product)
		if !ok {
			t.Errorf("%s: no PCI ID", product)
			continue
		}
		found := false
		for _, g := range data.GPUs {
			if !slices.Contains(g.NVMLNames, product) {
				continue
			}
			for _, s := range g.PCIDeviceIDs {
				if fields := strings.Fields(s); len(fields) > 0 && strings.EqualFold(fields[0], id) {
					found = true
				}
			}
		}
		if !found {
			t.Errorf("%s: PCI ID %s not listed for it in mig-profiles.yaml", product, id)
		}
	}
	if _, ok := cat.PCIDeviceID("NVIDIA Tesla T4"); ok {
		t.Error("PCI ID for a product the benchmark does not build")
	}
}

// TestCatalogPCIDevicesSelfConsistent checks the catalog's PCI table without
// the reference data: a device's product is one of its model's NVML names
// and maps back to the device's ID.
func TestCatalogPCIDevicesSelfConsistent(t *testing.T) {
	cat := topology.NewCatalog()
	seen := map[string]string{}
	for _, m := range cat.Models() {
		if len(m.PCIDevices) == 0 {
			t.Errorf("%s: no PCI device IDs", m.Name)
		}
		for _, d := range m.PCIDevices {
			if len(d.ID) != 10 || !strings.HasPrefix(d.ID, "0x") || !strings.HasSuffix(d.ID, "10DE") {
				t.Errorf("%s: PCI ID %q is not 0x<device>10DE", m.Name, d.ID)
			}
			if prev, dup := seen[d.ID]; dup {
				t.Errorf("PCI ID %s in %s and %s", d.ID, prev, m.Name)
			}
			seen[d.ID] = m.Name
			for _, id := range []string{d.ID, strings.ToLower(d.ID), " " + d.ID + " "} {
				if got, ok := cat.ModelByPCIDeviceID(id); !ok || got != m {
					t.Errorf("ModelByPCIDeviceID(%q) = %v, %v; want %s", id, got, ok, m.Name)
				}
			}
			if d.Product == "" {
				continue
			}
			if !slices.Contains(m.NVMLNames, d.Product) {
				t.Errorf("%s: PCI ID %s has product %q, not one of %v", m.Name, d.ID, d.Product, m.NVMLNames)
			}
			for _, p := range []string{d.Product, strings.TrimPrefix(d.Product, "NVIDIA "), strings.ToUpper(d.Product)} {
				if id, ok := cat.PCIDeviceID(p); !ok || id != d.ID {
					t.Errorf("PCIDeviceID(%q) = %q, %v; want %s", p, id, ok, d.ID)
				}
			}
		}
	}
	if _, ok := cat.ModelByPCIDeviceID("0x1EB810DE"); ok { // Tesla T4
		t.Error("ModelByPCIDeviceID found a model for a T4")
	}
}
