package autoscaler

import (
	"math"
	"testing"
	"time"
)

const gpu = "nvidia.com/gpu"

func types() []InstanceType {
	return []InstanceType{
		{Name: "big", Price: 3, Allocatable: Resources{"cpu": 32000, gpu: 4, "pods": 110}},
		{Name: "small", Price: 1, Allocatable: Resources{"cpu": 8000, gpu: 1, "pods": 110}},
		{Name: "huge", Price: 9, Allocatable: Resources{"cpu": 96000, gpu: 8, "pods": 110}},
	}
}

func newModel(t *testing.T, cfg Config) *Autoscaler {
	t.Helper()
	if cfg.NodePools == nil {
		cfg.NodePools = []NodePool{{Name: "gpu", Types: types()}}
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func pod(id string, gpus int64) Pod {
	return Pod{ID: id, Requests: Resources{"cpu": 1000, gpu: gpus}}
}

func kinds(events []Event, kind EventKind) []Event {
	var out []Event
	for _, e := range events {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

func TestProvisionPicksTheCheapestTypeThatFits(t *testing.T) {
	for _, tc := range []struct {
		gpus int64
		want string
	}{{1, "small"}, {2, "big"}, {4, "big"}, {5, "huge"}} {
		a := newModel(t, Config{LaunchDelay: time.Minute})
		if err := a.PodUnschedulable(0, pod("p", tc.gpus)); err != nil {
			t.Fatal(err)
		}
		if err := a.Advance(time.Minute); err != nil {
			t.Fatal(err)
		}
		got := kinds(a.Events(), Launched)
		if len(got) != 1 || got[0].Type.Name != tc.want {
			t.Errorf("%d GPUs: launched %+v, want one %s", tc.gpus, got, tc.want)
		}
	}
	// A pod no type holds launches nothing.
	a := newModel(t, Config{})
	if err := a.PodUnschedulable(0, pod("p", 9)); err != nil {
		t.Fatal(err)
	}
	if err := a.Advance(time.Hour); err != nil {
		t.Fatal(err)
	}
	if got := kinds(a.Events(), Launched); len(got) != 0 || a.Stats().NoType == 0 {
		t.Errorf("a 9-GPU pod launched %v (NoType %d)", got, a.Stats().NoType)
	}
}

func TestBatchWindow(t *testing.T) {
	a := newModel(t, Config{BatchIdle: time.Second, BatchMax: 10 * time.Second, LaunchDelay: time.Minute})
	// Three 1-GPU pods 0.5 s apart: one batch, closing 1 s after the last,
	// packed on one NodeClaim whose cheapest fitting type holds 3 GPUs.
	for i, at := range []time.Duration{0, 500 * time.Millisecond, time.Second} {
		if err := a.PodUnschedulable(at, pod(string(rune('a'+i)), 1)); err != nil {
			t.Fatal(err)
		}
	}
	if a.Next() != 2*time.Second {
		t.Fatalf("batch closes at %s, want 2s", a.Next())
	}
	if err := a.Advance(1999 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if got := a.Events(); len(got) != 0 {
		t.Fatalf("launched before the batch closed: %v", got)
	}
	if err := a.Advance(2 * time.Second); err != nil {
		t.Fatal(err)
	}
	got := kinds(a.Events(), Launched)
	if len(got) != 1 || got[0].Type.Name != "big" || got[0].At != 2*time.Second {
		t.Fatalf("launched %+v, want one big at 2s", got)
	}
	// A pod arriving every 0.9 s keeps the window open until BatchMax.
	b := newModel(t, Config{BatchIdle: time.Second, BatchMax: 3 * time.Second})
	for i := 0; i < 5; i++ {
		if err := b.PodUnschedulable(time.Duration(i)*900*time.Millisecond, pod(string(rune('a'+i)), 1)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Advance(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	first := kinds(b.Events(), Launched)
	if len(first) == 0 || first[0].At != 3*time.Second {
		t.Fatalf("launches %+v, want the first at BatchMax (3s)", first)
	}
	if b.Stats().Rounds < 2 {
		t.Errorf("%d rounds, want the pod after the window in a second round", b.Stats().Rounds)
	}
}

func TestPendingPodFittingAnExistingNodeLaunchesNothing(t *testing.T) {
	a := newModel(t, Config{LaunchDelay: time.Minute})
	if err := a.PodUnschedulable(0, pod("a", 3)); err != nil {
		t.Fatal(err)
	}
	if err := a.Advance(2 * time.Minute); err != nil {
		t.Fatal(err)
	}
	node := kinds(a.Events(), Launched)[0].Node
	if err := a.PodBound(2*time.Minute, "a", node, Resources{"cpu": 1000, gpu: 3}); err != nil {
		t.Fatal(err)
	}
	// One GPU is free by count: Karpenter nominates the node and waits for
	// the scheduler, even if the scheduler cannot use that GPU.
	if err := a.PodUnschedulable(3*time.Minute, pod("b", 1)); err != nil {
		t.Fatal(err)
	}
	if err := a.Advance(10 * time.Minute); err != nil {
		t.Fatal(err)
	}
	if got := kinds(a.Events(), Launched); len(got) != 0 {
		t.Errorf("launched %v for a pod that fits the existing node by count", got)
	}
	if a.Stats().Nominations == 0 {
		t.Error("no nomination recorded")
	}
}

func TestWhenEmptyRemovesAnEmptyNodeAfterConsolidateAfterOnly(t *testing.T) {
	const after = 5 * time.Minute
	cfg := Config{LaunchDelay: time.Minute, ConsolidateAfter: after, TerminationDelay: 7 * time.Second}
	a := newModel(t, cfg)
	if err := a.PodUnschedulable(0, pod("a", 1)); err != nil {
		t.Fatal(err)
	}
	if err := a.Advance(time.Minute + time.Second); err != nil {
		t.Fatal(err)
	}
	ev := a.Events()
	node := kinds(ev, Launched)[0].Node
	if len(kinds(ev, Ready)) != 1 {
		t.Fatalf("node not ready a launch delay after launch: %v", ev)
	}
	bound := 2 * time.Minute
	if err := a.PodBound(bound, "a", node, pod("a", 1).Requests); err != nil {
		t.Fatal(err)
	}
	gone := time.Hour
	if err := a.PodDeleted(gone, "a"); err != nil {
		t.Fatal(err)
	}
	if got := a.Events(); len(kinds(got, Cordoned)) != 0 {
		t.Fatalf("node with a pod cordoned: %v", got)
	}
	// Not before consolidateAfter has passed since the pod left.
	if err := a.Advance(gone + after - time.Second); err != nil {
		t.Fatal(err)
	}
	if got := a.Events(); len(got) != 0 {
		t.Fatalf("node disrupted %s after its last pod left (consolidateAfter %s): %v", after-time.Second, after, got)
	}
	// Within a poll period, the validation wait and the termination after.
	limit := gone + after + cfg.TerminationDelay + 10*time.Second + 15*time.Second
	if err := a.Advance(limit); err != nil {
		t.Fatal(err)
	}
	got := a.Events()
	c, d := kinds(got, Cordoned), kinds(got, Deleted)
	if len(c) != 1 || len(d) != 1 || d[0].At-c[0].At != cfg.TerminationDelay || c[0].At < gone+after+15*time.Second {
		t.Fatalf("events %+v: want cordon at least consolidateAfter + 15 s validation after the pod left, deletion %s later", got, cfg.TerminationDelay)
	}
	if len(a.Nodes()) != 0 {
		t.Errorf("nodes left: %v", a.Nodes())
	}
	if err := a.PodBound(limit, "x", node, nil); err == nil {
		t.Error("a pod was bound to a deleted node")
	}
}

func TestWhenEmptyNeverRemovesANodeWithAPod(t *testing.T) {
	a := newModel(t, Config{})
	if err := a.PodUnschedulable(0, pod("a", 1)); err != nil {
		t.Fatal(err)
	}
	if err := a.Advance(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	node := kinds(a.Events(), Launched)[0].Node
	if err := a.PodBound(5*time.Second, "a", node, pod("a", 1).Requests); err != nil {
		t.Fatal(err)
	}
	if err := a.Advance(48 * time.Hour); err != nil {
		t.Fatal(err)
	}
	if got := a.Events(); len(got) != 0 {
		t.Fatalf("a node with a pod was disrupted: %v", got)
	}
	if len(a.Nodes()) != 1 {
		t.Fatal("node lost")
	}
}

func TestNodePoolOrderAndSelector(t *testing.T) {
	pools := []NodePool{
		{Name: "a-pool", Labels: map[string]string{"shape": "a"}, Types: []InstanceType{{Name: "a", Price: 1, Allocatable: Resources{gpu: 8}}}},
		{Name: "b-pool", Labels: map[string]string{"shape": "b"}, Types: []InstanceType{{Name: "b", Price: 5, Allocatable: Resources{gpu: 8}}}},
		{Name: "c-pool", Weight: -1, Labels: map[string]string{"shape": "c"}, Types: []InstanceType{{Name: "c", Price: 0.1, Allocatable: Resources{gpu: 8}}}},
	}
	launch := func(p Pod) string {
		a := newModel(t, Config{NodePools: pools})
		if err := a.PodUnschedulable(0, p); err != nil {
			t.Fatal(err)
		}
		if err := a.Advance(time.Minute); err != nil {
			t.Fatal(err)
		}
		l := kinds(a.Events(), Launched)
		if len(l) != 1 {
			t.Fatalf("launched %v", l)
		}
		return l[0].Type.Name
	}
	// Equal weights: the name later in the alphabet first, whatever the price.
	if got := launch(Pod{ID: "p", Requests: Resources{gpu: 1}}); got != "b" {
		t.Errorf("launched %s, want b (equal weights: name descending)", got)
	}
	sel := Pod{ID: "q", Requests: Resources{gpu: 1}}
	sel.NodeSelector = map[string][]string{"shape": {"a", "c"}}
	if got := launch(sel); got != "a" {
		t.Errorf("launched %s, want a (selector a|c, c weighs less)", got)
	}
}

func TestMeterNodeHoursIsTheIntegralOfTheNodeCount(t *testing.T) {
	m := NewMeter()
	type ev struct {
		at     time.Duration
		launch bool
		node   string
		price  float64
	}
	evs := []ev{
		{0, true, "a", 2}, {30 * time.Minute, true, "b", 4}, {time.Hour, false, "a", 0},
		{90 * time.Minute, true, "c", 1}, {3 * time.Hour, false, "b", 0},
	}
	for _, e := range evs {
		var err error
		if e.launch {
			err = m.Launch(e.at, e.node, e.price)
		} else {
			err = m.Delete(e.at, e.node)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	end := 4 * time.Hour
	integral := 0.0
	for i, s := range m.Steps {
		next := end
		if i+1 < len(m.Steps) {
			next = m.Steps[i+1].At
		}
		integral += float64(s.Nodes) * (next - s.At).Hours()
	}
	// a: 1 h, b: 2.5 h, c: 2.5 h (still running at the end).
	if got := m.NodeHours(end); math.Abs(got-integral) > 1e-9 || math.Abs(got-6) > 1e-9 {
		t.Errorf("node-hours %v, integral of the count %v, lifetimes 6", got, integral)
	}
	if got := m.Dollars(end); math.Abs(got-(2*1+4*2.5+1*2.5)) > 1e-9 {
		t.Errorf("dollars %v", got)
	}
	if m.Peak() != 2 {
		t.Errorf("peak %d, want 2", m.Peak())
	}
	if err := m.Delete(5*time.Hour, "a"); err == nil {
		t.Error("a node deleted twice")
	}
	if err := m.Launch(time.Hour, "d", 1); err == nil {
		t.Error("a launch back in time was accepted")
	}
}

func TestConfigErrors(t *testing.T) {
	for name, cfg := range map[string]Config{
		"no pool":     {},
		"no type":     {NodePools: []NodePool{{Name: "x"}}},
		"negative":    {NodePools: []NodePool{{Name: "x", Types: types()}}, LaunchDelay: -time.Second},
		"idle > max":  {NodePools: []NodePool{{Name: "x", Types: types()}}, BatchIdle: time.Minute, BatchMax: time.Second},
		"dup pool":    {NodePools: []NodePool{{Name: "x", Types: types()}, {Name: "x", Types: types()}}},
		"bad type":    {NodePools: []NodePool{{Name: "x", Types: []InstanceType{{Name: "t", Price: math.NaN(), Allocatable: Resources{gpu: 1}}}}}},
		"empty alloc": {NodePools: []NodePool{{Name: "x", Types: []InstanceType{{Name: "t", Price: 1}}}}},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	a := newModel(t, Config{})
	if err := a.Advance(time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := a.Advance(time.Second); err == nil {
		t.Error("time went back without an error")
	}
	if err := a.PodDeleted(time.Minute, "nobody"); err == nil {
		t.Error("deleting an unknown pod gave no error")
	}
}
