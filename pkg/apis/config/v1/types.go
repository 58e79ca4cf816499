package v1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ScoringStrategy configures Score.
type ScoringStrategy struct {
	// Type is binpack (default), spread or fragmentation-aware.
	Type *string `json:"type,omitempty"`
	// GPUWeight weighs how full the GPUs the pod lands on end up (default 2).
	GPUWeight *int64 `json:"gpuWeight,omitempty"`
	// NodeWeight weighs how full the node ends up (default 1).
	NodeWeight *int64 `json:"nodeWeight,omitempty"`
	// MixHalfLife is the number of observed pods after which an observation
	// weighs half in the learned workload mix (default 1000).
	MixHalfLife *int64 `json:"mixHalfLife,omitempty"`
}

// GPUSliceArgs are the arguments of the GPUSlice plugin.
//
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
type GPUSliceArgs struct {
	metav1.TypeMeta `json:",inline"`

	ScoringStrategy ScoringStrategy `json:"scoringStrategy,omitempty"`
	// HeartbeatTimeout is how old a node exporter's Lease may be before the
	// node takes no GPU pod (default 40s).
	HeartbeatTimeout *metav1.Duration `json:"heartbeatTimeout,omitempty"`
	// DefaultAllocationPolicy is the device plugin's
	// SHARED_DEVICES_ALLOCATION_POLICY assumed for nodes that do not report
	// it: distributed (default, the plugin's default), packed or spread.
	DefaultAllocationPolicy *string `json:"defaultAllocationPolicy,omitempty"`
	// LeaseNamespace is the namespace of the exporters' Leases (default
	// gpuslice-system).
	LeaseNamespace *string `json:"leaseNamespace,omitempty"`
	// DefaultSharing is how the GPU devices of a pod without the
	// gpuslice.io/sharing annotation may be shared:
	//   - DistinctGPUs (default): a container asking for N > 1 time-sliced
	//     replicas is placed only where the device plugin would give it N
	//     different GPUs (with time-slicing and no rename, nvidia.com/gpu: 2
	//     could otherwise be two replicas of one GPU);
	//   - Exclusive: only devices that are not time-sliced (whole GPUs, MIG
	//     instances);
	//   - Any: whatever the device plugin picks.
	DefaultSharing *string `json:"defaultSharing,omitempty"`
	// TaintUnusableNodes makes the scheduler keep the taint
	// gpuslice.io/gpu-unusable:NoSchedule on GPU nodes it cannot place GPU
	// pods on (stale exporter, MIG reconfiguration, no or degraded topology)
	// and remove it when they recover, so that Karpenter and
	// cluster-autoscaler provision for pods that only such nodes seem to fit
	// (default false; see the README's autoscaling section).
	TaintUnusableNodes *bool `json:"taintUnusableNodes,omitempty"`
	// DeletionCost makes the scheduler keep the pod-deletion-cost annotation
	// (controller.kubernetes.io/pod-deletion-cost) of the pods it placed that
	// a ReplicaSet owns at the fill of their node's GPUs (0 to 1000), so that
	// when a Deployment scales down the ReplicaSet controller deletes replicas
	// on the least-used GPU nodes first and those nodes empty out for the
	// autoscaler. A value someone else set is left alone (default false).
	DeletionCost *bool `json:"deletionCost,omitempty"`
}
