package allocator

import (
	"math"
	"math/rand"
	"testing"

	"github.com/gpuslice/gpuslice/pkg/podrequest"
	"github.com/gpuslice/gpuslice/pkg/topology"
	"github.com/gpuslice/gpuslice/pkg/topology/fixtures"
)

func TestBinpackPrefersFullerGPUsThenNodes(t *testing.T) {
	const shared = "nvidia.com/gpu"
	// Same node fill (4 of 16 replicas), but on a distributed node the next
	// replica lands on an empty GPU, on a packed node on a busy one.
	packed := compile(t, timeSliced(topology.PolicyPacked, 4, 4))
	occupy(t, packed, shared, map[int]int{0: 2, 1: 2})
	distributed := compile(t, timeSliced(topology.PolicyDistributed, 4, 4))
	occupy(t, distributed, shared, map[int]int{0: 2, 1: 2})
	sc := &Scorer{Strategy: Binpack}
	r := req(shared, 1)
	if p, d := sc.Score(packed, r), sc.Score(distributed, r); p <= d {
		t.Fatalf("binpack packed-node %v <= distributed-node %v", p, d)
	}
	// Node level: with the GPU term equal, the fuller node wins.
	full := compile(t, fixtures.Spec{Name: "full", Product: "NVIDIA H200", GPUs: 4})
	occupy(t, full, "nvidia.com/gpu", map[int]int{0: 1, 1: 1, 2: 1})
	empty := compile(t, fixtures.Spec{Name: "empty", Product: "NVIDIA H200", GPUs: 4})
	w := req("nvidia.com/gpu", 1)
	if f, e := sc.Score(full, w), sc.Score(empty, w); f <= e {
		t.Fatalf("binpack full %v <= empty %v", f, e)
	}
	// The last free GPU of a node 3/4 busy: GPU term 0 (a whole GPU is
	// never busy before), node term 0.75, one GPU consumed, one of the
	// node's four GPUs taken.
	if got, want := sc.Score(full, w), (2*0+1*0.75)/3-sizeCost*1+scarcityWeight*0.25; math.Abs(got-want) > 1e-9 {
		t.Fatalf("score %v, want %v", got, want)
	}
	// The same nvidia.com/gpu request takes a quarter of a GPU on a
	// time-sliced node and a whole GPU on a node without sharing: with
	// both nodes empty, binpack prefers the smaller bite.
	ts := compile(t, timeSliced(topology.PolicyPacked, 4, 4))
	whole := compile(t, fixtures.Spec{Name: "whole", Product: "NVIDIA H200", GPUs: 4})
	if a, b := sc.Score(ts, req("nvidia.com/gpu", 1)), sc.Score(whole, req("nvidia.com/gpu", 1)); a <= b {
		t.Fatalf("binpack time-sliced %v <= whole %v", a, b)
	}
	sp := &Scorer{Strategy: Spread}
	if f, e := sp.Score(full, w), sp.Score(empty, w); f >= e {
		t.Fatalf("spread full %v >= empty %v", f, e)
	}
}

func TestBinpackMIGExpectsArbitraryPick(t *testing.T) {
	// GPU 0 has a busy 3g slice; a 1g request lands on GPU 0 or GPU 1 with
	// equal odds, so the GPU term is the mean over the free 1g slices of
	// their GPU's fill.
	s := compile(t, fixtures.Spec{Name: "a100", Product: "NVIDIA A100-SXM4-40GB", GPUs: 2, MIG: balanced40})
	r3 := s.node.resources[s.node.resIndex["nvidia.com/mig-3g.20gb"]]
	if err := s.Apply([]ResourceDevices{{"nvidia.com/mig-3g.20gb", []string{s.node.units[r3.units[0]].deviceID}}}); err != nil {
		t.Fatal(err)
	}
	got, _, _ := s.busyness(req("nvidia.com/mig-1g.5gb", 1))
	want := (3.0/7 + 3.0/7 + 0 + 0) / 4
	if math.Abs(got-want) > 1e-9 {
		t.Fatalf("GPU term %v, want %v", got, want)
	}
}

