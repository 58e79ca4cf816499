package allocator

import (
	"math"
	"testing"

	"github.com/gpuslice/gpuslice/pkg/podrequest"
	"github.com/gpuslice/gpuslice/pkg/topology"
)

// A pod that takes the CPU a GPU class needs strands the node's free GPUs
// for that class; with CPU to spare it strands nothing. The class asks for
// half a GPU and 4 CPUs; the node has 2 GPUs free.
func TestFragmentationCountsHostResources(t *testing.T) {
	mix := halfGPUMix()
	sc := Scorer{Strategy: FragmentationAware, Mix: mix}
	for _, tc := range []struct {
		name            string
		s               *State
		freeCPU, podCPU int64
		want            float64
	}{
		// 6 CPUs host 1.5 more pods of the class (1.25 GPUs stranded);
		// after the CPU-only pod, 2 CPUs host none (all 2 stranded).
		{"one-GPU mode, CPU runs out", shareNode(t, 2, topology.PolicyPacked), 6000, 4000, -0.75},
		{"one-GPU mode, CPU to spare", shareNode(t, 2, topology.PolicyPacked), 20000, 4000, 0},
		{"replica mode, CPU runs out", compileTS(t), 6000, 4000, -0.75},
		// 10 CPUs host 2.5 (0.75 stranded), then 1.5 (1.25 stranded).
		{"one-GPU mode, CPU for two", shareNode(t, 2, topology.PolicyPacked), 10000, 4000, -0.5},
		// Where CPU binds the class, every core taken costs its share: 14
		// CPUs host 3.5 (0.25 stranded), 12 host 3 (0.5 stranded), though
		// the whole pods the node can host stay 3.
		{"one-GPU mode, two cores", shareNode(t, 2, topology.PolicyPacked), 14000, 2000, -0.25},
		// Where the GPUs bind it, CPU costs nothing: 20 CPUs host 5, the
		// GPUs 4.
		{"one-GPU mode, two cores to spare", shareNode(t, 2, topology.PolicyPacked), 20000, 2000, 0},
	} {
		h := cpuHost(tc.podCPU, tc.freeCPU)
		if got := sc.ScoreHost(tc.s, cpuOnly, h); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("%s: gain %v, want %v", tc.name, got, tc.want)
		}
		// Without host information CPU-only pods change nothing.
		if got := sc.Score(tc.s, cpuOnly); got != 0 {
			t.Errorf("%s: gain without host %v, want 0", tc.name, got)
		}
	}
	// 8 CPUs host two pods of the class (1 GPU stranded). A GPU pod of the
	// class takes one of the two slots: still 1 stranded, gain 0. A pod
	// with the same share but 6 CPUs leaves less than a slot: 1.5 stranded.
	s := shareNode(t, 2, topology.PolicyPacked)
	h := HostFit{Pod: Host{MilliCPU: 4000}, NodeFree: Host{MilliCPU: 8000, MemBytes: 64 << 30}, Known: true}
	if got, want := sc.ScoreHost(s, req(gpuRes, 500), h), 0.0; math.Abs(got-want) > 1e-9 {
		t.Errorf("GPU pod of the class: gain %v, want %v", got, want)
	}
	h.Pod.MilliCPU = 6000
	if got, want := sc.ScoreHost(s, req(gpuRes, 500), h), -0.5; math.Abs(got-want) > 1e-9 {
		t.Errorf("GPU pod taking the CPU of two: gain %v, want %v", got, want)
	}
}

func TestTieBreakPrefersBusierNode(t *testing.T) {
	sc := Scorer{Strategy: FragmentationAware, TieBreak: 1e-3}
	busy, idle := shareNode(t, 4, topology.PolicyPacked), shareNode(t, 4, topology.PolicyPacked)
	occupy(t, busy, gpuRes, map[int]int{0: 1000})
	r := req(gpuRes, 1000)
	if b, i := sc.Score(busy, r), sc.Score(idle, r); b <= i {
		t.Errorf("whole GPU: busy node %v, idle node %v; the tie should go to the busy node", b, i)
	}
}

func TestMixLearnerBucketsHost(t *testing.T) {
	l := NewMixLearner(100, 8)
	l.ObserveHost(req(gpuRes, 1), Host{MilliCPU: 3100, MemBytes: 5 << 29})
	l.ObserveHost(req(gpuRes, 1), Host{MilliCPU: 3400, MemBytes: 3 << 30})
	m := l.Snapshot(0)
	if len(m.Classes) != 1 {
		t.Fatalf("classes %+v, want one (same buckets)", m.Classes)
	}
	if h := m.Classes[0].Host; h.MilliCPU != 3500 || h.MemBytes != 3<<30 {
		t.Errorf("class host %+v, want the top of the buckets (3500m, 3Gi)", h)
	}
}

func compileTS(t *testing.T) *State {
	t.Helper()
	// The same node without one-GPU-per-request.
	clone := *shareNode(t, 2, topology.PolicyPacked).node
	clone.oneGPU = false
	return NewState(&clone)
}

func TestMixLearnerObserveOnce(t *testing.T) {
	l := NewMixLearner(1000, 8)
	for i := 0; i < 5; i++ {
		l.ObserveOnce("retried", req(gpuRes, 1), Host{})
	}
	l.ObserveOnce("other", req(gpuRes, 2), Host{})
	m := l.Snapshot(0)
	if len(m.Classes) != 2 || math.Abs(m.Classes[0].Weight-m.Classes[1].Weight) > 0.01 {
		t.Fatalf("a pod retried five times counted more than once: %+v", m.Classes)
	}
	l.ObserveOnce("cpu-only", &podrequest.Request{}, Host{MilliCPU: 1000})
	if got := len(l.Snapshot(0).Classes); got != 2 {
		t.Errorf("CPU-only pod joined the mix: %d classes", got)
	}
}

// Classes are kept by their share of device demand, weighed by their share
// of pods: a rare pod that asks for a whole node stays in the mix.
func TestMixKeepsClassesByDemand(t *testing.T) {
	l := NewMixLearner(1<<20, 8)
	for i := 0; i < 200; i++ {
		l.ObserveHost(req(gpuRes, 1), Host{})
	}
	l.ObserveHost(req(gpuRes, 8), Host{})
	// 1 pod in 201 (0.5 %), but 8 devices in 208 (3.8 %) of the demand.
	m := l.Snapshot(0.01)
	if len(m.Classes) != 2 {
		t.Fatalf("classes %+v, want the 8-device class kept", m.Classes)
	}
	big := m.Classes[1]
	if big.Resources[0].Count != 8 || math.Abs(big.Weight-1.0/201) > 1e-3 {
		t.Errorf("8-device class %+v, want weight 1/201 (its share of pods)", big)
	}
	if got := len(l.Snapshot(0.05).Classes); got != 1 {
		t.Errorf("%d classes over 5 %% of the demand, want 1", got)
	}

	// When the learner is full it forgets the class with the least demand.
	l = NewMixLearner(1<<20, 2)
	for i := 0; i < 10; i++ {
		l.ObserveHost(req(gpuRes, 1), Host{})
	}
	l.ObserveHost(req(gpuRes, 8), Host{})
	l.ObserveHost(req(gpuRes, 8), Host{})
	l.ObserveHost(req(gpuRes, 2), Host{}) // demand: 1-device 10, 8-device 16
	for _, c := range l.Snapshot(0).Classes {
		if c.Resources[0].Count == 1 {
			t.Errorf("kept the 1-device class (demand 10) over the 8-device one (demand 16): %+v", l.Snapshot(0).Classes)
		}
	}
}
