// Package sim schedules pods in-process with the real kube-scheduler
// framework and the real GPUSlice plugin, without an API server: one
// scheduling cycle per pod (PreFilter, Filter over the nodes the scheduler
// would examine, PreScore, Score, NormalizeScore, host selection with
// random tie-breaks, Reserve), then a simulated kubelet admits the pod and
// the device plugin picks its devices. The packing benchmarks
// (gpuslice-bench openb and mig) measure the product through it.
//
// What is simulated: the API server and informers (the node snapshot and
// GPUSlice's cache are fed directly, as their informers would), binding
// (PreBind's annotation write and the Binding are not sent), and the kubelet
// with the device plugin (allocator.State.Place on the node's real topology,
// the same greedy model the plugin predicts with; for nodes whose pods did
// not go through GPUSlice it is the only device choice).
//
// Two levels of API: Replay (and ReplayProfiles, several profiles side by
// side) takes nodes with their topologies and pods in, and gives back each
// pod's node and devices or the reason it was not placed, and each GPU
// node's per-GPU usage; New, Schedule and Admit run one cycle at a time for
// callers that interleave their own bookkeeping (the benchmarks). Profiles
// come from StockConfig (kube-scheduler's default-scheduler), LoadConfig or
// LoadConfigMapFile (gpuslice's shipped profiles).
package sim
