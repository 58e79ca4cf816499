// Package nvml reads a node's GPUs through NVIDIA's NVML library for the
// exporter: identity, memory, MIG mode, GPU instances with their placements
// and MIG device UUIDs, and XID health events.
//
// It is the only cgo package of gpuslice: every import of
// github.com/NVIDIA/go-nvml stays in this package tree. The rest of the
// exporter sees the go-nvml-free Reader interface and its plain types.
//
// Open loads the real library (libnvidia-ml.so.1) through nvml.New, with no
// package-global handle. NewReader runs the same code over any
// nvml.Interface, such as the fake in the fake subpackage, which is built on
// go-nvml's generated mocks but enforces the MIG placement rules of
// pkg/topology's catalog.
package nvml
