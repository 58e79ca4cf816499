package allocator

import (
	"math"
	"testing"

	"github.com/gpuslice/gpuslice/pkg/topology"
)

func TestAddSupply(t *testing.T) {
	whole := MixClass{Resources: req(gpuRes, 2000).Effective, Host: Host{MilliCPU: 8000}, Weight: 0.1, Demand: 0.5}
	half := MixClass{Resources: req(gpuRes, 500).Effective, Host: Host{MilliCPU: 2000}, Weight: 0.9, Demand: 0.5}
	mix := &Mix{Classes: []MixClass{whole, half}}
	h := func(cpu int64) HostFit {
		return HostFit{NodeFree: Host{MilliCPU: cpu, MemBytes: 64 << 30}, Known: true}
	}

	sup := NewSupply(mix)
	// Two empty GPUs and CPU to spare: one 2-GPU pod, or four halves.
	shareNode(t, 2, topology.PolicyPacked).AddSupply(sup, mix, h(64000))
	// One GPU half used, the other full: no 2-GPU pod, one more half.
	s := shareNode(t, 2, topology.PolicyPacked)
	occupy(t, s, gpuRes, map[int]int{0: 500, 1: 1000})
	s.AddSupply(sup, mix, h(64000))
	// Empty GPUs, but CPU for 0.75 of a 2-GPU pod (none) and 3 halves.
	shareNode(t, 2, topology.PolicyPacked).AddSupply(sup, mix, h(6000))
	if want := (2.0 + 0.5 + 2.0); math.Abs(sup.Free-want) > 1e-9 {
		t.Errorf("free %v, want %v", sup.Free, want)
	}
	for i, want := range []float64{2, 2 + 0.5 + 1.5} {
		if math.Abs(sup.Capacity[i]-want) > 1e-9 {
			t.Errorf("class %d capacity %v, want %v", i, sup.Capacity[i], want)
		}
	}
	// A supply built for another mix is left alone.
	other := &Supply{Capacity: []float64{0}}
	shareNode(t, 2, topology.PolicyPacked).AddSupply(other, mix, h(64000))
	if other.Free != 0 || other.Capacity[0] != 0 {
		t.Errorf("supply of another mix changed: %+v", other)
	}
}

func TestScarceRaisesClassesShortOfSupply(t *testing.T) {
	mix := &Mix{Classes: []MixClass{
		{Resources: req(gpuRes, 8000).Effective, Weight: 0.01, Demand: 0.2},
		{Resources: req(gpuRes, 1000).Effective, Weight: 0.6, Demand: 0.6},
		{Resources: req(gpuRes, 500).Effective, Weight: 0.39, Demand: 0.2},
	}}
	// 100 GPUs free: the 8-GPU class will want 20 and has room for 16, the
	// 1-GPU class will want 60 and has 100, the halves 20 of 100.
	sup := &Supply{Free: 100, Capacity: []float64{16, 100, 100}}
	got := mix.Scarce(sup, 0.5)
	want := []float64{0.5, 0.6, 0.39}
	for i := range want {
		if math.Abs(got.Classes[i].Weight-want[i]) > 1e-9 {
			t.Errorf("class %d weight %v, want %v", i, got.Classes[i].Weight, want[i])
		}
	}
	if mix.Classes[0].Weight != 0.01 {
		t.Error("Scarce changed the mix it was given")
	}
	// Room for 40: demand is half the supply, the chance a quarter of beta.
	sup.Capacity[0] = 40
	if w := mix.Scarce(sup, 0.5).Classes[0].Weight; math.Abs(w-0.125) > 1e-9 {
		t.Errorf("half-used supply: weight %v, want 0.125", w)
	}
	for name, s := range map[string]*Supply{"beta 0": sup, "no free capacity": {Capacity: []float64{1, 1, 1}}, "other mix": {Free: 1, Capacity: []float64{1}}} {
		beta := 0.5
		if name == "beta 0" {
			beta = 0
		}
		if mix.Scarce(s, beta) != mix {
			t.Errorf("%s: want the mix unchanged", name)
		}
	}
}
