package config

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Scoring strategy names.
const (
	// Binpack prefers the fullest GPUs, then the fullest nodes.
	Binpack = "binpack"
	// Spread prefers the emptiest GPUs and nodes.
	Spread = "spread"
	// FragmentationAware minimises the capacity stranded for the learned
	// workload mix.
	FragmentationAware = "fragmentation-aware"
)

// ScoringStrategy configures Score.
type ScoringStrategy struct {
	// Type is binpack, spread or fragmentation-aware.
	Type string
	// GPUWeight and NodeWeight weigh GPU-level against node-level fullness
	// for binpack and spread.
	GPUWeight  int64
	NodeWeight int64
	// MixHalfLife is the number of observed pods after which an observation
	// weighs half in the learned workload mix (fragmentation-aware).
	MixHalfLife int64
}

// GPUSliceArgs are the arguments of the GPUSlice plugin.
//
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
type GPUSliceArgs struct {
	metav1.TypeMeta

	ScoringStrategy ScoringStrategy
	// HeartbeatTimeout is how old a node exporter's Lease may be before the
	// node takes no GPU pod.
	HeartbeatTimeout metav1.Duration
	// DefaultAllocationPolicy is the device plugin's shared-devices
	// allocation policy assumed when a node does not report it.
	DefaultAllocationPolicy string
	// LeaseNamespace is the namespace of the exporters' Leases.
	LeaseNamespace string
	// DefaultSharing is how the GPU devices of a pod without the
	// gpuslice.io/sharing annotation may be shared: DistinctGPUs, Exclusive
	// or Any.
	DefaultSharing string
	// TaintUnusableNodes makes the scheduler keep the taint
	// gpuslice.io/gpu-unusable:NoSchedule on GPU nodes it cannot place GPU
	// pods on (stale exporter, MIG reconfiguration, no or degraded topology),
	// so that an autoscaler's simulation sees what gpuslice sees (package
	// nodetaint). One process-wide controller, leader-elected.
	TaintUnusableNodes bool
	// DeletionCost makes the scheduler keep the
	// controller.kubernetes.io/pod-deletion-cost annotation of the
	// ReplicaSet-owned pods it placed in line with how full their node's GPUs
	// are, so that scale-downs take pods from the emptiest GPU nodes first
	// (package deletioncost). One process-wide controller, leader-elected.
	DeletionCost bool
}

// Sharing values (the podrequest package's Sharing).
const (
	SharingDistinctGPUs = "DistinctGPUs"
	SharingExclusive    = "Exclusive"
	SharingAny          = "Any"
)
