package cache

import (
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/gpuslice/gpuslice/pkg/allocator"
	"github.com/gpuslice/gpuslice/pkg/topology"
)

// Phase is where a pod's record stands.
type Phase uint8

const (
	// Assumed: reserved by a scheduling cycle, not yet bound.
	Assumed Phase = iota + 1
	// Bound: the pod is bound to the node; devices are predicted.
	Bound
	// Confirmed: the exporter reported the devices the kubelet gave.
	Confirmed
)

func (p Phase) String() string {
	switch p {
	case Assumed:
		return "assumed"
	case Bound:
		return "bound"
	case Confirmed:
		return "confirmed"
	}
	return "unknown"
}

// Topology is what a node's exporter publishes, in model form.
type Topology struct {
	Node *topology.Node
	// State is "Ready", "Reconfiguring" or "Degraded"; Message says why.
	State   string
	Message string
	// Allocations are the devices the kubelet reports per pod.
	Allocations map[types.UID][]allocator.ResourceDevices
	// ResourceVersion is the GPUNode's; empty when unknown. The cache is fed
	// from two places (the plugin's informer, and the queueing hints with
	// the object of the event that woke a pod), so a version it has already
	// applied, or an older one, is ignored.
	ResourceVersion string
}

// Freshness says whether a node may take GPU pods now.
type Freshness struct {
	Usable bool
	// Reason names the problem when Usable is false.
	Reason string
	// Cause is the kind of problem when Usable is false ("" otherwise).
	Cause Cause
}

// Cause is why a node takes no GPU pods: a stable name for metrics and
// events (Freshness.Reason says it to a user).
type Cause string

const (
	// CauseNoTopology: no GPUNode published (no exporter on the node).
	CauseNoTopology Cause = "topology_missing"
	// CauseInvalid: the published topology does not compile.
	CauseInvalid Cause = "invalid"
	// CauseReconfiguring: the MIG manager is changing the node's layout.
	CauseReconfiguring Cause = "reconfiguring"
	// CauseDegraded: the exporter cannot read the node (NVML, config,
	// kubelet).
	CauseDegraded Cause = "degraded"
	// CauseUnknownState: the topology is in a state this scheduler does
	// not know.
	CauseUnknownState Cause = "unknown_state"
	// CauseNoHeartbeat: the exporter's Lease does not exist.
	CauseNoHeartbeat Cause = "no_heartbeat"
	// CauseStale: the exporter's Lease was not renewed in time.
	CauseStale Cause = "stale"
)

// Causes lists every Cause, in a stable order.
var Causes = []Cause{CauseNoTopology, CauseInvalid, CauseReconfiguring, CauseDegraded, CauseUnknownState, CauseNoHeartbeat, CauseStale}

// Observer is told of what the cache learns that operators want to see
// (metrics, events). Its methods are called with a node's lock held: they
// must be quick and must not call back into the cache.
type Observer interface {
	// ReadBack is called once per pod when the exporter first reports the
	// devices the kubelet gave a pod whose devices the cache had
	// predicted (claimed: by a reservation or the pod's assignment
	// annotation; otherwise a prediction for another scheduler's pod).
	ReadBack(r ReadBack)
	// Rebuilt is called after a node's snapshot was recomputed from its
	// records, with how long that took.
	Rebuilt(node string, took time.Duration)
}

// ReadBack compares the devices predicted for a pod with those the kubelet
// gave it.
type ReadBack struct {
	UID             types.UID
	Namespace, Name string
	Node            string
	Claimed         bool
	Predicted       []allocator.ResourceDevices
	Reported        []allocator.ResourceDevices
	// Corrected is true when the reported physical devices differ from
	// the predicted ones (replicas of one GPU are interchangeable: only
	// which GPU or MIG device counts).
	Corrected bool
}

// NodeView is a consistent view of one node for a scheduling cycle.
type NodeView struct {
	// State is the immutable allocation snapshot; nil when the node has no
	// usable topology.
	State     *allocator.State
	Freshness Freshness
	// Generation changes whenever the node's snapshot is replaced.
	Generation uint64
}

// PodInfo is a pod's record, for inspection and tests.
type PodInfo struct {
	UID       types.UID
	Namespace string
	Name      string
	Node      string
	Phase     Phase
	Devices   []allocator.ResourceDevices
	// Predicted is true when Devices are a prediction (not yet confirmed by
	// the exporter).
	Predicted bool
}

// Options configure a Cache.
type Options struct {
	Catalog *topology.Catalog
	// DefaultPolicy is the device plugin allocation policy assumed for nodes
	// whose topology does not report one.
	DefaultPolicy topology.AllocationPolicy
	// StaleAfter is how old a node's heartbeat may be before the node takes
	// no GPU pod.
	StaleAfter time.Duration
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Observer, when set, is told of read-backs and rebuilds.
	Observer Observer
}
