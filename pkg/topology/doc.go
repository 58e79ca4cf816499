// Package topology is gpuslice's shared, pure model of a GPU node: its GPUs,
// their MIG mode and GPU instances, the NVIDIA device plugin's configuration
// (MIG strategy, time-slicing, allocation policy) and the catalog of MIG
// geometries per GPU model.
//
// It imports no Kubernetes client code: the exporter fills it from NVML, the
// scheduler reads it from the per-node topology object, and the allocator
// compiles it into its own compact form.
package topology
