package allocator

import (
	"math"
	"testing"

	"github.com/gpuslice/gpuslice/pkg/topology"
)

// Two nodes, one with a 0.35-GPU gap, the other with a 0.25-GPU gap, and a
// 0.23-GPU pod: on the first it leaves 0.12, a sliver (under 0.2 GPU), on
// the second 0.02. The sliver term charges each leftover at its size, and
// credits what a pod fills of a sliver.
func TestSliverGain(t *testing.T) {
	class := func(n int, w float64) MixClass { return MixClass{Resources: req(gpuRes, n).Effective, Weight: w} }
	mix := &Mix{Classes: []MixClass{class(100, 0.05), class(230, 0.15), class(500, 0.3), class(1000, 0.5)}}
	gap := func(used int) *State {
		s := shareNode(t, 2, topology.PolicyPacked)
		occupy(t, s, gpuRes, map[int]int{0: used, 1: 1000})
		return s
	}
	for _, tc := range []struct {
		name string
		used int
		pod  int
		want float64
	}{
		{"0.35 gap, 0.23 pod leaves 0.12", 650, 230, -0.12},
		{"0.25 gap, 0.23 pod leaves 0.02", 750, 230, -0.02},
		// A 0.1 pod in a 0.19 sliver leaves 0.09: 0.1 less.
		{"0.19 sliver, 0.1 pod", 810, 100, 0.1},
		// A 0.1 pod in a 0.25 gap leaves 0.15, a sliver.
		{"0.25 gap, 0.1 pod", 750, 100, -0.15},
		// A 0.5 pod in a 0.5 gap leaves nothing.
		{"exact fit", 500, 500, 0},
	} {
		s := gap(tc.used)
		if !s.Check(req(gpuRes, tc.pod)).OK() {
			t.Fatalf("%s: the pod does not fit", tc.name)
		}
		off := Scorer{Strategy: FragmentationAware, Mix: mix}
		on := off
		on.Slivers = 2
		if got := on.Score(s, req(gpuRes, tc.pod)) - off.Score(s, req(gpuRes, tc.pod)); math.Abs(got-2*tc.want) > 1e-9 {
			t.Errorf("%s: sliver gain %v, want %v", tc.name, got, 2*tc.want)
		}
	}
	// On an unused node a 0.9 pod leaves a 0.1 sliver, a 0.5 pod none.
	for pod, want := range map[int]float64{900: -0.1, 500: 0} {
		s := shareNode(t, 2, topology.PolicyPacked)
		off := Scorer{Strategy: FragmentationAware, Mix: mix}
		on := off
		on.Slivers = 1
		if got := on.Score(s, req(gpuRes, pod)) - off.Score(s, req(gpuRes, pod)); math.Abs(got-want) > 1e-9 {
			t.Errorf("unused node, %d pod: sliver gain %v, want %v", pod, got, want)
		}
	}
}

func TestScorerValidateWeights(t *testing.T) {
	for _, sc := range []Scorer{
		{Strategy: FragmentationAware, Slivers: -1},
		{Strategy: FragmentationAware, HostShortfall: math.NaN()},
		{Strategy: FragmentationAware, TieBreak: math.Inf(1)},
		{Strategy: FragmentationAware, DeadSpace: -0.5},
		{Strategy: FragmentationAware, DeadSpace: math.NaN()},
	} {
		if err := sc.Validate(); err == nil {
			t.Errorf("%+v: no error", sc)
		}
	}
	if err := (&Scorer{Strategy: FragmentationAware, Slivers: 1, DeadSpace: 1, HostShortfall: 1, TieBreak: 1e-3}).Validate(); err != nil {
		t.Fatal(err)
	}
}
