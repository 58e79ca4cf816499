// Package instancetypes is the one source of truth for the GPU instance
// types an autoscaled cluster can grow by: gpu-instance-types.yaml (embedded)
// says, for each type, its machine (GPUs, CPU, memory, public on-demand
// price and where the price was read) and how its GPUs are set up (a named
// mig-parted MIG config, device-plugin time-slicing, or whole GPUs).
//
// From it the package generates what Karpenter needs (its KWOK provider's
// instance-type JSON with the extended resources the NVIDIA device plugin
// would advertise, one NodePool per type with that setup's labels, the
// KWOKNodeClass) and what the simulation needs for a node of a type (its
// fixtures.Spec and topology). Both sides are computed from the same
// topology, so what Karpenter believes a node offers is what the node's
// device plugin advertises.
package instancetypes

import (
	_ "embed"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/gpuslice/gpuslice/pkg/topology"
	"github.com/gpuslice/gpuslice/pkg/topology/fixtures"
	"github.com/gpuslice/gpuslice/pkg/topology/migparted"
)

//go:embed gpu-instance-types.yaml
var builtin []byte

// Type is one GPU instance type: a machine with one setup of its GPUs.
type Type struct {
	// Name is the instance type's name: Karpenter's instance type and the
	// node label node.kubernetes.io/instance-type.
	Name     string `json:"name"`
	Provider string `json:"provider"`
	// Product is the NVML device name of its GPUs ("NVIDIA H100 80GB HBM3").
	Product string `json:"product"`
	// GPUMemoryMiB is the memory of one GPU, needed only for products
	// outside the MIG catalog (pkg/topology); 0 takes the catalog's.
	GPUMemoryMiB int64  `json:"gpuMemoryMiB,omitempty"`
	GPUs         int    `json:"gpus"`
	CPU          int    `json:"cpu"`
	MemoryGiB    int64  `json:"memoryGiB"`
	Setup        Setup  `json:"setup"`
	Price        Price  `json:"price"`
	Notes        string `json:"notes,omitempty"`
}

// Setup is how a type's GPUs are set up: MIGConfig, TimeSlicing, both (MIG
// devices time-sliced) or neither (whole GPUs).
type Setup struct {
	// MIGConfig names a config of NVIDIA mig-parted's config-default.yaml,
	// applied to every GPU; the device plugin uses --mig-strategy=mixed.
	MIGConfig   string       `json:"migConfig,omitempty"`
	TimeSlicing *TimeSlicing `json:"timeSlicing,omitempty"`
}

// TimeSlicing is the device plugin's sharing.timeSlicing, applied to every
// resource the node advertises.
type TimeSlicing struct {
	Replicas        int  `json:"replicas"`
	RenameByDefault bool `json:"renameByDefault,omitempty"`
}

// Price is a public on-demand price and where it was read.
type Price struct {
	USDPerHour float64 `json:"usdPerHour"`
	Region     string  `json:"region"`
	Source     string  `json:"source"`
}

type file struct {
	Types []Type `json:"types"`
}

// Resolved is a Type with its MIG layout looked up and its advertised
// resources computed.
type Resolved struct {
	Type
	// MIG lists the MIG profiles created on each GPU (empty: MIG disabled).
	MIG []string
	// Advertised is what the NVIDIA device plugin advertises on a node of
	// this type: extended resource name -> count.
	Advertised map[string]int64
}

// Set is the resolved instance types, by name.
type Set struct {
	types  []*Resolved
	byName map[string]*Resolved
}

// Builtin resolves the embedded gpu-instance-types.yaml against mig-parted's
// named configs.
func Builtin(parted *topology.MIGParted) (*Set, error) {
	return Parse(builtin, parted)
}

// Default is Builtin against the mig-parted configs shipped with gpuslice
// (NVIDIA's config-default.yaml, embedded).
func Default() (*Set, error) {
	parted, err := migparted.Default()
	if err != nil {
		return nil, err
	}
	return Builtin(parted)
}

// BuiltinYAML is the embedded data file, as shipped.
func BuiltinYAML() []byte { return append([]byte(nil), builtin...) }

// Parse reads a data file in the format of gpu-instance-types.yaml and
// resolves every type: its MIG layout from parted (which may be nil when no
// type names a MIG config) and the resources its device plugin advertises.
// Every problem found is reported, each naming its type.
func Parse(data []byte, parted *topology.MIGParted) (*Set, error) {
	var f file
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		return nil, fmt.Errorf("instance types: %w", err)
	}
	if len(f.Types) == 0 {
		return nil, errors.New("instance types: no types")
	}
	cat := topology.NewCatalog()
	set := &Set{byName: map[string]*Resolved{}}
	var errs []error
	for i := range f.Types {
		t := f.Types[i]
		label := fmt.Sprintf("type %d", i)
		if t.Name != "" {
			label = "type " + t.Name
		}
		r, err := resolve(cat, parted, t)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", label, err))
			continue
		}
		if _, dup := set.byName[t.Name]; dup {
			errs = append(errs, fmt.Errorf("%s: defined twice", label))
			continue
		}
		set.byName[t.Name] = r
		set.types = append(set.types, r)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("instance types: %w", errors.Join(errs...))
	}
	return set, nil
}

