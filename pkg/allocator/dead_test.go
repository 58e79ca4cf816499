package allocator

import (
	"math"
	"sync"
	"testing"

	"github.com/gpuslice/gpuslice/pkg/topology"
)

// A device of 10 replicas; half the pods ask for 4 replicas, the other
// half for one device or three (whole devices). A piece of 1-3 fits
// nothing and stays idle; 4 and 8 are filled exactly; 5-7 and 9 leave 1-3;
// a whole device takes a whole-device pod (nothing left) or a 4 (leaving
// 6, then 2): 1 replica idle on average.
func TestDeadTable(t *testing.T) {
	class := func(n int, w float64) MixClass { return MixClass{Resources: req(gpuRes, n).Effective, Weight: w} }
	mix := &Mix{Classes: []MixClass{class(4, 0.5), class(10, 0.25), class(30, 0.25)}, dead: &deadTables{}}
	want := []float64{0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 1}
	got := mix.deadTable(gpuRes, 10)
	if len(got) != len(want) {
		t.Fatalf("table %v, want %v", got, want)
	}
	for f := range want {
		if math.Abs(got[f]-want[f]) > 1e-12 {
			t.Errorf("dead space of %d free: %v, want %v", f, got[f], want[f])
		}
	}
	if again := mix.deadTable(gpuRes, 10); &again[0] != &got[0] {
		t.Error("the table of one mix was built twice")
	}
	// Without a cache (a Mix literal) it is built, the same.
	bare := &Mix{Classes: mix.Classes}
	if b := bare.deadTable(gpuRes, 10); len(b) != len(want) || b[10] != got[10] {
		t.Errorf("uncached table %v, want %v", b, got)
	}
	for _, tc := range []struct {
		name     string
		mix      *Mix
		res      string
		replicas int32
	}{
		{"no mix", nil, gpuRes, 10},
		{"no class of the resource", mix, "example.com/other", 10},
		{"no replicas", mix, gpuRes, 0},
		{"too many replicas", mix, gpuRes, maxDeadReplicas + 1},
		{"only weightless classes", &Mix{Classes: []MixClass{class(4, 0)}}, gpuRes, 10},
		{"only classes of two resources", &Mix{Classes: []MixClass{{Resources: req(gpuRes, 4, "example.com/other", 1).Effective, Weight: 1}}}, gpuRes, 10},
	} {
		if got := tc.mix.deadTable(tc.res, tc.replicas); got != nil {
			t.Errorf("%s: table %v, want none", tc.name, got)
		}
	}
}

// openb-like shares: a 0.32 pod beside a 0.47 pod leaves 0.21, which no
// class fits, where another 0.47 pod would leave 0.06. The dead
// space term charges that 0.32 pod more there than on an untouched GPU,
// whose 0.68 gap a 0.65 or two more 0.32 pods fill, and credits it most in
// a 0.35 gap beside a 0.65 pod.
func TestDeadGainPrefersGapsThatFillWell(t *testing.T) {
	class := func(n int, w float64) MixClass { return MixClass{Resources: req(gpuRes, n).Effective, Weight: w} }
	mix := &Mix{Classes: []MixClass{class(1000, 0.5), class(810, 0.14), class(470, 0.1), class(320, 0.05), class(650, 0.04), class(230, 0.02), class(460, 0.02)}}
	gain := func(used, pod int) float64 {
		s := shareNode(t, 2, topology.PolicyPacked)
		occupy(t, s, gpuRes, map[int]int{0: used, 1: 1000})
		var buf [8]unitDelta
		deltas, ok := s.oneGPUDeltas(req(gpuRes, pod), buf[:])
		if !ok {
			t.Fatalf("%d pod does not fit beside %d", pod, used)
		}
		return freeView{s: s, units: deltas}.deadGain(1, mix)
	}
	beside470, untouched, beside650 := gain(470, 320), gain(0, 320), gain(650, 320)
	if !(beside650 > untouched && untouched > beside470) {
		t.Errorf("0.32 pod: dead-space gain beside 0.65 %v, on an untouched GPU %v, beside 0.47 %v; want them in that order", beside650, untouched, beside470)
	}
	// Beside a 0.47 pod, a 0.47 pod (leaving 0.06) beats a 0.32 pod
	// (leaving 0.21), by the tables' difference.
	t0 := mix.deadTable(gpuRes, 1000)
	if got, want := gain(470, 470), (t0[530]-t0[60])/1000; math.Abs(got-want) > 1e-12 || got <= beside470 {
		t.Errorf("0.47 beside 0.47: gain %v, want %v, above the 0.32 pod's %v", got, want, beside470)
	}
	// No class fits a 0.19 sliver: a 0.16 pod, of a class too rare for the
	// mix, turns 0.19 of dead space into 0.03.
	if got := gain(810, 160); math.Abs(got-0.16) > 1e-12 {
		t.Errorf("0.16 pod in a 0.19 sliver: gain %v, want 0.16", got)
	}
	// Weight 0 or no mix: no term.
	s := shareNode(t, 1, topology.PolicyPacked)
	deltas := []unitDelta{{unit: s.node.resources[s.node.resIndex[gpuRes]].units[0], count: 320}}
	if g := (freeView{s: s, units: deltas}).deadGain(0, mix); g != 0 {
		t.Errorf("weight 0: gain %v", g)
	}
	if g := (freeView{s: s, units: deltas}).deadGain(1, nil); g != 0 {
		t.Errorf("no mix: gain %v", g)
	}
}

// One cycle's mix is scored by many goroutines at once: they share one
// table per resource and replica count, built once (go test -race).
func TestDeadTableConcurrent(t *testing.T) {
	class := func(n int, w float64) MixClass { return MixClass{Resources: req(gpuRes, n).Effective, Weight: w} }
	mix := &Mix{Classes: []MixClass{class(470, 0.4), class(320, 0.2), class(1000, 0.4)}, dead: &deadTables{}}
	const workers = 8
	got := make(chan *float64, 2*workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, r := range []int32{1000, 4} {
				got <- &mix.deadTable(gpuRes, r)[0]
			}
		}()
	}
	wg.Wait()
	close(got)
	seen := map[*float64]int{}
	for p := range got {
		seen[p]++
	}
	if len(seen) != 2 {
		t.Errorf("%d distinct tables for 2 keys", len(seen))
	}
}
