package repartition

import (
	"slices"
	"testing"
	"time"

	"github.com/gpuslice/gpuslice/pkg/allocator"
	"github.com/gpuslice/gpuslice/pkg/topology"
)

// twoThrees is a node of two H100s, each 2×3g.40gb; GPU position 0 holds
// one 3g pod, position 1 two.
func twoThrees(name string) NodeState {
	t := node(name, 2, "3g.40gb", "3g.40gb")
	held := []allocator.ResourceDevices{
		{Resource: mig("3g.40gb"), DeviceIDs: []string{t.GPUs[0].Instances[0].DeviceID}},
		{Resource: mig("3g.40gb"), DeviceIDs: []string{t.GPUs[1].Instances[0].DeviceID}},
		{Resource: mig("3g.40gb"), DeviceIDs: []string{t.GPUs[1].Instances[1].DeviceID}},
	}
	return NodeState{Topology: t, Allocated: held}
}

func drainPlanner(t *testing.T, max int) *Planner {
	return newPlanner(t, func(c *Config) {
		c.MaxDrainingGPUs = max
		c.DrainAfter = 5 * time.Minute
		c.MaxDrainTime = time.Hour
		c.MinGPUInterval = 10 * time.Minute
	})
}

var inferenceMix = map[string]float64{"1g.10gb": 0.9, "3g.40gb": 0.1}

func drainKeys(p *Plan) []string {
	var out []string
	for _, d := range p.Drains {
		out = append(out, d.Node+"/"+d.String())
	}
	return out
}

// oneSeven is a node of one H100 as 1×7g.80gb, held by a pod.
func oneSeven(name string) NodeState {
	t := node(name, 1, "7g.80gb")
	return NodeState{Topology: t, Allocated: busy(t, 0)}
}

// A busy GPU whose layout serves none of the pending pods is drained (no
// change while it holds a pod): the one whose free devices the drain
// would make unusable last, then the one that empties soonest, and no
// more than the pods need.
func TestDrainsTheGPUThatEmptiesSoonest(t *testing.T) {
	p := drainPlanner(t, 4)
	in := Input{Now: t0.Add(10 * time.Minute), Nodes: []NodeState{twoThrees("a"), oneSeven("b")}, Pending: demand("inf", "1g.10gb", 7, 0), Mix: mixOf(inferenceMix)}
	plan := p.Plan(in)
	checkPlan(t, in, plan)
	if plan.Changes() != 0 {
		t.Fatalf("changed busy GPUs: %v", changedTo(plan))
	}
	want := []string{"b/GPU 0: 1×7g.80gb → 7×1g.10gb"}
	if got := drainKeys(plan); !slices.Equal(got, want) {
		t.Fatalf("drains %v, want %v (b's GPU holds one pod, a's GPU 1 two; 7 pods need one GPU)", got, want)
	}
	if d := plan.Drains[0]; len(d.Serves) != 7 || !d.Since.Equal(in.Now) {
		t.Errorf("drain serves %d pods since %v, want 7 since %v", len(d.Serves), d.Since, in.Now)
	}
	if got := plan.DrainsOn("b"); !slices.Equal(got, []int{0}) {
		t.Errorf("DrainsOn(b) = %v", got)
	}

	// Twice the pods: a's full GPU 1 drains too, and the first drain
	// keeps its start. a's GPU 0 does not, though it holds fewer pods: its
	// free 3g.40gb would be lost to every 3g pod of the node.
	in.Now = in.Now.Add(time.Minute)
	in.Nodes[1].Draining = []int{0}
	in.Pending = demand("inf", "1g.10gb", 14, 0)
	plan = p.Plan(in)
	if got := drainKeys(plan); !slices.Equal(got, []string{"a/GPU 1: 2×3g.40gb → 7×1g.10gb", "b/GPU 0: 1×7g.80gb → 7×1g.10gb"}) {
		t.Fatalf("drains %v, want a's GPU 1 and b's GPU 0", got)
	}
	if !plan.Drains[1].Since.Equal(t0.Add(10 * time.Minute)) {
		t.Errorf("kept drain restarted at %v", plan.Drains[1].Since)
	}

	// Capped.
	q := drainPlanner(t, 1)
	if plan := q.Plan(in); len(plan.Drains) != 1 {
		t.Errorf("MaxDrainingGPUs 1 drained %v", drainKeys(plan))
	}
	// Off.
	r := drainPlanner(t, 0)
	if plan := r.Plan(in); len(plan.Drains) != 0 {
		t.Errorf("MaxDrainingGPUs 0 drained %v", drainKeys(plan))
	}
}

