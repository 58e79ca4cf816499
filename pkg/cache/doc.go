// Package cache is the scheduler's view of GPU allocations per node.
//
// Entries are pods keyed by UID on one node. A pod's devices come, in order
// of trust, from what the node's exporter reports the kubelet gave it
// (confirmed), from its gpuslice.io/assignment annotation or the reservation
// of a scheduling cycle (assumed, then bound), or, for pods placed by other
// schedulers, from predicting the kubelet's pick. Whenever a node's inputs
// change its allocation state is rebuilt from these records, confirmed ones
// first, so the actual pick always replaces the predicted one and no device
// is ever counted twice.
//
// Each node has its own lock and an immutable allocation snapshot that is
// replaced, never mutated, so a scheduling cycle can keep using the snapshot
// it filtered with.
package cache