func resolve(cat *topology.Catalog, parted *topology.MIGParted, t Type) (*Resolved, error) {
	var errs []string
	add := func(format string, a ...any) { errs = append(errs, fmt.Sprintf(format, a...)) }
	if t.Name == "" {
		add("no name")
	} else if strings.ContainsAny(t.Name, " /") {
		add("name %q has a space or slash", t.Name)
	}
	if t.Provider == "" {
		add("no provider")
	}
	if t.Product == "" {
		add("no GPU product")
	}
	if t.GPUs < 1 || t.GPUs > 64 {
		add("gpus %d out of range 1..64", t.GPUs)
	}
	if t.CPU < 1 {
		add("cpu %d, want at least 1", t.CPU)
	}
	if t.MemoryGiB < 1 {
		add("memoryGiB %d, want at least 1", t.MemoryGiB)
	}
	if p := t.Price.USDPerHour; !(p > 0) || math.IsInf(p, 0) {
		add("price %v USD per hour, want a positive price", p)
	}
	if t.Price.Source == "" {
		add("price without a source")
	}
	if t.Price.Region == "" {
		add("price without a region")
	}
	if ts := t.Setup.TimeSlicing; ts != nil && (ts.Replicas < 2 || ts.Replicas > 256) {
		add("time-slicing replicas %d out of range 2..256", ts.Replicas)
	}
	if _, known := cat.Lookup(t.Product); !known && t.GPUMemoryMiB <= 0 && t.Product != "" {
		add("product %q is not in the MIG catalog: set gpuMemoryMiB", t.Product)
	}
	if len(errs) > 0 {
		return nil, errors.New(strings.Join(errs, "; "))
	}
	r := &Resolved{Type: t}
	if t.Setup.MIGConfig != "" {
		if parted == nil {
			return nil, fmt.Errorf("MIG config %s named but no mig-parted configuration given", t.Setup.MIGConfig)
		}
		layout, err := parted.Layout(cat, t.Setup.MIGConfig, t.Product)
		if err != nil {
			return nil, err
		}
		r.MIG = layout
	}
	topo, err := fixtures.Build(cat, r.Spec("probe"))
	if err != nil {
		return nil, err
	}
	if r.Advertised, err = topo.Capacity(); err != nil {
		return nil, err
	}
	if len(r.Advertised) == 0 {
		return nil, errors.New("its device plugin would advertise nothing")
	}
	return r, nil
}

// Types lists the types in file order.
func (s *Set) Types() []*Resolved { return append([]*Resolved(nil), s.types...) }

// Get returns the type of the given name.
func (s *Set) Get(name string) (*Resolved, bool) {
	r, ok := s.byName[name]
	return r, ok
}

// Spec is the fixtures.Spec of a node of this type named nodeName: what the
// simulation builds (fake NVML, exporter, kubelet) for it.
func (r *Resolved) Spec(nodeName string) fixtures.Spec {
	s := fixtures.Spec{
		Name:      nodeName,
		Product:   r.Product,
		GPUs:      r.GPUs,
		MIG:       append([]string(nil), r.MIG...),
		Strategy:  topology.MIGStrategyMixed,
		MemoryMiB: r.GPUMemoryMiB,
	}
	if ts := r.Setup.TimeSlicing; ts != nil {
		s.Replicas = ts.Replicas
		s.RenameByDefault = ts.RenameByDefault
	}
	return s
}

// Topology is the topology of a node of this type named nodeName, as its
// exporter would publish it.
func (r *Resolved) Topology(nodeName string) (*topology.Node, error) {
	return fixtures.Build(topology.NewCatalog(), r.Spec(nodeName))
}

// GPUProductLabel is the value of the node label nvidia.com/gpu.product that
// NVIDIA's GPU feature discovery sets: the product name, spaces as dashes.
func (r *Resolved) GPUProductLabel() string { return strings.ReplaceAll(r.Product, " ", "-") }

// Labels are the labels a node of this type carries beyond Karpenter's own:
// the GPU feature discovery's product and count, the MIG manager's config.
func (r *Resolved) Labels() map[string]string {
	l := map[string]string{
		LabelGPUProduct: r.GPUProductLabel(),
		LabelGPUCount:   fmt.Sprint(r.GPUs),
	}
	if r.Setup.MIGConfig != "" {
		l[LabelMIGConfig] = r.Setup.MIGConfig
	}
	return l
}

// AdvertisedNames lists the advertised resource names, sorted.
func (r *Resolved) AdvertisedNames() []string {
	names := make([]string, 0, len(r.Advertised))
	for n := range r.Advertised {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Node labels set on GPU nodes by NVIDIA's GPU feature discovery and MIG
// manager.
const (
	LabelGPUProduct = "nvidia.com/gpu.product"
	LabelGPUCount   = "nvidia.com/gpu.count"
	LabelMIGConfig  = "nvidia.com/mig.config"
)