// Pods younger than DrainAfter drain nothing; pods an idle GPU serves drain
// nothing either.
func TestDrainWaitsAndPrefersIdleGPUs(t *testing.T) {
	p := drainPlanner(t, 4)
	n := twoThrees("a")
	young := demand("inf", "1g.10gb", 7, 0)
	for i := range young {
		young[i].Since = t0.Add(8 * time.Minute)
	}
	in := Input{Now: t0.Add(10 * time.Minute), Nodes: []NodeState{n}, Pending: young, Mix: mixOf(inferenceMix)}
	if plan := p.Plan(in); len(plan.Drains) != 0 {
		t.Errorf("pods pending 2 minutes drained %v", drainKeys(plan))
	}
	idle := NodeState{Topology: node("b", 1, "3g.40gb", "3g.40gb")}
	in = Input{Now: t0.Add(10 * time.Minute), Nodes: []NodeState{n, idle}, Pending: demand("inf", "1g.10gb", 7, 0), Mix: mixOf(inferenceMix)}
	plan := p.Plan(in)
	checkPlan(t, in, plan)
	if len(plan.Drains) != 0 || plan.Changes() != 1 {
		t.Errorf("an idle GPU serves the pods: want one change and no drain, got changes %v drains %v", changedTo(plan), drainKeys(plan))
	}
}

// Once the drained GPU is empty it changes and the drain ends; a drain
// whose pods are gone is lifted.
func TestDrainEndsInAChange(t *testing.T) {
	p := drainPlanner(t, 4)
	in := Input{Now: t0.Add(10 * time.Minute), Nodes: []NodeState{oneSeven("a")}, Pending: demand("inf", "1g.10gb", 7, 0), Mix: mixOf(inferenceMix)}
	plan := p.Plan(in)
	p.Commit(plan, in.Now)
	if len(plan.Drains) != 1 {
		t.Fatalf("drains %v", drainKeys(plan))
	}
	// Its pod ends.
	in.Now = in.Now.Add(20 * time.Minute)
	in.Nodes[0].Draining = []int{0}
	in.Nodes[0].Allocated = nil
	plan = p.Plan(in)
	checkPlan(t, in, plan)
	if got := changedTo(plan); len(got) != 1 || len(plan.Drains) != 0 {
		t.Fatalf("empty drained GPU: changes %v drains %v, want one change and no drain", got, drainKeys(plan))
	}
	if c := plan.Nodes[0].Changes[0]; c.GPU != 0 || topology.FormatCounts(c.To) != "7×1g.10gb" {
		t.Errorf("change %s, want GPU 0 → 7×1g.10gb", c.String())
	}

	// A drain whose pods went elsewhere is lifted.
	q := drainPlanner(t, 4)
	in = Input{Now: t0.Add(10 * time.Minute), Nodes: []NodeState{oneSeven("a")}, Pending: demand("inf", "1g.10gb", 7, 0), Mix: mixOf(inferenceMix)}
	if plan := q.Plan(in); len(plan.Drains) != 1 {
		t.Fatalf("drains %v", drainKeys(plan))
	}
	in.Now = in.Now.Add(time.Minute)
	in.Nodes[0].Draining = []int{0}
	in.Pending = nil
	if plan := q.Plan(in); len(plan.Drains) != 0 {
		t.Errorf("no pod pending, drains kept: %v", drainKeys(plan))
	}
}