func TestFragmentationAwareKeepsRoomForCommonRequests(t *testing.T) {
	// The cluster mostly runs 2-GPU pods. Node A has 3 free GPUs, node B 2.
	// A 1-GPU pod on B would strand B's last GPU for the common 2-GPU pods;
	// on A it leaves 2, which still fit one. Binpack picks B; FGD picks A.
	a := compile(t, fixtures.Spec{Name: "a", Product: "NVIDIA H200", GPUs: 4})
	occupy(t, a, "nvidia.com/gpu", map[int]int{0: 1})
	b := compile(t, fixtures.Spec{Name: "b", Product: "NVIDIA H200", GPUs: 4})
	occupy(t, b, "nvidia.com/gpu", map[int]int{0: 1, 1: 1})
	learner := NewMixLearner(100, 16)
	for i := 0; i < 9; i++ {
		learner.Observe(req("nvidia.com/gpu", 2))
	}
	learner.Observe(req("nvidia.com/gpu", 1))
	mix := learner.Snapshot(0)
	one := req("nvidia.com/gpu", 1)
	fgd := &Scorer{Strategy: FragmentationAware, Mix: mix}
	if sa, sb := fgd.Score(a, one), fgd.Score(b, one); sa <= sb {
		t.Fatalf("fragmentation-aware A %v <= B %v", sa, sb)
	}
	bp := &Scorer{Strategy: Binpack}
	if sa, sb := bp.Score(a, one), bp.Score(b, one); sa >= sb {
		t.Fatalf("binpack A %v >= B %v", sa, sb)
	}
	// Expected values: on B, the 2-GPU class can no longer use the one GPU
	// left, the 1-GPU class still can: F rises by the 2-GPU class's weight.
	// On A, F stays 0 for both classes => score 0.
	w2 := mix.Classes[0].Weight
	if mix.Classes[0].Resources[0].Count != 2 || w2 < 0.8 {
		t.Fatalf("mix %+v", mix.Classes)
	}
	if got := fgd.Score(b, one); math.Abs(got+w2) > 1e-9 {
		t.Fatalf("FGD score on B %v, want %v", got, -w2)
	}
	if got := fgd.Score(a, one); math.Abs(got) > 1e-9 {
		t.Fatalf("FGD score on A %v, want 0", got)
	}
}

// TestFragmentationGainMatchesDefinition recomputes the FGD gain from the
// public usage figures for random states and mixes.
func TestFragmentationGainMatchesDefinition(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	s := compile(t, fixtures.Spec{Name: "a100", Product: "NVIDIA A100-SXM4-40GB", GPUs: 4, MIG: balanced40})
	names := s.node.Resources()
	weight := map[string]float64{}
	for _, r := range s.node.resources {
		weight[r.name] = r.weight
	}
	stranded := func(free map[string]int, m *Mix) float64 {
		total := 0.0
		for name, f := range free {
			total += float64(f) * weight[name]
		}
		out := 0.0
		for _, c := range m.Classes {
			fits, usable := true, 0.0
			for _, rc := range c.Resources {
				if free[rc.Name] < rc.Count {
					fits = false
				}
				usable += float64(free[rc.Name]) * weight[rc.Name]
			}
			if !fits {
				usable = 0
			}
			out += c.Weight * (total - usable)
		}
		return out
	}
	checked := 0
	for iter := 0; iter < 200; iter++ {
		st := s.Clone()
		for k := rng.Intn(8); k > 0; k-- {
			if p, v := st.Place(req(names[rng.Intn(len(names))], 1)); v.OK() {
				if err := st.Apply(p.Devices()); err != nil {
					t.Fatal(err)
				}
			}
		}
		l := NewMixLearner(50, 8)
		for k := 1 + rng.Intn(6); k > 0; k-- {
			l.Observe(req(names[rng.Intn(len(names))], 1+rng.Intn(2)))
		}
		mix := l.Snapshot(0)
		r := req(names[rng.Intn(len(names))], 1)
		if !st.Check(r).OK() {
			continue
		}
		free := map[string]int{}
		for _, u := range st.Usage() {
			free[u.Resource] = u.Free
		}
		before := stranded(free, mix)
		free[r.Effective[0].Name]--
		want := before - stranded(free, mix)
		if got := (&Scorer{Strategy: FragmentationAware, Mix: mix}).Score(st, r); math.Abs(got-want) > 1e-9 {
			t.Fatalf("iter %d: gain %v, definition %v", iter, got, want)
		}
		checked++
	}
	if checked < 100 {
		t.Fatalf("only %d cases checked", checked)
	}
}

