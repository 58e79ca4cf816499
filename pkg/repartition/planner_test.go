package repartition

import (
	"fmt"
	"math/rand"
	"strings"
	"testing"
	"time"

	"github.com/gpuslice/gpuslice/pkg/allocator"
	"github.com/gpuslice/gpuslice/pkg/podrequest"
	"github.com/gpuslice/gpuslice/pkg/topology"
	"github.com/gpuslice/gpuslice/pkg/topology/fixtures"
)

const h100 = "NVIDIA H100 80GB HBM3"

var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

func req(res string, n int) *podrequest.Request {
	rc := []podrequest.ResourceCount{{Name: res, Count: n}}
	return &podrequest.Request{Containers: []podrequest.Container{{Name: "c", Resources: rc}}, Effective: rc}
}

func mig(profile string) string { return topology.MIGResourceName(profile) }

func node(name string, gpus int, profiles ...string) *topology.Node {
	return fixtures.MustBuild(topology.NewCatalog(), fixtures.Spec{Name: name, Product: h100, GPUs: gpus, MIG: profiles})
}

func sevenOnes() []string {
	return []string{"1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb"}
}

// demand returns n pods of profile, pending since t0.
func demand(prefix, profile string, n int, prio int32) []Demand {
	out := make([]Demand, n)
	for i := range out {
		out[i] = Demand{Pod: fmt.Sprintf("%s-%d", prefix, i), Request: req(mig(profile), 1), Since: t0, Priority: prio}
	}
	return out
}

// busy allocates every device of the given GPU positions.
func busy(t *topology.Node, positions ...int) []allocator.ResourceDevices {
	var out []allocator.ResourceDevices
	for _, gi := range positions {
		for _, in := range t.GPUs[gi].Instances {
			out = append(out, allocator.ResourceDevices{Resource: mig(in.Profile), DeviceIDs: []string{in.DeviceID}})
		}
	}
	return out
}

func mixOf(weights map[string]float64) *allocator.Mix {
	l := allocator.NewMixLearner(1000, 16)
	for p, w := range weights {
		for range int(w * 100) {
			l.Observe(req(mig(p), 1))
		}
	}
	return l.Snapshot(0)
}

