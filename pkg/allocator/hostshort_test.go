package allocator

import (
	"math"
	"testing"

	"github.com/gpuslice/gpuslice/pkg/podrequest"
	"github.com/gpuslice/gpuslice/pkg/topology"
)

// The host shortfall of a node with 2 free GPUs, for a mix whose one class
// asks for half a GPU and 4 CPUs (8 CPUs and 16 GiB per GPU): the GPU
// capacity the free CPU cannot serve at that rate, and how a placement
// changes it.
func TestHostShortGain(t *testing.T) {
	mix := halfGPUMix()
	for _, tc := range []struct {
		name            string
		r               *podrequest.Request
		freeCPU, podCPU int64
		want            float64
	}{
		// 6 CPUs serve 0.75 GPU (1.25 short); after 4 are taken, 2 serve
		// 0.25 (1.75 short).
		{"CPU-only pod, CPU short", cpuOnly, 6000, 4000, -0.5},
		// 20 CPUs serve 2.5 GPUs, 16 serve 2: never short.
		{"CPU-only pod, CPU to spare", cpuOnly, 20000, 4000, 0},
		// A pod of the class takes half a GPU and its 4 CPUs: 1 GPU short
		// before and after.
		{"GPU pod at the mix's rate", req(gpuRes, 500), 8000, 4000, 0},
		// With 6 CPUs for half a GPU it leaves 2 CPUs for 1.5 GPUs.
		{"GPU pod above the rate", req(gpuRes, 500), 8000, 6000, -0.25},
		// With 1 CPU it leaves 7 for 1.5 GPUs: it relieves the node.
		{"GPU pod below the rate", req(gpuRes, 500), 8000, 1000, 0.375},
	} {
		s := shareNode(t, 2, topology.PolicyPacked)
		h := cpuHost(tc.podCPU, tc.freeCPU)
		off := Scorer{Strategy: FragmentationAware, Mix: mix}
		on := off
		on.HostShortfall = 1
		if got := on.ScoreHost(s, tc.r, h) - off.ScoreHost(s, tc.r, h); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("%s: shortfall gain %v, want %v", tc.name, got, tc.want)
		}
		// Without host information there is no shortfall.
		if got, want := on.Score(s, tc.r), off.Score(s, tc.r); got != want {
			t.Errorf("%s: without host %v, want %v", tc.name, got, want)
		}
	}
}

// Two nodes whose GPUs are both half used, so that the mix's one class (a
// whole GPU and 8 CPUs) fits neither: class by class, a CPU-only pod
// strands nothing on either. But the free halves will be filled by pods of
// the mix at about 8 CPUs per GPU. With the shortfall counted, the pod
// takes the cores of the node that has them to spare, not those of the
// node whose free halves need them.
func TestHostShortfallSteersCPUOnlyPods(t *testing.T) {
	mix := &Mix{Classes: []MixClass{{Resources: req(gpuRes, 1000).Effective, Host: Host{MilliCPU: 8000}, Weight: 1}}}
	tight, roomy := shareNode(t, 2, topology.PolicyPacked), shareNode(t, 2, topology.PolicyPacked)
	occupy(t, tight, gpuRes, map[int]int{0: 500, 1: 500})
	occupy(t, roomy, gpuRes, map[int]int{0: 500, 1: 500})
	pod := Host{MilliCPU: 4000}
	hTight := HostFit{Pod: pod, NodeFree: Host{MilliCPU: 6000, MemBytes: 64 << 30}, Known: true}
	hRoomy := HostFit{Pod: pod, NodeFree: Host{MilliCPU: 40000, MemBytes: 64 << 30}, Known: true}
	cpuOnly := &podrequest.Request{}

	off := Scorer{Strategy: FragmentationAware, Mix: mix}
	if a, b := off.ScoreHost(tight, cpuOnly, hTight), off.ScoreHost(roomy, cpuOnly, hRoomy); a != 0 || b != 0 {
		t.Fatalf("class by class: tight %v, roomy %v; want 0 for both (the class fits neither)", a, b)
	}
	on := off
	on.HostShortfall = 1
	a, b := on.ScoreHost(tight, cpuOnly, hTight), on.ScoreHost(roomy, cpuOnly, hRoomy)
	// 1 GPU free: 6 CPUs serve 0.75 (0.25 short), 2 serve 0.25 (0.75 short).
	if math.Abs(a-(-0.5)) > 1e-9 || b != 0 {
		t.Errorf("with the shortfall: tight %v, roomy %v; want -0.5 and 0", a, b)
	}
}

// A class the node does not advertise, or a mix that asks for no CPU or
// memory, gives no rate: no shortfall.
func TestHostShortfallNeedsARate(t *testing.T) {
	s := shareNode(t, 2, topology.PolicyPacked)
	h := HostFit{Pod: Host{MilliCPU: 4000}, NodeFree: Host{MilliCPU: 1000}, Known: true}
	for name, mix := range map[string]*Mix{
		"other resource": {Classes: []MixClass{{Resources: req("nvidia.com/mig-1g.5gb", 1).Effective, Host: Host{MilliCPU: 8000}, Weight: 1}}},
		"no host":        {Classes: []MixClass{{Resources: req(gpuRes, 1000).Effective, Weight: 1}}},
	} {
		if got := s.hostShortGain(1, mix, &podrequest.Request{}, h, 2, 2); got != 0 {
			t.Errorf("%s: gain %v, want 0", name, got)
		}
	}
	// Without a mix the pod stands for it; a CPU-only pod has no rate.
	if got := s.hostShortGain(1, nil, &podrequest.Request{}, h, 2, 2); got != 0 {
		t.Errorf("CPU-only pod without a mix: gain %v, want 0", got)
	}
	// A GPU pod without a mix: its own rate (4 CPUs per half GPU, 8 per
	// GPU). 1 CPU serves 0.125 of the 2 free GPUs (1.875 short); the pod
	// cannot take 4 of 1 CPUs, but the gain is still defined: after, 0
	// CPUs for 1.5 GPUs (1.5 short).
	if got := s.hostShortGain(1, nil, req(gpuRes, 500), h, 2, 1.5); math.Abs(got-0.375) > 1e-9 {
		t.Errorf("GPU pod without a mix: gain %v, want 0.375", got)
	}
}
