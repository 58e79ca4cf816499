// Package allocator is gpuslice's pure placement engine. It knows nothing of
// client-go or the scheduler framework: a node's topology, what is already
// allocated there and a pod's request go in; a verdict (with a reason that
// names what is missing), the exact devices the stock NVIDIA device plugin
// and kubelet would hand out, and a score come out.
//
// The prediction follows the kubelet's device manager (one allocation per
// container, init-container devices reused by later containers) and the
// device plugin's GetPreferredAllocation: its greedy per-GPU comparator for
// time-sliced replicas and MIG devices (packed, distributed or spread), and
// an aligned pick for whole GPUs. Where the plugin's choice is arbitrary
// (equal GPUs, equal MIG instances, which replica of a GPU) the prediction
// takes the first candidate in topology order; callers must treat equal
// candidates as interchangeable and reconcile with what the kubelet reports.
//
// Feasibility is a count per resource: the kubelet hands out any free healthy
// device of a resource, so a request fits exactly when every resource has
// enough free healthy devices. That check is allocation-free.
package allocator