func newPlanner(t *testing.T, mod func(*Config)) *Planner {
	t.Helper()
	cfg := DefaultConfig()
	if mod != nil {
		mod(&cfg)
	}
	p, err := New(cfg, topology.NewCatalog())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// checkPlan asserts what every plan must respect whatever the input: no
// changed GPU holds a device, no mode change, only layouts largest-first
// creation builds, and the claimed pods pass Check on the proposed node.
func checkPlan(t *testing.T, in Input, plan *Plan) {
	t.Helper()
	cat := topology.NewCatalog()
	byName := map[string]*NodeState{}
	for i := range in.Nodes {
		byName[in.Nodes[i].Topology.Name] = &in.Nodes[i]
	}
	pods := map[string]*podrequest.Request{}
	for _, d := range in.Pending {
		pods[d.Pod] = d.Request
	}
	for _, np := range plan.Nodes {
		ns := byName[np.Node]
		if ns == nil {
			t.Fatalf("plan for unknown node %s", np.Node)
		}
		if ns.Reconfiguring {
			t.Errorf("node %s is reconfiguring but got a plan", np.Node)
		}
		held := map[string]bool{}
		for _, rd := range ns.Allocated {
			for _, id := range rd.DeviceIDs {
				held[id] = true
			}
		}
		for _, c := range np.Changes {
			var g *topology.GPU
			for i := range ns.Topology.GPUs {
				if ns.Topology.GPUs[i].Index == c.GPU {
					g = &ns.Topology.GPUs[i]
				}
			}
			if g == nil || !g.MIGEnabled {
				t.Fatalf("%s %s: GPU missing or MIG disabled", np.Node, c.String())
			}
			for _, inst := range g.Instances {
				if held[inst.DeviceID] {
					t.Errorf("%s %s: changed GPU holds allocated device %s", np.Node, c.String(), inst.DeviceID)
				}
			}
			m, _ := cat.Lookup(g.Product)
			built, err := m.CreateLargestFirst(c.To)
			if err != nil {
				t.Errorf("%s %s: not built by largest-first creation: %v", np.Node, c.String(), err)
			} else if fmt.Sprint(built) != fmt.Sprint(c.Instances) {
				t.Errorf("%s %s: instances %v, creation builds %v", np.Node, c.String(), c.Instances, built)
			}
			if topology.SameCounts(c.From, c.To) {
				t.Errorf("%s %s: no-op change", np.Node, c.String())
			}
		}
		cn, err := allocator.Compile(np.Proposed, cat, topology.PolicyDistributed)
		if err != nil {
			t.Fatalf("%s: proposed topology: %v", np.Node, err)
		}
		st := allocator.NewState(cn)
		if err := st.Apply(ns.Allocated); err != nil {
			t.Fatalf("%s: allocations lost: %v", np.Node, err)
		}
		for _, pod := range np.Serves {
			pl, v := st.Place(pods[pod])
			if !v.OK() {
				t.Errorf("%s: served pod %s does not pass Check: %s", np.Node, pod, v.Reason())
				continue
			}
			_ = st.Apply(pl.Devices())
		}
	}
}

func changedTo(plan *Plan) []string {
	var out []string
	for _, np := range plan.Nodes {
		for _, c := range np.Changes {
			out = append(out, np.Node+" "+c.String())
		}
	}
	return out
}

func TestPlanTable(t *testing.T) {
	type tc struct {
		name        string
		nodes       func() []NodeState
		pending     []Demand
		mix         *allocator.Mix
		cfg         func(*Config)
		wantChanges []string // exact, in order
		wantServed  int
		wantFitNow  int
		wantReject  string
	}
	cases := []tc{
		{
			name:        "idle 1g GPUs become 3g for pending 3g pods",
			nodes:       func() []NodeState { return []NodeState{{Topology: node("a", 2, sevenOnes()...)}} },
			pending:     demand("p", "3g.40gb", 4, 0),
			mix:         mixOf(map[string]float64{"3g.40gb": 1}),
			wantChanges: []string{"a GPU 0: 7×1g.10gb → 2×3g.40gb", "a GPU 1: 7×1g.10gb → 2×3g.40gb"},
			wantServed:  4,
		},
		{
			name: "GPUs holding a device never change",
			nodes: func() []NodeState {
				n := node("a", 3, sevenOnes()...)
				// GPU 0 full, GPU 1 has a single device allocated.
				al := busy(n, 0)
				al = append(al, allocator.ResourceDevices{Resource: mig("1g.10gb"), DeviceIDs: []string{n.GPUs[1].Instances[3].DeviceID}})
				return []NodeState{{Topology: n, Allocated: al}}
			},
			pending:     demand("p", "3g.40gb", 4, 0),
			mix:         mixOf(map[string]float64{"3g.40gb": 1}),
			wantChanges: []string{"a GPU 2: 7×1g.10gb → 2×3g.40gb"},
			wantServed:  2,
		},
		{
			name: "BusyGPUs are respected",
			nodes: func() []NodeState {
				return []NodeState{{Topology: node("a", 2, sevenOnes()...), BusyGPUs: []int{0}}}
			},
			pending:     demand("p", "3g.40gb", 2, 0),
			mix:         mixOf(map[string]float64{"3g.40gb": 1}),
			wantChanges: []string{"a GPU 1: 7×1g.10gb → 2×3g.40gb"},
			wantServed:  2,
		},
		{
			name:       "pods that fit now need no change",
			nodes:      func() []NodeState { return []NodeState{{Topology: node("a", 1, sevenOnes()...)}} },
			pending:    demand("p", "1g.10gb", 3, 0),
			wantFitNow: 3,
		},
		{
			name: "pods that fit now take the GPU they fit on off the table",
			nodes: func() []NodeState {
				return []NodeState{{Topology: node("a", 2, sevenOnes()...)}}
			},
			pending: append(demand("one", "1g.10gb", 1, 0), demand("three", "3g.40gb", 4, 0)...),
			mix:     mixOf(map[string]float64{"3g.40gb": 1}),
			// The 1g pod fits on GPU 0 now; only GPU 1 may change.
			wantChanges: []string{"a GPU 1: 7×1g.10gb → 2×3g.40gb"},
			wantServed:  2,
			wantFitNow:  1,
		},
		{
			name:        "mix decides between layouts that serve as many: 1g-heavy mix",
			nodes:       func() []NodeState { return []NodeState{{Topology: node("a", 1, "7g.80gb")}} },
			pending:     demand("p", "3g.40gb", 1, 0),
			mix:         mixOf(map[string]float64{"1g.10gb": 0.7, "3g.40gb": 0.3}),
			wantChanges: []string{"a GPU 0: 1×7g.80gb → 3×1g.10gb+1×3g.40gb"},
			wantServed:  1,
		},
		{
			name:        "mix decides between layouts that serve as many: 3g mix",
			nodes:       func() []NodeState { return []NodeState{{Topology: node("a", 1, "7g.80gb")}} },
			pending:     demand("p", "3g.40gb", 1, 0),
			mix:         mixOf(map[string]float64{"3g.40gb": 1}),
			wantChanges: []string{"a GPU 0: 1×7g.80gb → 2×3g.40gb"},
			wantServed:  1,
		},
		{
			name:        "higher priority first",
			nodes:       func() []NodeState { return []NodeState{{Topology: node("a", 1, "4g.40gb", "3g.40gb")}} },
			pending:     append(demand("low", "1g.10gb", 5, 0), demand("high", "7g.80gb", 1, 100)...),
			wantChanges: []string{"a GPU 0: 1×3g.40gb+1×4g.40gb → 1×7g.80gb"},
			wantServed:  1,
		},
		{
			name:       "demand younger than MinDemandAge is not acted on",
			nodes:      func() []NodeState { return []NodeState{{Topology: node("a", 1, sevenOnes()...)}} },
			pending:    []Demand{{Pod: "new", Request: req(mig("3g.40gb"), 1), Since: t0.Add(time.Hour)}},
			wantServed: 0,
		},
		{
			name: "MIG-disabled GPUs and single-strategy nodes never change",
			nodes: func() []NodeState {
				off := fixtures.MustBuild(topology.NewCatalog(), fixtures.Spec{Name: "off", Product: h100, GPUs: 2})
				single := fixtures.MustBuild(topology.NewCatalog(), fixtures.Spec{Name: "single", Product: h100, GPUs: 2, MIG: sevenOnes(), Strategy: topology.MIGStrategySingle})
				return []NodeState{{Topology: off}, {Topology: single}}
			},
			pending: demand("p", "3g.40gb", 2, 0),
		},
		{
			name:    "whole-GPU requests cannot be served by a layout",
			nodes:   func() []NodeState { return []NodeState{{Topology: node("a", 1, sevenOnes()...)}} },
			pending: []Demand{{Pod: "whole", Request: req(topology.ResourceGPU, 1), Since: t0}},
		},
		{
			name: "cap on nodes in flight counts nodes already reconfiguring",
			nodes: func() []NodeState {
				return []NodeState{{Topology: node("a", 1, sevenOnes()...), Reconfiguring: true}, {Topology: node("b", 1, sevenOnes()...)}, {Topology: node("c", 1, sevenOnes()...)}}
			},
			pending:     demand("p", "3g.40gb", 4, 0),
			mix:         mixOf(map[string]float64{"3g.40gb": 1}),
			cfg:         func(c *Config) { c.MaxNodesInFlight = 2 },
			wantChanges: []string{"b GPU 0: 7×1g.10gb → 2×3g.40gb"},
			wantServed:  2,
		},
		{
			name: "a node already changing is preferred for more GPUs",
			nodes: func() []NodeState {
				return []NodeState{{Topology: node("a", 1, sevenOnes()...)}, {Topology: node("b", 2, sevenOnes()...)}}
			},
			pending:     demand("p", "3g.40gb", 4, 0),
			mix:         mixOf(map[string]float64{"3g.40gb": 1}),
			cfg:         func(c *Config) { c.MaxNodesInFlight = 5 },
			wantChanges: []string{"a GPU 0: 7×1g.10gb → 2×3g.40gb", "b GPU 0: 7×1g.10gb → 2×3g.40gb"},
			wantServed:  4,
		},
		{
			name: "a proposal that fails Check is rejected",
			nodes: func() []NodeState {
				// Time-sliced MIG with failRequestsGreaterThanOne: counts
				// say 2 replicas fit, the kubelet would fail the pod.
				n := fixtures.MustBuild(topology.NewCatalog(), fixtures.Spec{Name: "ts", Product: h100, GPUs: 1, MIG: []string{"7g.80gb"}, Replicas: 2})
				n.TimeSlicing.FailRequestsGreaterThanOne = true
				n.TimeSlicing.Resources = append(n.TimeSlicing.Resources, topology.SharedResource{Name: mig("3g.40gb"), Replicas: 2})
				return []NodeState{{Topology: n}}
			},
			pending:    []Demand{{Pod: "two", Request: req(mig("3g.40gb"), 2), Since: t0}},
			wantReject: "does not pass Filter",
		},
		{
			name: "allocations of unknown devices leave the node out",
			nodes: func() []NodeState {
				return []NodeState{{Topology: node("a", 1, sevenOnes()...), Allocated: []allocator.ResourceDevices{{Resource: mig("1g.10gb"), DeviceIDs: []string{"MIG-nope"}}}}}
			},
			pending:    demand("p", "3g.40gb", 1, 0),
			wantReject: "not advertised",
		},
		{
			name:       "nil topology leaves the node out",
			nodes:      func() []NodeState { return []NodeState{{}} },
			pending:    demand("p", "3g.40gb", 1, 0),
			wantReject: "without topology",
		},
		{
			name:        "first-fit takes the first layout that serves a pod",
			nodes:       func() []NodeState { return []NodeState{{Topology: node("a", 1, "7g.80gb")}} },
			pending:     demand("p", "3g.40gb", 1, 0),
			mix:         mixOf(map[string]float64{"3g.40gb": 1}),
			cfg:         func(c *Config) { c.Strategy = FirstFit },
			wantChanges: []string{"a GPU 0: 1×7g.80gb → 1×1g.10gb+1×1g.20gb+1×3g.40gb"},
			wantServed:  1,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := newPlanner(t, c.cfg)
			in := Input{Now: t0.Add(time.Minute), Nodes: c.nodes(), Pending: c.pending, Mix: c.mix}
			plan := p.Plan(in)
			if c.wantReject != "" {
				if !strings.Contains(strings.Join(plan.Rejected, "\n"), c.wantReject) {
					t.Fatalf("rejected %q, want %q", plan.Rejected, c.wantReject)
				}
				if len(plan.Nodes) != 0 {
					t.Fatalf("rejected proposal still planned: %v", changedTo(plan))
				}
				return
			}
			if len(plan.Rejected) > 0 {
				t.Fatalf("rejected: %v", plan.Rejected)
			}
			checkPlan(t, Input{Nodes: nonNil(in.Nodes), Pending: in.Pending}, plan)
			if got := changedTo(plan); strings.Join(got, "; ") != strings.Join(c.wantChanges, "; ") {
				t.Errorf("changes:\n got %q\nwant %q", got, c.wantChanges)
			}
			served := 0
			for _, np := range plan.Nodes {
				served += len(np.Serves)
			}
			if served != c.wantServed || len(plan.FitNow) != c.wantFitNow {
				t.Errorf("served %d fit-now %d, want %d and %d (unserved %v)", served, len(plan.FitNow), c.wantServed, c.wantFitNow, plan.Unserved)
			}
			if served+len(plan.FitNow)+len(plan.Unserved)+len(plan.Young) != len(c.pending) {
				t.Errorf("served %d + fit now %d + unserved %d != %d pending", served, len(plan.FitNow), len(plan.Unserved), len(c.pending))
			}
		})
	}
}

