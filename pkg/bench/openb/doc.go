// Package openb replays the openb GPU cluster trace (Alibaba
// cluster-trace-gpu-v2023, the FGD paper's workload) with the FGD paper's
// protocol, scheduling with gpuslice's real plugins inside the scheduler
// framework and with the paper's baseline policies, and reports the
// unallocated GPU share as the arrived workload grows.
//
// The GPU model is the paper's: every GPU is shared by fraction, 1000 share
// units per GPU; a sharing pod (num_gpu 1, gpu_milli < 1000) takes its
// share on one GPU; a pod asking for n whole GPUs takes n entirely unused
// GPUs. For gpuslice each node is a time-sliced node with 1000 replicas per
// GPU in one-GPU-per-request mode (topology.TimeSlicing.OneGPUPerRequest):
// NVIDIA's own time-slicing would split a share across GPUs, which the
// paper's model forbids.
package openb
