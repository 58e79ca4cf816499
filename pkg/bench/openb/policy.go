package openb

import (
	"context"
	"math/rand/v2"
)

// Policy decides where each pod goes. A replay creates one Policy per seed
// and calls Schedule once per pod, in arrival order; the replay binds what
// it returns on the Cluster ledger.
type Policy interface {
	// Name is the policy's name in results.
	Name() string
	// Schedule returns the chosen node and the GPUs the pod's share is taken
	// from (len == pod.NumGPU), or ok == false when the pod cannot be placed.
	// c is read-only to the policy. A policy may keep its own state (the
	// gpuslice policies run a scheduler framework with its own caches); the
	// replay calls Bound or Rejected after each decision so it can follow.
	Schedule(ctx context.Context, c *Cluster, p *Pod) (node int, gpus []int, ok bool, err error)
	// Bound tells the policy the decision was recorded on the ledger;
	// Rejected that it was refused (err says why).
	Bound(p *Pod, node int, gpus []int)
	Rejected(p *Pod, node int, err error)
}

// Factory builds a fresh policy for one replay. rng is seeded from the
// replay's seed; policies must take all randomness from it. all is the pod
// list as read, before shuffling and inflation (policies that, like FGD,
// know the target workload in advance may read it; the FGD simulator takes
// its typical pods from the same list; others must not).
type Factory struct {
	Name string
	New  func(ctx context.Context, nodes []Node, all []Pod, rng *rand.Rand) (Policy, error)
}
