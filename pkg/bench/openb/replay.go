package openb

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/gpuslice/gpuslice/pkg/sim"
)

// Point is the cluster's state once a given share of the workload arrived.
type Point struct {
	Policy string `json:"policy"`
	Seed   int64  `json:"seed"`
	// ArrivedPct is the GPU request of the pods that arrived so far, as a
	// percentage of the cluster's GPU capacity.
	ArrivedPct float64 `json:"arrived_pct"`
	// UnallocatedGPUPct is 100 minus the allocated share of all GPUs.
	UnallocatedGPUPct float64 `json:"unallocated_gpu_pct"`
	ArrivedPods       int     `json:"arrived_pods"`
	FailedPods        int     `json:"failed_pods"`
}

// Run is one replay of one policy with one seed.
type Run struct {
	Policy   string
	Seed     int64
	Points   []Point
	Pods     int
	Failed   int
	Duration time.Duration
	// Sim holds the simulated scheduler's counts for framework policies.
	Sim *sim.Stats
	// Breakdown is where the capacity went at 100 % arrived; nil when the
	// replay did not get there.
	Breakdown *Breakdown
}

// At returns the unallocated GPU % at the first point at or past pct
// arrived, and false when the replay did not get there.
func (r *Run) At(pct float64) (float64, bool) {
	for _, p := range r.Points {
		if p.ArrivedPct >= pct-1e-9 {
			return p.UnallocatedGPUPct, true
		}
	}
	return 0, false
}

// ReplayOptions configure a replay.
type ReplayOptions struct {
	Nodes []Node
	// Pods is the pod list as read (the workload is built from it per seed).
	Pods []Pod
	Seed int64
	// Tune inflates the workload to this multiple of GPU capacity (1.3).
	Tune float64
	// Step is the spacing of points, in percent of GPU capacity arrived.
	Step float64
}

// Replay schedules the seed's workload with one policy, each pod tried
// once, and records a point every Step percent of arrived GPU request.
func Replay(ctx context.Context, f Factory, o ReplayOptions) (*Run, error) {
	if o.Step <= 0 || o.Tune <= 0 {
		return nil, fmt.Errorf("step and tune must be positive")
	}
	cluster, err := NewCluster(o.Nodes)
	if err != nil {
		return nil, err
	}
	if cluster.TotalMilli == 0 {
		return nil, fmt.Errorf("the node list has no GPU")
	}
	work, err := Workload(o.Pods, cluster.TotalMilli, o.Seed, o.Tune)
	if err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(uint64(o.Seed), 0x706f6c696379))
	policy, err := f.New(ctx, o.Nodes, o.Pods, rng)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Name, err)
	}
	run := &Run{Policy: f.Name, Seed: o.Seed, Pods: len(work)}
	start := time.Now()
	arrived := int64(0)
	next := 0.0
	emit := func(pct float64, n int) {
		run.Points = append(run.Points, Point{Policy: f.Name, Seed: o.Seed, ArrivedPct: round(pct), UnallocatedGPUPct: cluster.UnallocatedGPUPct(), ArrivedPods: n, FailedPods: run.Failed})
	}
	emit(0, 0)
	next += o.Step
	var at100 Breakdown // failures until 100 % arrived
	for i := range work {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		p := &work[i]
		node, gpus, ok, err := policy.Schedule(ctx, cluster, p)
		if err != nil {
			return nil, fmt.Errorf("%s seed %d: %w", f.Name, o.Seed, err)
		}
		if ok {
			if err := cluster.Bind(p, node, gpus); err != nil {
				policy.Rejected(p, node, err)
				return nil, fmt.Errorf("%s seed %d returned a placement the model refuses: %w", f.Name, o.Seed, err)
			}
			policy.Bound(p, node, gpus)
		} else {
			run.Failed++
			if run.Breakdown == nil {
				at100.observeFailure(p)
			}
		}
		arrived += p.GPURequest()
		if run.Breakdown == nil && arrived >= cluster.TotalMilli {
			at100.observeIdle(cluster)
			run.Breakdown = &at100
		}
		for pct := 100 * float64(arrived) / float64(cluster.TotalMilli); pct >= next-1e-9 && next <= 100*o.Tune+1e-9; next += o.Step {
			emit(next, i+1)
		}
	}
	run.Duration = time.Since(start)
	if fp, ok := policy.(*frameworkPolicy); ok {
		st := fp.Stats()
		run.Sim = &st
	}
	return run, nil
}

func round(x float64) float64 { return math.Round(x*1e6) / 1e6 }
