// Package exporter is the per-node agent that publishes a node's GPU
// topology: it reads NVML (through the nvml package, the project's only cgo
// code), the NVIDIA device plugin's config file and the kubelet's
// PodResources API, builds the desired GPUNode, and writes it only when it
// differs from what is published. A Lease of the same name is its
// heartbeat, so the topology object itself changes only when the topology
// does.
package exporter
