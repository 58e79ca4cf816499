// Package agent is the per-node agent that publishes a node's GPU
// topology: it reads NVML (through the nvml package, the project's only cgo
// code), the NVIDIA device plugin's config file and the kubelet's
// PodResources API, builds the desired GPUNode, and writes it only when it
// differs from what is published. A Lease of the same name is its
// heartbeat, so the topology object itself changes only when the topology
// does.
//
// It talks to the API server through plain REST clients (Clients) and reads
// nodes and pods as metadata only, so that the exporter's binary links
// neither client-go's clientsets, whose scheme registers every API group,
// nor the core API types: the binary's size is most of the exporter's
// resident memory.
package agent