func nonNil(ns []NodeState) []NodeState {
	var out []NodeState
	for _, n := range ns {
		if n.Topology != nil {
			out = append(out, n)
		}
	}
	return out
}

// apply makes a plan's changes on the topologies, as MIG manager would.
func applyPlan(nodes []NodeState, plan *Plan) {
	for _, np := range plan.Nodes {
		for i := range nodes {
			if nodes[i].Topology.Name != np.Node {
				continue
			}
			t := *np.Proposed
			t.GPUs = append([]topology.GPU(nil), np.Proposed.GPUs...)
			nodes[i].Topology = &t
		}
	}
}

// Demand that flips between 1g and 3g every few minutes must not rebuild a
// GPU more than once per MinGPUInterval.
func TestOscillatingDemandDoesNotThrash(t *testing.T) {
	p := newPlanner(t, func(c *Config) { c.MinGPUInterval = 30 * time.Minute; c.MaxNodesInFlight = 4 })
	nodes := []NodeState{{Topology: node("a", 1, sevenOnes()...)}, {Topology: node("b", 1, sevenOnes()...)}}
	changes := map[string][]time.Time{}
	now := t0
	for round := range 24 { // two hours, a round every 5 minutes
		now = now.Add(5 * time.Minute)
		profile, n := "3g.40gb", 4
		if round%2 == 1 {
			profile, n = "1g.10gb", 14
		}
		// Pods pending now are those of the current phase that do not
		// fit: a phase's pods are all new.
		pending := demand(fmt.Sprintf("r%d", round), profile, n, 0)
		for i := range pending {
			pending[i].Since = now.Add(-time.Minute)
		}
		in := Input{Now: now, Nodes: nodes, Pending: pending, Mix: mixOf(map[string]float64{"1g.10gb": 0.5, "3g.40gb": 0.5})}
		plan := p.Plan(in)
		checkPlan(t, in, plan)
		p.Commit(plan, now)
		for _, np := range plan.Nodes {
			for _, c := range np.Changes {
				k := fmt.Sprintf("%s/%d", np.Node, c.GPU)
				if prev := changes[k]; len(prev) > 0 && now.Sub(prev[len(prev)-1]) < 30*time.Minute {
					t.Fatalf("round %d: %s changed again after %v", round, k, now.Sub(prev[len(prev)-1]))
				}
				changes[k] = append(changes[k], now)
			}
		}
		applyPlan(nodes, plan)
	}
	total := 0
	for k, ts := range changes {
		// 2 hours / 30 minutes: at most 4 changes per GPU.
		if len(ts) > 4 {
			t.Errorf("%s changed %d times", k, len(ts))
		}
		total += len(ts)
	}
	if total == 0 {
		t.Fatal("no GPU ever changed: the test does not exercise the planner")
	}
	// Without hysteresis the same demand rebuilds GPUs every round.
	q := newPlanner(t, func(c *Config) { c.MinGPUInterval = 0; c.MaxNodesInFlight = 4 })
	nodes = []NodeState{{Topology: node("a", 1, sevenOnes()...)}, {Topology: node("b", 1, sevenOnes()...)}}
	free := 0
	now = t0
	for round := range 24 {
		now = now.Add(5 * time.Minute)
		profile, n := "3g.40gb", 4
		if round%2 == 1 {
			profile, n = "1g.10gb", 14
		}
		pending := demand("x", profile, n, 0)
		plan := q.Plan(Input{Now: now, Nodes: nodes, Pending: pending, Mix: mixOf(map[string]float64{"1g.10gb": 0.5, "3g.40gb": 0.5})})
		q.Commit(plan, now)
		free += plan.Changes()
		applyPlan(nodes, plan)
	}
	t.Logf("GPU changes over 2 hours of flipping demand: %d with a 30-minute interval, %d without", total, free)
	if free < 3*total {
		t.Errorf("without hysteresis %d changes, with %d: the interval should hold some back", free, total)
	}
}

