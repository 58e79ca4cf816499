// Package exporter is the per-node agent that publishes a node's GPU
// topology (package agent), wired to client-go's clientsets for tests and
// simulated clusters: New takes a kubernetes.Interface and the gpuslice
// clientset. The gpuslice-exporter command (package app) uses package agent
// directly with narrow REST clients, so that the clientsets, and the scheme
// of every API group they register, stay out of its binary.
package exporter
