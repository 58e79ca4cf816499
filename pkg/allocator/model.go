package allocator

import (
	"fmt"

	"github.com/gpuslice/gpuslice/pkg/topology"
)

// Node is a node's topology compiled for fast allocation. It is immutable and
// may be shared by any number of States.
type Node struct {
	name       string
	policy     topology.AllocationPolicy
	failOver1  bool
	oneGPU     bool // topology.TimeSlicing.OneGPUPerRequest
	resources  []resource
	resIndex   map[string]int32
	units      []unit
	gpus       []gpu
	idIndex    map[string]int32 // base device ID -> unit
	bitWords   int              // length of a State's replica bitset
	totalWt    float64          // GPU-equivalents of all healthy advertised devices
	maxPerUnit int32
	// migOffer: the mixed-strategy MIG resources a new layout of one of
	// the node's healthy MIG-enabled GPUs could advertise (see CanOffer).
	migOffer map[string]bool
}

type resource struct {
	name string
	// units in topology order.
	units []int32
	// replicas over all units, and over healthy units only.
	total, healthy int32
	// weight is the GPU-equivalent capacity of one replica.
	weight float64
	shared bool
	// aligned is true for whole, unshared GPUs: the plugin uses its aligned
	// (NVLink-aware) allocator for them instead of the greedy one.
	aligned bool
}

type unit struct {
	res      int32
	gpu      int32
	replicas int32
	bitOff   int32
	healthy  bool
	weight   float64 // GPU-equivalents per replica
	deviceID string
	shared   bool
}

type gpu struct {
	uuid    string
	index   int
	healthy bool
	// capacity is the GPU-equivalent weight of everything advertised on it.
	capacity float64
}

// Compile turns a validated topology into a Node. The catalog provides MIG
// compute sizes, used to weigh MIG devices as fractions of a GPU. The policy
// is used when the topology does not report the device plugin's own.
func Compile(t *topology.Node, cat *topology.Catalog, defaultPolicy topology.AllocationPolicy) (*Node, error) {
	if t == nil {
		return nil, fmt.Errorf("nil topology")
	}
	if err := t.Validate(cat); err != nil {
		return nil, err
	}
	units, err := t.Units()
	if err != nil {
		return nil, err
	}
	n := &Node{
		name:     t.Name,
		policy:   t.AllocationPolicy,
		resIndex: map[string]int32{},
		idIndex:  make(map[string]int32, len(units)),
		gpus:     make([]gpu, len(t.GPUs)),
	}
	if n.policy == "" {
		n.policy = defaultPolicy
	}
	switch n.policy {
	case topology.PolicyDistributed, topology.PolicyPacked, topology.PolicySpread:
	case "":
		n.policy = topology.PolicyDistributed
	default:
		return nil, fmt.Errorf("node %s: unknown allocation policy %q", t.Name, n.policy)
	}
	if t.TimeSlicing != nil {
		n.failOver1 = t.TimeSlicing.FailRequestsGreaterThanOne
		n.oneGPU = t.TimeSlicing.OneGPUPerRequest
	}
	for i := range t.GPUs {
		g := &t.GPUs[i]
		n.gpus[i] = gpu{uuid: g.UUID, index: g.Index, healthy: g.Healthy}
		if !g.MIGEnabled || !g.Healthy || t.MIGStrategy != topology.MIGStrategyMixed {
			continue
		}
		if model, ok := cat.Lookup(g.Product); ok {
			if n.migOffer == nil {
				n.migOffer = map[string]bool{}
			}
			for _, p := range model.ProfileNames() {
				n.migOffer[topology.MIGResourceName(p)] = true
			}
		}
	}
	bits := int32(0)
	for _, tu := range units {
		ri, ok := n.resIndex[tu.Resource]
		if !ok {
			ri = int32(len(n.resources))
			n.resIndex[tu.Resource] = ri
			n.resources = append(n.resources, resource{name: tu.Resource, shared: tu.Shared, aligned: !tu.Shared && tu.Instance < 0})
		}
		r := &n.resources[ri]
		gpuWeight := 1.0
		if tu.Instance >= 0 {
			g := &t.GPUs[tu.GPU]
			model, _ := cat.Lookup(g.Product) // Validate guarantees a model for MIG GPUs
			p, _ := model.Profile(g.Instances[tu.Instance].Profile)
			gpuWeight = float64(p.ComputeSlices) / float64(model.ComputeSlices)
			r.aligned = false
		}
		u := unit{
			res:      ri,
			gpu:      int32(tu.GPU),
			replicas: int32(tu.Replicas),
			bitOff:   bits,
			healthy:  tu.Healthy,
			weight:   gpuWeight / float64(tu.Replicas),
			deviceID: tu.DeviceID,
			shared:   tu.Shared,
		}
		if _, dup := n.idIndex[u.deviceID]; dup {
			return nil, fmt.Errorf("node %s: device ID %s advertised twice", t.Name, u.deviceID)
		}
		ui := int32(len(n.units))
		n.idIndex[u.deviceID] = ui
		n.units = append(n.units, u)
		bits += (u.replicas + 63) / 64 * 64
		r.units = append(r.units, ui)
		r.total += u.replicas
		if u.healthy {
			r.healthy += u.replicas
			n.totalWt += gpuWeight
		}
		r.weight = u.weight
		n.gpus[tu.GPU].capacity += gpuWeight
		n.maxPerUnit = max(n.maxPerUnit, u.replicas)
	}
	n.bitWords = int(bits / 64)
	if n.oneGPU {
		for _, r := range n.resources {
			if !r.shared {
				return nil, fmt.Errorf("node %s: one GPU per request needs every advertised resource time-sliced, %s is not", t.Name, r.name)
			}
		}
	}
	return n, nil
}

// Name is the node's name.
func (n *Node) Name() string { return n.name }

// Policy is the device plugin allocation policy the node is predicted with.
func (n *Node) Policy() topology.AllocationPolicy { return n.policy }

// Resources lists the advertised resource names in topology order.
func (n *Node) Resources() []string {
	out := make([]string, len(n.resources))
	for i := range n.resources {
		out[i] = n.resources[i].name
	}
	return out
}

// CanOffer reports whether a new MIG layout of one of the node's healthy,
// MIG-enabled GPUs could advertise resource (nvidia.com/mig-<profile>, the
// device plugin's mixed strategy): the GPU's model has the profile. MIG
// mode is never changed automatically, so a GPU without MIG offers none;
// whether the GPU is free to change is the repartition planner's question.
func (n *Node) CanOffer(resource string) bool { return n.migOffer[resource] }

// GPUCount is the number of physical GPUs.
func (n *Node) GPUCount() int { return len(n.gpus) }