// Demand that arrives in two pieces a minute apart rebuilds a node once
// when MinNodeInterval holds it back, and twice (GPU by GPU) without it.
func TestMinNodeIntervalBatchesANode(t *testing.T) {
	runs := func(interval time.Duration) int {
		p := newPlanner(t, func(c *Config) { c.MinNodeInterval = interval; c.MinGPUInterval = 0; c.MinDemandAge = 0 })
		nodes := []NodeState{{Topology: node("a", 2, sevenOnes()...)}}
		n := 0
		for i, pending := range [][]Demand{demand("train", "3g.40gb", 2, 0), demand("big", "7g.80gb", 1, 0)} {
			now := t0.Add(time.Duration(i) * time.Minute)
			in := Input{Now: now, Nodes: nodes, Pending: pending}
			plan := p.Plan(in)
			checkPlan(t, in, plan)
			p.Commit(plan, now)
			if plan.Changes() > 0 {
				n++
			}
			applyPlan(nodes, plan)
		}
		return n
	}
	if got := runs(10 * time.Minute); got != 1 {
		t.Errorf("with a 10-minute node interval the node ran MIG manager %d times, want 1", got)
	}
	if got := runs(0); got != 2 {
		t.Errorf("without a node interval the node ran MIG manager %d times, want 2 (the test does not exercise the interval)", got)
	}
}

