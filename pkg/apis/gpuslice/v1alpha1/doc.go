// Package v1alpha1 is the gpuslice.io/v1alpha1 API: GPUNode, the per-node
// GPU topology the exporter publishes and the scheduler reads.
//
// +k8s:deepcopy-gen=package
// +groupName=gpuslice.io
package v1alpha1
