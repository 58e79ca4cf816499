package mig

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	schedconfig "k8s.io/kubernetes/pkg/scheduler/apis/config"

	"github.com/gpuslice/gpuslice/pkg/allocator"
	"github.com/gpuslice/gpuslice/pkg/podrequest"
	"github.com/gpuslice/gpuslice/pkg/repartition"
	"github.com/gpuslice/gpuslice/pkg/sim"
	"github.com/gpuslice/gpuslice/pkg/topology"
)

// Layout policies of the dynamic benchmark.
const (
	LayoutStatic   = "static"
	LayoutFirstFit = "first-fit"
	LayoutDynamic  = "gpuslice-dynamic"
)

// DynOptions configure one dynamic run.
type DynOptions struct {
	// Layout is LayoutStatic, LayoutFirstFit or LayoutDynamic.
	Layout string
	// Static names the cluster's layouts (for reports).
	Static  string
	Cluster ClusterSpec
	Profile *schedconfig.KubeSchedulerProfile
	Load    float64
	Seed    int64
	// PhaseLen is each demand phase's length.
	PhaseLen time.Duration
	// Patience: a pod pending longer is withdrawn (its user gives up or
	// sends it elsewhere) and counts as not placed.
	Patience time.Duration
	// Window is how often the repartition planner runs (its batching
	// window); Reconfig is how long a MIG manager run takes from the
	// planner's decision to allocatable showing the new layout
	// (ConfigMap propagation, the run, the device plugin's restart), the
	// node taking no GPU pod meanwhile.
	Window, Reconfig time.Duration
	Planner          repartition.Config
	// MixHalfLife is the learned mix's half-life, in pods.
	MixHalfLife int
}

// DynResult is one dynamic run.
type DynResult struct {
	Layout string  `json:"layout"`
	Static string  `json:"static,omitempty"`
	Load   float64 `json:"load"`
	Seed   int64   `json:"seed"`
	Pods   int     `json:"pods"`
	Placed int     `json:"placed"`
	// Withdrawn pods waited longer than the patience; Pending were still
	// waiting at the end.
	Withdrawn int `json:"withdrawn"`
	Pending   int `json:"pending_at_end"`
	// Wait percentiles over placed pods, seconds.
	WaitP50 float64 `json:"wait_p50_s"`
	WaitP99 float64 `json:"wait_p99_s"`
	// BusyGPUHours integrates the GPUs holding at least one device in use;
	// UsedGPUHours the GPU-equivalents in use (a 3g slice is 3/7).
	BusyGPUHours float64 `json:"busy_gpu_hours"`
	UsedGPUHours float64 `json:"used_gpu_hours"`
	// Reconfigurations counts GPUs rebuilt, NodeRuns MIG manager runs;
	// ReconfigNodeHours is node time spent reconfiguring.
	Reconfigurations  int     `json:"reconfigured_gpus"`
	NodeRuns          int     `json:"mig_manager_runs"`
	ReconfigNodeHours float64 `json:"reconfiguring_node_hours"`
	// Drains counts GPUs drained for a change (running pods left alone,
	// new pods kept off until the GPU is empty).
	Drains int `json:"drains"`
	// PlacedByPhase counts placed pods by the phase they arrived in.
	PlacedByPhase  []int `json:"placed_by_phase"`
	ArrivedByPhase []int `json:"arrived_by_phase"`
}

type pendingPod struct {
	a   *arrival
	req *podrequest.Request
	key string
}

type departure struct {
	at  time.Duration
	uid types.UID
}

type departures []departure

func (d departures) Len() int           { return len(d) }
func (d departures) Less(i, j int) bool { return d[i].at < d[j].at }
func (d departures) Swap(i, j int)      { d[i], d[j] = d[j], d[i] }
func (d *departures) Push(x any)        { *d = append(*d, x.(departure)) }
func (d *departures) Pop() any {
	old := *d
	x := old[len(old)-1]
	*d = old[:len(old)-1]
	return x
}

type reconfiguring struct {
	until time.Duration
	topo  *topology.Node
}