func TestBackoffAfterFailure(t *testing.T) {
	p := newPlanner(t, func(c *Config) { c.BackoffBase = time.Minute; c.BackoffMax = 3 * time.Minute })
	nodes := []NodeState{{Topology: node("a", 1, sevenOnes()...)}}
	pending := demand("p", "3g.40gb", 1, 0)
	now := t0.Add(time.Hour)
	if d := p.Failed("a", now); d != time.Minute {
		t.Fatalf("first back-off %v", d)
	}
	if plan := p.Plan(Input{Now: now.Add(30 * time.Second), Nodes: nodes, Pending: pending}); plan.Changes() != 0 {
		t.Fatalf("node backing off got %v", changedTo(plan))
	}
	if plan := p.Plan(Input{Now: now.Add(time.Minute), Nodes: nodes, Pending: pending}); plan.Changes() != 1 {
		t.Fatalf("after back-off: %v", changedTo(plan))
	}
	if d := p.Failed("a", now); d != 2*time.Minute {
		t.Fatalf("second back-off %v", d)
	}
	if d := p.Failed("a", now); d != 3*time.Minute {
		t.Fatalf("third back-off %v, want the cap", d)
	}
	if !p.BackingOff("a", now.Add(2*time.Minute)) {
		t.Fatal("not backing off")
	}
	p.Succeeded("a")
	if p.BackingOff("a", now) {
		t.Fatal("still backing off after success")
	}
}