// A drain not emptied within MaxDrainTime is given up, and its GPU is not
// drained again before MinGPUInterval; another GPU may be.
func TestDrainGivesUp(t *testing.T) {
	p := drainPlanner(t, 1)
	start := t0.Add(10 * time.Minute)
	in := Input{Now: start, Nodes: []NodeState{twoThrees("a"), oneSeven("b")}, Pending: demand("inf", "1g.10gb", 7, 0), Mix: mixOf(inferenceMix)}
	if plan := p.Plan(in); !slices.Equal(plan.DrainsOn("b"), []int{0}) {
		t.Fatalf("drains %v, want b's GPU 0", drainKeys(plan))
	}
	in.Nodes[1].Draining = []int{0}
	in.Now = start.Add(59 * time.Minute)
	if plan := p.Plan(in); !slices.Equal(plan.DrainsOn("b"), []int{0}) {
		t.Fatalf("drain dropped before MaxDrainTime: %v", drainKeys(plan))
	}
	in.Now = start.Add(time.Hour)
	plan := p.Plan(in)
	if len(plan.DrainsOn("b")) != 0 {
		t.Fatalf("drain of b's GPU 0 kept past MaxDrainTime: %v", drainKeys(plan))
	}
	if !slices.Equal(plan.DrainsOn("a"), []int{1}) {
		t.Errorf("after giving b's GPU up, drains %v, want a's GPU 1", drainKeys(plan))
	}
	in.Nodes[1].Draining = nil
	in.Now = start.Add(time.Hour + 11*time.Minute)
	r := drainPlanner(t, 2)
	r.drainQuit = p.drainQuit // same memory, room for two
	if got := r.Plan(in).DrainsOn("b"); !slices.Equal(got, []int{0}) {
		t.Errorf("b's GPU not drainable again after MinGPUInterval: %v", got)
	}
}

// A drain the node's annotation shows but the planner does not remember (a
// new leader) is adopted from now; pods the kubelet could put on a
// drained GPU do not count as fitting now.
func TestDrainAdoptedAndHonoured(t *testing.T) {
	p := drainPlanner(t, 4)
	n := twoThrees("a")
	n.Draining = []int{0}
	now := t0.Add(10 * time.Minute)
	// One 3g pod: GPU 0 has a free 3g.40gb, but it drains.
	pods := demand("big", "3g.40gb", 1, 0)
	pods = append(pods, demand("inf", "1g.10gb", 7, 0)...)
	in := Input{Now: now, Nodes: []NodeState{n}, Pending: pods, Mix: mixOf(inferenceMix)}
	plan := p.Plan(in)
	if slices.Contains(plan.FitNow, "big-0") {
		t.Errorf("a pod whose only free device is on a drained GPU counted as fitting now")
	}
	if len(plan.Drains) == 0 || plan.Drains[0].GPU != 0 || !plan.Drains[0].Since.Equal(now) {
		t.Fatalf("drain from the annotation not adopted from now: %+v", plan.Drains)
	}
	// Without the drain the pod fits now.
	n.Draining = nil
	q := drainPlanner(t, 0)
	if plan := q.Plan(Input{Now: now, Nodes: []NodeState{n}, Pending: pods}); !slices.Contains(plan.FitNow, "big-0") {
		t.Errorf("without the drain, FitNow %v lacks big-0", plan.FitNow)
	}
}

// DrainMinGain keeps a GPU whose layout suits the learned mix at least as
// well as any other from draining.
func TestDrainMinGain(t *testing.T) {
	p := newPlanner(t, func(c *Config) {
		c.MaxDrainingGPUs, c.DrainAfter, c.MaxDrainTime, c.DrainMinGain = 4, 5*time.Minute, time.Hour, 0.1
	})
	in := Input{Now: t0.Add(10 * time.Minute), Nodes: []NodeState{twoThrees("a")}, Pending: demand("inf", "1g.10gb", 7, 0), Mix: mixOf(map[string]float64{"3g.40gb": 1})}
	if plan := p.Plan(in); len(plan.Drains) != 0 {
		t.Errorf("the mix is all 3g, yet %v", drainKeys(plan))
	}
	in.Mix = mixOf(inferenceMix)
	if plan := p.Plan(in); len(plan.Drains) != 1 {
		t.Errorf("the mix is mostly 1g: want one drain, got %v", drainKeys(plan))
	}
}

func TestDrainConfigValidate(t *testing.T) {
	c := DefaultConfig()
	c.MaxDrainingGPUs = -1
	if c.Validate() == nil {
		t.Error("negative MaxDrainingGPUs accepted")
	}
	c = DefaultConfig()
	c.MaxDrainingGPUs, c.MaxDrainTime = 2, 0
	if c.Validate() == nil {
		t.Error("drains without MaxDrainTime accepted")
	}
}