// RunDynamic runs the arrivals through the scheduler on the cluster with
// the layout policy: static layouts, or the repartition planner (gpuslice's
// fragmentation-aware one or first-fit) asking a modelled MIG manager for
// new layouts.
func RunDynamic(ctx context.Context, o DynOptions, arrivals []arrival) (*DynResult, error) {
	// The framework logs each profile's set-up at info level; a run builds
	// one scheduler, and its log would drown the report.
	ctx = klog.NewContext(ctx, logr.Discard())
	cat := topology.NewCatalog()
	nodes, _, err := o.Cluster.Build(cat)
	if err != nil {
		return nil, err
	}
	s, err := sim.New(ctx, sim.Options{Profile: o.Profile, Nodes: nodes, DefaultPolicy: o.Cluster.Policy, Rand: rand.New(rand.NewPCG(uint64(o.Seed), 0x64796e))})
	if err != nil {
		return nil, err
	}
	var planner *repartition.Planner
	switch o.Layout {
	case LayoutStatic:
	case LayoutFirstFit, LayoutDynamic:
		cfg := o.Planner
		cfg.Strategy = repartition.FragmentationAware
		if o.Layout == LayoutFirstFit {
			cfg.Strategy = repartition.FirstFit
		}
		if planner, err = repartition.New(cfg, cat); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("unknown layout policy %q", o.Layout)
	}
	var gpuNodes []string
	for _, n := range nodes {
		if n.Topology != nil {
			gpuNodes = append(gpuNodes, n.Node.Name)
		}
	}
	phases := 0
	for _, a := range arrivals {
		phases = max(phases, a.phase+1)
	}
	r := &DynResult{Layout: o.Layout, Static: o.Static, Load: o.Load, Seed: o.Seed, Pods: len(arrivals), PlacedByPhase: make([]int, phases), ArrivedByPhase: make([]int, phases)}
	learner := allocator.NewMixLearner(max(o.MixHalfLife, 1), 32)
	base := time.Unix(1_800_000_000, 0)
	var (
		now     time.Duration
		pending []*pendingPod
		deps    departures
		recon   = map[string]*reconfiguring{}
		waits   []float64
		gen     int
		drained = map[string][]int{}
		next    int
		tick    = o.Window
	)
	end := time.Duration(phases) * o.PhaseLen
	// accumulate integrates busy and used GPUs up to t.
	accumulate := func(t time.Duration) {
		dt := (t - now).Hours()
		if dt <= 0 {
			return
		}
		for _, name := range gpuNodes {
			st := s.Devices(name)
			gs := st.GPUs()
			r.BusyGPUHours += dt * float64(len(gs)-st.EmptyGPUs())
			for _, g := range gs {
				r.UsedGPUHours += dt * g.Used
			}
		}
		r.ReconfigNodeHours += dt * float64(len(recon))
		now = t
	}
	tryPending := func() error {
		failed := map[string]bool{}
		kept := pending[:0]
		for _, p := range pending {
			if now-p.a.at > o.Patience {
				r.Withdrawn++
				continue
			}
			if failed[p.key] {
				kept = append(kept, p)
				continue
			}
			d, err := s.Schedule(ctx, p.a.pod.Pod)
			if err != nil {
				return err
			}
			if d.Node == "" {
				failed[p.key] = true
				kept = append(kept, p)
				continue
			}
			pl, err := s.Admit(ctx, p.a.pod.Pod, d)
			if err != nil {
				var rejected *sim.AdmissionError
				if errors.As(err, &rejected) {
					failed[p.key] = true
					kept = append(kept, p)
					continue
				}
				return err
			}
			// The kubelet's pick must not land on a drained GPU.
			if g, ok := onGPUs(s.Topology(d.Node), pl.Devices(), drained[d.Node]); ok {
				return fmt.Errorf("pod %s got a device of GPU %d of node %s, which is draining", p.a.pod.Pod.Name, g, d.Node)
			}
			r.Placed++
			r.PlacedByPhase[p.a.phase]++
			waits = append(waits, (now - p.a.at).Seconds())
			heap.Push(&deps, departure{at: now + p.a.run, uid: p.a.pod.Pod.UID})
		}
		pending = kept
		return nil
	}
	plan := func() error {
		in := repartition.Input{Now: base.Add(now), Mix: learner.Snapshot(0.01)}
		for _, name := range gpuNodes {
			_, busy := recon[name]
			in.Nodes = append(in.Nodes, repartition.NodeState{Topology: s.Topology(name), Allocated: s.Allocated(name), Reconfiguring: busy, Draining: drained[name]})
		}
		for _, p := range pending {
			in.Pending = append(in.Pending, repartition.Demand{Pod: string(p.a.pod.Pod.UID), Request: p.req, Since: base.Add(p.a.at)})
		}
		pl := planner.Plan(in)
		planner.Commit(pl, in.Now)
		// The repartitioner's drain annotations follow the plan.
		for _, name := range gpuNodes {
			want := pl.DrainsOn(name)
			if slices.Equal(want, drained[name]) {
				continue
			}
			for _, g := range want {
				if !slices.Contains(drained[name], g) {
					r.Drains++
				}
			}
			if err := s.SetDrain(name, want); err != nil {
				return err
			}
			drained[name] = want
		}
		for _, np := range pl.Nodes {
			gen++
			topo := *np.Proposed
			topo.GPUs = append([]topology.GPU(nil), np.Proposed.GPUs...)
			for _, c := range np.Changes {
				for gi := range topo.GPUs {
					g := &topo.GPUs[gi]
					if g.Index != c.GPU {
						continue
					}
					g.Instances = append([]topology.GPUInstance(nil), g.Instances...)
					for ii := range g.Instances {
						g.Instances[ii].DeviceID = fmt.Sprintf("MIG-%s-%d-r%d-%d", np.Node, g.Index, gen, ii)
					}
				}
			}
			if err := s.StartReconfigure(np.Node); err != nil {
				return err
			}
			recon[np.Node] = &reconfiguring{until: now + o.Reconfig, topo: &topo}
			r.NodeRuns++
			r.Reconfigurations += len(np.Changes)
		}
		return nil
	}
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		// The next event: an arrival, a departure, a reconfiguration's end
		// or the planner's tick.
		t := end
		if next < len(arrivals) {
			t = min(t, arrivals[next].at)
		}
		if len(deps) > 0 {
			t = min(t, deps[0].at)
		}
		for _, rc := range recon {
			t = min(t, rc.until)
		}
		if planner != nil {
			t = min(t, tick)
		}
		if t >= end && next >= len(arrivals) {
			accumulate(end)
			break
		}
		accumulate(t)
		for len(deps) > 0 && deps[0].at <= now {
			d := heap.Pop(&deps).(departure)
			if err := s.Remove(d.uid); err != nil {
				return nil, err
			}
		}
		names := make([]string, 0, len(recon))
		for name, rc := range recon {
			if rc.until <= now {
				names = append(names, name)
			}
		}
		sort.Strings(names)
		for _, name := range names {
			// A pod losing a device fails the run here.
			if err := s.FinishReconfigure(name, recon[name].topo); err != nil {
				return nil, err
			}
			delete(recon, name)
			planner.Succeeded(name)
		}
		for next < len(arrivals) && arrivals[next].at <= now {
			a := &arrivals[next]
			next++
			req, err := podrequest.Parse(a.pod.Pod, podrequest.Options{Catalog: cat})
			if err != nil {
				return nil, err
			}
			learner.ObserveOnce(string(a.pod.Pod.UID), req, allocator.Host{})
			r.ArrivedByPhase[a.phase]++
			pending = append(pending, &pendingPod{a: a, req: req, key: a.class.Name})
		}
		if err := tryPending(); err != nil {
			return nil, err
		}
		if planner != nil && now >= tick {
			tick = now + o.Window
			if err := plan(); err != nil {
				return nil, err
			}
		}
	}
	r.Pending = len(pending)
	sort.Float64s(waits)
	r.WaitP50, r.WaitP99 = percentile(waits, 0.50), percentile(waits, 0.99)
	if st := s.Stats(); st.Mispredicted != 0 {
		return nil, fmt.Errorf("%s: %d mispredicted device picks", o.Layout, st.Mispredicted)
	}
	return r, nil
}

// onGPUs reports the first GPU index of gpus that holds one of devs.
func onGPUs(t *topology.Node, devs []allocator.ResourceDevices, gpus []int) (int, bool) {
	if t == nil || len(gpus) == 0 {
		return 0, false
	}
	for _, g := range allocator.GPUsHolding(t, devs) {
		if slices.Contains(gpus, g) {
			return g, true
		}
	}
	return 0, false
}

func percentile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted)-1) + 0.5)
	return sorted[min(i, len(sorted)-1)]
}
