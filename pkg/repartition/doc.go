// Package repartition plans MIG layout changes that follow demand, to be
// applied by NVIDIA's stock MIG manager. It is pure: a snapshot of the
// nodes (topology, allocated devices), the pending MIG demand and the
// learned workload mix go in; per-GPU layouts come out. It imports no
// client-go and no scheduler framework.
//
// What a proposal respects, because of what MIG manager does to a node
// (see shared/notes/mig-manager.md):
//
//   - only GPUs with no allocated device change: a changed GPU is rebuilt
//     from scratch, and an instance in use makes the run fail;
//   - MIG mode never changes: only MIG-enabled GPUs of mixed-strategy nodes
//     are touched, and every layout enables MIG;
//   - only counts that MIG manager's largest-first creation builds on the
//     GPU's model are asked for (topology.Model.CreateLargestFirst);
//   - every proposal is checked by compiling the proposed node and running
//     allocator.State.Check, the code the scheduler's Filter runs, for each
//     pending pod it claims to serve;
//   - hysteresis: a minimum time between two changes of one GPU, a cap on
//     nodes reconfiguring at once, an exponential back-off for a node whose
//     run failed, and demand younger than a minimum age is not acted on.
//
// Among layouts that serve the pending pods equally (by priority, then
// count), the planner takes the one that strands the least free capacity
// for the learned mix, reading it with the allocator's fragmentation-aware
// model (allocator.State.AddSupply).
package repartition