func TestConfigValidate(t *testing.T) {
	for _, mod := range []func(*Config){
		func(c *Config) { c.Strategy = "best" },
		func(c *Config) { c.MaxNodesInFlight = 0 },
		func(c *Config) { c.MinGPUInterval = -1 },
		func(c *Config) { c.MinNodeInterval = -1 },
		func(c *Config) { c.BackoffMax = c.BackoffBase - 1 },
	} {
		c := DefaultConfig()
		mod(&c)
		if _, err := New(c, topology.NewCatalog()); err == nil {
			t.Errorf("config %+v accepted", c)
		}
	}
	if _, err := New(DefaultConfig(), nil); err == nil {
		t.Error("nil catalog accepted")
	}
}

// Random clusters and demand: every plan respects the invariants.
func TestPlanInvariantsRandom(t *testing.T) {
	cat := topology.NewCatalog()
	products := []string{h100, "NVIDIA A100-SXM4-40GB"}
	rng := rand.New(rand.NewSource(7))
	for iter := range 40 {
		var nodes []NodeState
		for ni := range 1 + rng.Intn(4) {
			product := products[rng.Intn(len(products))]
			m, _ := cat.Lookup(product)
			ls := buildableLayouts(m)
			l := ls[rng.Intn(len(ls))]
			var profiles []string
			for p, n := range l.counts {
				for range n {
					profiles = append(profiles, p)
				}
			}
			n := fixtures.MustBuild(cat, fixtures.Spec{Name: fmt.Sprintf("n%d", ni), Product: product, GPUs: 1 + rng.Intn(4), MIG: profiles})
			var al []allocator.ResourceDevices
			for gi := range n.GPUs {
				for _, in := range n.GPUs[gi].Instances {
					if rng.Intn(6) == 0 {
						al = append(al, allocator.ResourceDevices{Resource: mig(in.Profile), DeviceIDs: []string{in.DeviceID}})
					}
				}
			}
			nodes = append(nodes, NodeState{Topology: n, Allocated: al, Reconfiguring: rng.Intn(5) == 0})
		}
		var pending []Demand
		for i := range rng.Intn(12) {
			product := products[rng.Intn(len(products))]
			m, _ := cat.Lookup(product)
			pr := m.Profiles[rng.Intn(len(m.Profiles))]
			pending = append(pending, Demand{Pod: fmt.Sprint(i), Request: req(mig(pr.Name), 1+rng.Intn(2)), Since: t0, Priority: int32(rng.Intn(2))})
		}
		p := newPlanner(t, func(c *Config) { c.MaxNodesInFlight = 1 + rng.Intn(3) })
		in := Input{Now: t0.Add(time.Hour), Nodes: nodes, Pending: pending, Mix: mixOf(map[string]float64{"1g.10gb": 0.5, "3g.20gb": 0.5})}
		plan := p.Plan(in)
		if len(plan.Rejected) > 0 {
			t.Fatalf("iter %d: rejected %v", iter, plan.Rejected)
		}
		checkPlan(t, in, plan)
		inFlight := 0
		for _, n := range nodes {
			if n.Reconfiguring {
				inFlight++
			}
		}
		if len(plan.Nodes) > 0 && inFlight+len(plan.Nodes) > p.cfg.MaxNodesInFlight {
			t.Fatalf("iter %d: %d nodes in flight + %d planned > cap %d", iter, inFlight, len(plan.Nodes), p.cfg.MaxNodesInFlight)
		}
	}
}
