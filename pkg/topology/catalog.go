package topology

import (
	"fmt"
	"strings"
)

// Profile is one MIG GPU-instance profile of a GPU model.
type Profile struct {
	// Name without the resource prefix, e.g. "3g.40gb" or "1g.10gb+me".
	Name string
	// ID is the GPU-instance profile ID shown by `nvidia-smi mig -lgip`.
	ID            int
	ComputeSlices int
	// MemorySlices is the placement size: memory slices the instance occupies.
	MemorySlices int
	MemoryMiB    int64
	MaxInstances int
	// Placements are the allowed start offsets, in memory slices.
	Placements []int
	// MediaExtensions marks +me profiles: at most one +me instance per GPU.
	MediaExtensions bool
}

// AllowsStart reports whether start is one of the profile's placements.
func (p *Profile) AllowsStart(start int) bool {
	for _, s := range p.Placements {
		if s == start {
			return true
		}
	}
	return false
}

// Model is the MIG geometry of one GPU model.
type Model struct {
	// Name is gpuslice's short name, e.g. "A100-40GB".
	Name string
	// NVMLNames are the device names NVML reports for this model.
	NVMLNames     []string
	ComputeSlices int
	MemorySlices  int
	Profiles      []Profile
	// PCIDevices are the PCI device IDs of the GPUs with this geometry,
	// including relatives the catalog has no NVML name for (A800, H800).
	PCIDevices []PCIDevice
}

// PCIDevice is one PCI device ID of a model's GPUs.
type PCIDevice struct {
	// ID is the device ID then the vendor ID in hex, as mig-parted's
	// device-filter writes it: "0x20B010DE".
	ID string
	// Product is the NVML device name of the GPUs with this ID, empty where
	// the catalog does not know which of the model's names it is.
	Product string
}

// Profile returns the profile with the given name.
func (m *Model) Profile(name string) (*Profile, bool) {
	for i := range m.Profiles {
		if m.Profiles[i].Name == name {
			return &m.Profiles[i], true
		}
	}
	return nil, false
}

// ProfileNames lists the model's profile names in catalog order.
func (m *Model) ProfileNames() []string {
	out := make([]string, len(m.Profiles))
	for i := range m.Profiles {
		out[i] = m.Profiles[i].Name
	}
	return out
}

// Catalog maps NVML device names to MIG geometries. It is immutable once
// built; build it with NewCatalog.
type Catalog struct {
	models []*Model
	byName map[string]*Model
	// byPCI maps normalized PCI IDs to models, productPCI normalized NVML
	// names to PCI IDs.
	byPCI      map[string]*Model
	productPCI map[string]string
}

// NewCatalog returns the catalog of every GPU model gpuslice knows. The facts
// come from NVIDIA's MIG user guide and real `nvidia-smi mig -lgipp` output
// (see shared/data/mig-profiles.yaml, which a test checks this table against).
func NewCatalog() *Catalog {
	c := &Catalog{byName: map[string]*Model{}, byPCI: map[string]*Model{}, productPCI: map[string]string{}}
	for _, m := range builtinModels() {
		c.models = append(c.models, m)
		for _, n := range m.NVMLNames {
			c.byName[normalizeProduct(n)] = m
		}
		for _, d := range m.PCIDevices {
			c.byPCI[normalizePCIID(d.ID)] = m
			if d.Product != "" {
				c.productPCI[normalizeProduct(d.Product)] = d.ID
			}
		}
	}
	return c
}

// Models returns the catalog's models in a fixed order.
func (c *Catalog) Models() []*Model { return c.models }

// Lookup finds the model of an NVML device name. Matching ignores case,
// surrounding space and the "NVIDIA " prefix that older drivers omit.
func (c *Catalog) Lookup(product string) (*Model, bool) {
	m, ok := c.byName[normalizeProduct(product)]
	return m, ok
}

// ModelByName finds a model by gpuslice's short name ("H100-80GB").
func (c *Catalog) ModelByName(name string) (*Model, bool) {
	for _, m := range c.models {
		if m.Name == name {
			return m, true
		}
	}
	return nil, false
}

