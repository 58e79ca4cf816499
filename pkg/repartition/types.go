package repartition

import (
	"fmt"
	"time"

	"github.com/gpuslice/gpuslice/pkg/allocator"
	"github.com/gpuslice/gpuslice/pkg/podrequest"
	"github.com/gpuslice/gpuslice/pkg/topology"
)

// Strategy chooses among the layouts that serve pending pods.
type Strategy string

const (
	// FragmentationAware serves the most pending pods (highest priority
	// first) and, among layouts that serve as many, strands the least free
	// capacity for the learned mix.
	FragmentationAware Strategy = "fragmentation-aware"
	// FirstFit takes, GPU by GPU, the first layout (in a fixed order) that
	// serves at least one pending pod: the approach of planners that
	// simulate candidate geometries until one lets the pods schedule. It is
	// a baseline for benchmarks.
	FirstFit Strategy = "first-fit"
)

// Config is the planner's settings.
type Config struct {
	Strategy Strategy
	// MinGPUInterval is the least time between two changes of one GPU.
	MinGPUInterval time.Duration
	// MinNodeInterval is the least time between two runs of MIG manager on
	// one node: a run takes the device plugin of the whole node down, so
	// demand that arrives in pieces should not rebuild a node GPU by GPU.
	// 0 leaves only MinGPUInterval.
	MinNodeInterval time.Duration
	// MaxNodesInFlight caps the nodes reconfiguring at once, those already
	// reconfiguring included. A reconfiguration takes the device plugin of
	// the whole node down for its duration.
	MaxNodesInFlight int
	// BackoffBase is how long a node whose run failed is left alone; it
	// doubles with each further failure up to BackoffMax.
	BackoffBase, BackoffMax time.Duration
	// MinDemandAge: pods pending for less are not acted on (they may still
	// fit once the scheduler retries; a burst that clears by itself is no
	// reason to rebuild a GPU).
	MinDemandAge time.Duration

	// MaxDrainingGPUs caps the GPUs drained at once (0: no drain). Only an
	// empty GPU can change, and on a busy cluster a GPU whose layout no
	// longer matches the demand never empties: each device a pod frees is
	// taken by the next pod that fits it. A drained GPU takes no new pod
	// (gpuslice's scheduler turns away pods the kubelet could put there,
	// see assignment.DrainAnnotation); its running pods are left alone,
	// and once it is empty it changes like any idle GPU.
	MaxDrainingGPUs int
	// DrainAfter: a GPU is drained only for pods pending at least this
	// long that no idle GPU can serve.
	DrainAfter time.Duration
	// MaxDrainTime: a drain whose GPU has not emptied by then is given
	// up, and the GPU is not drained again before MinGPUInterval.
	MaxDrainTime time.Duration
	// DrainMinGain: a GPU is drained only for a layout that strands at
	// least this much less of the learned mix (GPU-equivalents) than its
	// current one.
	DrainMinGain float64
}

// DefaultConfig is a conservative configuration.
func DefaultConfig() Config {
	return Config{
		Strategy:         FragmentationAware,
		MinGPUInterval:   10 * time.Minute,
		MaxNodesInFlight: 2,
		BackoffBase:      5 * time.Minute,
		BackoffMax:       time.Hour,
		MinDemandAge:     30 * time.Second,
		DrainAfter:       5 * time.Minute,
		MaxDrainTime:     time.Hour,
		DrainMinGain:     0.1,
	}
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	switch c.Strategy {
	case FragmentationAware, FirstFit:
	default:
		return fmt.Errorf("unknown repartition strategy %q (want %s or %s)", c.Strategy, FragmentationAware, FirstFit)
	}
	if c.MinGPUInterval < 0 || c.MinNodeInterval < 0 || c.BackoffBase < 0 || c.BackoffMax < 0 || c.MinDemandAge < 0 || c.DrainAfter < 0 || c.MaxDrainTime < 0 {
		return fmt.Errorf("durations must not be negative (min GPU interval %v, min node interval %v, back-off %v..%v, min demand age %v, drain after %v, max drain time %v)", c.MinGPUInterval, c.MinNodeInterval, c.BackoffBase, c.BackoffMax, c.MinDemandAge, c.DrainAfter, c.MaxDrainTime)
	}
	if !(c.DrainMinGain >= 0) {
		return fmt.Errorf("drain min gain must not be negative, got %v", c.DrainMinGain)
	}
	if c.MaxDrainingGPUs < 0 {
		return fmt.Errorf("max draining GPUs must not be negative, got %d", c.MaxDrainingGPUs)
	}
	if c.MaxDrainingGPUs > 0 && c.MaxDrainTime == 0 {
		return fmt.Errorf("drains need a max drain time (a drain that never ends would idle its GPU for good)")
	}
	if c.BackoffMax < c.BackoffBase {
		return fmt.Errorf("back-off maximum %v is below its base %v", c.BackoffMax, c.BackoffBase)
	}
	if c.MaxNodesInFlight < 1 {
		return fmt.Errorf("max nodes in flight must be at least 1, got %d", c.MaxNodesInFlight)
	}
	return nil
}