func TestScorerValidate(t *testing.T) {
	for _, st := range Strategies {
		if err := (&Scorer{Strategy: st}).Validate(); err != nil {
			t.Errorf("%s: %v", st, err)
		}
	}
	if err := (&Scorer{Strategy: "most"}).Validate(); err == nil {
		t.Error("unknown strategy accepted")
	}
	if err := (&Scorer{Strategy: Binpack, GPUWeight: -1}).Validate(); err == nil {
		t.Error("negative weight accepted")
	}
}

func TestScoreDoesNotAllocate(t *testing.T) {
	s := compile(t, timeSliced(topology.PolicyPacked, 8, 4))
	learner := NewMixLearner(10, 8)
	learner.Observe(req("nvidia.com/gpu", 1))
	learner.Observe(req("nvidia.com/gpu", 3))
	r := req("nvidia.com/gpu", 2)
	for _, st := range Strategies {
		sc := &Scorer{Strategy: st, Mix: learner.Snapshot(0)}
		if a := testing.AllocsPerRun(50, func() { _ = sc.Score(s, r) }); a != 0 {
			t.Errorf("%s allocates %v times", st, a)
		}
	}
}

func TestMixLearnerDecaysAndForgets(t *testing.T) {
	l := NewMixLearner(10, 2)
	a, b, c := req("nvidia.com/gpu", 1), req("nvidia.com/gpu", 2), req("nvidia.com/mig-1g.5gb", 1)
	for i := 0; i < 10; i++ {
		l.Observe(a)
	}
	for i := 0; i < 10; i++ {
		l.Observe(b)
	}
	m := l.Snapshot(0)
	if len(m.Classes) != 2 || m.Classes[0].Resources[0].Count != 2 {
		t.Fatalf("recent class should weigh most: %+v", m.Classes)
	}
	// Ten observations later, the first class weighs half as much per
	// observation: shares 1/3 and 2/3.
	if w := m.Classes[0].Weight; math.Abs(w-2.0/3) > 0.02 {
		t.Fatalf("weight %v, want ~2/3", w)
	}
	l.Observe(c) // at capacity: the lightest (a) is forgotten
	m = l.Snapshot(0)
	for _, cl := range m.Classes {
		if cl.Resources[0].Name == "nvidia.com/gpu" && cl.Resources[0].Count == 1 {
			t.Fatalf("lightest class kept: %+v", m.Classes)
		}
	}
	sum := 0.0
	for _, cl := range m.Classes {
		sum += cl.Weight
	}
	if math.Abs(sum-1) > 1e-9 {
		t.Fatalf("weights sum to %v", sum)
	}
	l.Observe(&podrequest.Request{})
	if got := len(l.Snapshot(0).Classes); got != 2 {
		t.Fatalf("empty request changed the mix: %d classes", got)
	}
	// Many observations must not overflow.
	for i := 0; i < 20000; i++ {
		l.Observe(b)
	}
	for _, cl := range l.Snapshot(0).Classes {
		if math.IsNaN(cl.Weight) || math.IsInf(cl.Weight, 0) {
			t.Fatalf("weight %v after long run", cl.Weight)
		}
	}
}

// Between empty nodes, binpack sends a pod where its kind of device is
// scarce: a 1g.5gb pod opens an all-balanced A100 (two 1g.5gb per GPU)
// rather than an all-1g.5gb one (seven per GPU).
func TestBinpackPrefersScarceResourceAmongEmptyNodes(t *testing.T) {
	sc := &Scorer{Strategy: Binpack}
	balanced := compile(t, fixtures.Spec{Name: "balanced", Product: "NVIDIA A100-SXM4-40GB", GPUs: 2, MIG: balanced40})
	ones := compile(t, fixtures.Spec{Name: "ones", Product: "NVIDIA A100-SXM4-40GB", GPUs: 2, MIG: []string{"1g.5gb", "1g.5gb", "1g.5gb", "1g.5gb", "1g.5gb", "1g.5gb", "1g.5gb"}})
	r := req("nvidia.com/mig-1g.5gb", 1)
	if b, o := sc.Score(balanced, r), sc.Score(ones, r); b <= o {
		t.Errorf("empty all-balanced %v <= empty all-1g %v", b, o)
	}
}
