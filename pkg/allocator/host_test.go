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
	mix := &Mix{Classes: []MixClass{{Resources: req(gpuRes, 500).Effective, Host: Host{MilliCPU: 4000, MemBytes: 8 << 30}, Weight: 1}}}
	sc := Scorer{Strategy: FragmentationAware, Mix: mix}
	cpuOnly := &podrequest.Request{}
	for _, tc := range []struct {
		name    string
		s       *State
		freeCPU int64
		want    float64
	}{
		// 6 CPUs host one more pod of the class (1.5 GPUs stranded); after
		// the CPU-only pod none (all 2 stranded).
		{"one-GPU mode, CPU runs out", shareNode(t, 2, topology.PolicyPacked), 6000, -0.5},
		{"one-GPU mode, CPU to spare", shareNode(t, 2, topology.PolicyPacked), 20000, 0},
		{"replica mode, CPU runs out", compileTS(t), 6000, -0.5},
		// 10 CPUs host two (1 stranded), then one (1.5 stranded).
		{"one-GPU mode, CPU for two", shareNode(t, 2, topology.PolicyPacked), 10000, -0.5},
	} {
		h := HostFit{Pod: Host{MilliCPU: 4000, MemBytes: 1 << 30}, NodeFree: Host{MilliCPU: tc.freeCPU, MemBytes: 64 << 30}, Known: true}
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
	// with the same share but 6 CPUs leaves no slot: 1.5 stranded.
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