// Demand is one pending pod that gpuslice could not place for want of a
// MIG device.
type Demand struct {
	// Pod identifies the pod (namespace/name or UID).
	Pod      string
	Request  *podrequest.Request
	Since    time.Time
	Priority int32
}

// NodeState is one node as the planner sees it.
type NodeState struct {
	Topology *topology.Node
	// Allocated is every device held on the node: bound, assumed and
	// reserved pods, and what the exporter read back from the kubelet.
	Allocated []allocator.ResourceDevices
	// BusyGPUs are GPU indexes that must not change for reasons the
	// allocation list does not show (e.g. a pod the read-back has not
	// reported yet).
	BusyGPUs []int
	// Reconfiguring is true while a MIG manager run is under way on the
	// node (or its allocatable does not show the last layout yet): it takes
	// no change and counts against MaxNodesInFlight.
	Reconfiguring bool
	// Draining are the indexes of the node's GPUs its drain annotation
	// lists now (assignment.DrainAnnotation): the scheduler places no pod
	// the kubelet could put there.
	Draining []int
}

// Input is one planning round.
type Input struct {
	Now     time.Time
	Nodes   []NodeState
	Pending []Demand
	// Mix is the learned workload mix; nil or empty leaves the mix out.
	Mix *allocator.Mix
}

// Change is one GPU's new layout.
type Change struct {
	GPU     int // the GPU's index
	UUID    string
	Product string
	// From and To are instance counts per profile.
	From, To map[string]int
	// Instances are the instances largest-first creation builds for To,
	// without device IDs.
	Instances []topology.GPUInstance
}

// String reads "GPU 3: 7×1g.10gb → 2×3g.40gb".
func (c *Change) String() string {
	return fmt.Sprintf("GPU %d: %s → %s", c.GPU, topology.FormatCounts(c.From), topology.FormatCounts(c.To))
}

// NodePlan is what one node is asked to become.
type NodePlan struct {
	Node    string
	Changes []Change
	// Layout is the instance counts of every MIG-enabled GPU of the node
	// after the change, by GPU index, unchanged GPUs included: what a
	// mig-parted named config for the node lists.
	Layout map[int]map[string]int
	// Serves are the pending pods (Demand.Pod) the new layout is verified
	// to serve.
	Serves []string
	// Proposed is the node's topology after the change; new instances carry
	// placeholder device IDs ("planned-...").
	Proposed *topology.Node
}

// Plan is the outcome of one round.
type Plan struct {
	Nodes []NodePlan
	// FitNow are pending pods that fit somewhere without any change.
	FitNow []string
	// Young are pending pods younger than MinDemandAge, left for later.
	Young []string
	// Unserved are pending pods no allowed change serves now.
	Unserved []string
	// Rejected says why proposals were dropped (verification failures).
	Rejected []string
	// Drains are every GPU to drain after this round, those drained before
	// and kept included: a node's drain annotation should list exactly
	// its GPUs here.
	Drains []Drain
}

// Drain is a busy GPU drained so that it can change once its pods end.
type Drain struct {
	Node string
	GPU  int // the GPU's index
	// Since is when the drain began.
	Since time.Time
	// From is the GPU's counts now, To the layout that would serve the
	// pending pods (the change itself is chosen again once the GPU is
	// empty).
	From, To map[string]int
	// Serves are the pending pods (Demand.Pod) it is drained for.
	Serves []string
}

// String reads "GPU 3: 2×3g.40gb → 7×1g.10gb".
func (d *Drain) String() string {
	return fmt.Sprintf("GPU %d: %s → %s", d.GPU, topology.FormatCounts(d.From), topology.FormatCounts(d.To))
}

// DrainsOn lists the GPU indexes the plan drains on node.
func (p *Plan) DrainsOn(node string) []int {
	var out []int
	for _, d := range p.Drains {
		if d.Node == node {
			out = append(out, d.GPU)
		}
	}
	return out
}

// Changes counts the GPUs the plan changes.
func (p *Plan) Changes() int {
	n := 0
	for i := range p.Nodes {
		n += len(p.Nodes[i].Changes)
	}
	return n
}
