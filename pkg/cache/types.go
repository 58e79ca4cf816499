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
}