// ModelByPCIDeviceID finds the model of a PCI device ID ("0x20B010DE",
// device then vendor, as mig-parted's device-filter writes it). Matching
// ignores case and surrounding space.
func (c *Catalog) ModelByPCIDeviceID(id string) (*Model, bool) {
	m, ok := c.byPCI[normalizePCIID(id)]
	return m, ok
}

// PCIDeviceID returns the PCI device ID of the GPUs an NVML device name
// stands for, as the model's PCIDevices list it, when the catalog knows it.
// The product matches as in Lookup.
func (c *Catalog) PCIDeviceID(product string) (string, bool) {
	id, ok := c.productPCI[normalizeProduct(product)]
	return id, ok
}

func normalizePCIID(id string) string { return strings.ToLower(strings.TrimSpace(id)) }

func normalizeProduct(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	s = strings.TrimPrefix(s, "nvidia ")
	return strings.Join(strings.Fields(s), " ")
}

// profileSpec is the memory size of one profile of an 8-memory-slice model,
// the only thing that differs between the GA100/GH100/GB100 class models.
type eightSliceNames struct {
	one, oneME, oneDouble, two, three, four, seven string
	// MiB per profile size class: 1 slice, 2 slices, 4 slices, 8 slices.
	mib1, mib2, mib4, mib8 int64
}

// eightSliceModel builds a 7-compute / 8-memory-slice model. A100, H100,
// H200, GH200 and B200 share this geometry; the placements are the verified
// `nvidia-smi mig -lgipp` output of A100-40GB and H100-80GB.
func eightSliceModel(name string, nvmlNames []string, n eightSliceNames) *Model {
	seq := []int{0, 1, 2, 3, 4, 5, 6}
	return &Model{
		Name:          name,
		NVMLNames:     nvmlNames,
		ComputeSlices: 7,
		MemorySlices:  8,
		Profiles: []Profile{
			{Name: n.one, ID: 19, ComputeSlices: 1, MemorySlices: 1, MemoryMiB: n.mib1, MaxInstances: 7, Placements: seq},
			{Name: n.oneME, ID: 20, ComputeSlices: 1, MemorySlices: 1, MemoryMiB: n.mib1, MaxInstances: 1, Placements: seq, MediaExtensions: true},
			{Name: n.oneDouble, ID: 15, ComputeSlices: 1, MemorySlices: 2, MemoryMiB: n.mib2, MaxInstances: 4, Placements: []int{0, 2, 4, 6}},
			{Name: n.two, ID: 14, ComputeSlices: 2, MemorySlices: 2, MemoryMiB: n.mib2, MaxInstances: 3, Placements: []int{0, 2, 4}},
			{Name: n.three, ID: 9, ComputeSlices: 3, MemorySlices: 4, MemoryMiB: n.mib4, MaxInstances: 2, Placements: []int{0, 4}},
			{Name: n.four, ID: 5, ComputeSlices: 4, MemorySlices: 4, MemoryMiB: n.mib4, MaxInstances: 1, Placements: []int{0}},
			{Name: n.seven, ID: 0, ComputeSlices: 7, MemorySlices: 8, MemoryMiB: n.mib8, MaxInstances: 1, Placements: []int{0}},
		},
	}
}

// withPCI sets a model's PCI device IDs.
func withPCI(m *Model, devices ...PCIDevice) *Model {
	m.PCIDevices = devices
	return m
}

// builtinModels is the catalog. The PCI device IDs are those of
// shared/data/mig-profiles.yaml (a test checks the two agree); a device's
// Product is set only where the pairing of NVML name and ID is established
// (the products the MIG benchmark builds nodes of and their PCIe/SXM
// siblings).
func builtinModels() []*Model {
	return []*Model{
		withPCI(eightSliceModel("A100-40GB",
			[]string{"NVIDIA A100-SXM4-40GB", "NVIDIA A100-PCIE-40GB"},
			eightSliceNames{"1g.5gb", "1g.5gb+me", "1g.10gb", "2g.10gb", "3g.20gb", "4g.20gb", "7g.40gb", 4864, 9851, 19968, 40192}),
			PCIDevice{"0x20B010DE", "NVIDIA A100-SXM4-40GB"}, PCIDevice{"0x20B110DE", "NVIDIA A100-PCIE-40GB"},
			PCIDevice{ID: "0x20F110DE"}, PCIDevice{ID: "0x20F610DE"}), // A800-40GB
		withPCI(eightSliceModel("A100-80GB",
			[]string{"NVIDIA A100-SXM4-80GB", "NVIDIA A100 80GB PCIe"},
			eightSliceNames{"1g.10gb", "1g.10gb+me", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb", 9984, 19968, 40192, 80896}),
			PCIDevice{"0x20B210DE", "NVIDIA A100-SXM4-80GB"}, PCIDevice{"0x20B510DE", "NVIDIA A100 80GB PCIe"},
			PCIDevice{ID: "0x20F310DE"}, PCIDevice{ID: "0x20F510DE"}), // A800 SXM4 80GB, A800 80GB PCIe
		withPCI(eightSliceModel("H100-80GB",
			[]string{"NVIDIA H100 80GB HBM3", "NVIDIA H100 PCIe"},
			eightSliceNames{"1g.10gb", "1g.10gb+me", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb", 9851, 19968, 40192, 81152}),
			PCIDevice{"0x233010DE", "NVIDIA H100 80GB HBM3"}, PCIDevice{"0x233110DE", "NVIDIA H100 PCIe"},
			PCIDevice{ID: "0x232210DE"}, PCIDevice{ID: "0x232410DE"}), // H800 PCIe, H800 SXM
		withPCI(eightSliceModel("H100-94GB",
			[]string{"NVIDIA H100 NVL"},
			eightSliceNames{"1g.12gb", "1g.12gb+me", "1g.24gb", "2g.24gb", "3g.47gb", "4g.47gb", "7g.94gb", 11444, 22888, 44823, 95355}),
			PCIDevice{ID: "0x232110DE"}, PCIDevice{ID: "0x233A10DE"}), // H800 NVL
		withPCI(eightSliceModel("GH200-96GB",
			[]string{"NVIDIA GH200 480GB"},
			eightSliceNames{"1g.12gb", "1g.12gb+me", "1g.24gb", "2g.24gb", "3g.48gb", "4g.48gb", "7g.96gb", 11444, 22888, 45776, 91553}),
			PCIDevice{ID: "0x234210DE"}, PCIDevice{ID: "0x233D10DE"}, PCIDevice{ID: "0x20B610DE"}, PCIDevice{ID: "0x232910DE"}), // -, H100 96GB, PG506-96GB, -
		withPCI(eightSliceModel("GH200-144GB",
			[]string{"NVIDIA GH200 144G HBM3e"},
			eightSliceNames{"1g.18gb", "1g.18gb+me", "1g.36gb", "2g.36gb", "3g.72gb", "4g.72gb", "7g.144gb", 17166, 34332, 68665, 137329}),
			PCIDevice{ID: "0x234810DE"}),
		// "NVIDIA H200 141GB HBM3e" is the name go-nvml's mock reports; real
		// drivers report "NVIDIA H200".
		withPCI(eightSliceModel("H200-141GB",
			[]string{"NVIDIA H200", "NVIDIA H200 NVL", "NVIDIA H200 141GB HBM3e"},
			eightSliceNames{"1g.18gb", "1g.18gb+me", "1g.35gb", "2g.35gb", "3g.71gb", "4g.71gb", "7g.141gb", 17166, 33379, 67711, 134468}),
			PCIDevice{ID: "0x233510DE"}, PCIDevice{ID: "0x233B10DE"}), // -, H200 NVL
		withPCI(eightSliceModel("B200",
			[]string{"NVIDIA B200"},
			eightSliceNames{"1g.23gb", "1g.23gb+me", "1g.45gb", "2g.45gb", "3g.90gb", "4g.90gb", "7g.180gb", 21935, 42915, 85831, 171661}),
			PCIDevice{ID: "0x290110DE"}),
		{
			Name:          "A30-24GB",
			NVMLNames:     []string{"NVIDIA A30"},
			ComputeSlices: 4,
			MemorySlices:  4,
			Profiles: []Profile{
				{Name: "1g.6gb", ID: 14, ComputeSlices: 1, MemorySlices: 1, MemoryMiB: 5949, MaxInstances: 4, Placements: []int{0, 1, 2, 3}},
				{Name: "1g.6gb+me", ID: 21, ComputeSlices: 1, MemorySlices: 1, MemoryMiB: 5949, MaxInstances: 1, Placements: []int{0, 1, 2, 3}, MediaExtensions: true},
				{Name: "2g.12gb", ID: 5, ComputeSlices: 2, MemorySlices: 2, MemoryMiB: 11971, MaxInstances: 2, Placements: []int{0, 2}},
				{Name: "2g.12gb+me", ID: 6, ComputeSlices: 2, MemorySlices: 2, MemoryMiB: 11971, MaxInstances: 1, Placements: []int{0, 2}, MediaExtensions: true},
				{Name: "4g.24gb", ID: 0, ComputeSlices: 4, MemorySlices: 4, MemoryMiB: 24064, MaxInstances: 1, Placements: []int{0}},
			},
			PCIDevices: []PCIDevice{{ID: "0x20B710DE"}},
		},
	}
}

// ValidateLayout checks that a set of GPU instances can coexist on one GPU of
// this model: every profile is known, every start offset is allowed, memory
// ranges do not overlap, compute slices stay within budget, per-profile
// maximum counts hold, and at most one +me instance exists. The error names
// each problem found.
func (m *Model) ValidateLayout(instances []GPUInstance) error {
	var errs []string
	add := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }

	var owner [64]int // memory slice -> 1 + index of the instance holding it
	if m.MemorySlices > len(owner) {
		return fmt.Errorf("%s: %d memory slices exceed the supported maximum %d", m.Name, m.MemorySlices, len(owner))
	}
	counts := make(map[string]int, len(instances))
	compute, media := 0, 0
	for i, in := range instances {
		p, ok := m.Profile(in.Profile)
		if !ok {
			add("instance %d: unknown MIG profile %q for %s (known: %s)", i, in.Profile, m.Name, strings.Join(m.ProfileNames(), ", "))
			continue
		}
		if in.Size != 0 && in.Size != p.MemorySlices {
			add("instance %d (%s): placement size %d, profile occupies %d memory slices", i, p.Name, in.Size, p.MemorySlices)
		}
		if !p.AllowsStart(in.Start) {
			add("instance %d (%s): start %d not allowed (allowed: %v)", i, p.Name, in.Start, p.Placements)
		}
		if in.Start < 0 || in.Start > m.MemorySlices-p.MemorySlices {
			add("instance %d (%s): memory slices [%d,%d) outside the GPU's %d", i, p.Name, in.Start, in.Start+p.MemorySlices, m.MemorySlices)
		} else {
			for s := in.Start; s < in.Start+p.MemorySlices; s++ {
				if o := owner[s]; o != 0 {
					add("instance %d (%s@%d) overlaps instance %d (%s@%d) at memory slice %d", i, p.Name, in.Start, o-1, instances[o-1].Profile, instances[o-1].Start, s)
					break
				}
				owner[s] = i + 1
			}
		}
		compute += p.ComputeSlices
		counts[p.Name]++
		if counts[p.Name] == p.MaxInstances+1 {
			add("more than %d instances of %s", p.MaxInstances, p.Name)
		}
		if p.MediaExtensions {
			media++
			if media == 2 {
				add("more than one +me instance")
			}
		}
	}
	if compute > m.ComputeSlices {
		add("instances use %d compute slices, %s has %d", compute, m.Name, m.ComputeSlices)
	}
	if len(errs) > 0 {
		return fmt.Errorf("invalid MIG layout on %s: %s", m.Name, strings.Join(errs, "; "))
	}
	return nil
}
