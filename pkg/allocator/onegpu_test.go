package allocator

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/gpuslice/gpuslice/pkg/topology"
	"github.com/gpuslice/gpuslice/pkg/topology/fixtures"
)

func shareNode(t testing.TB, gpus int, policy topology.AllocationPolicy) *State {
	t.Helper()
	return compile(t, fixtures.Spec{Name: "share", Product: "Tesla V100-SXM2-32GB", MemoryMiB: 32768, GPUs: gpus, Replicas: 1000, Policy: policy, OneGPUPerRequest: true})
}

const gpuRes = topology.ResourceGPU

func TestOneGPUPlacesShareOnOneGPU(t *testing.T) {
	s := shareNode(t, 2, topology.PolicyPacked)
	if got := perGPU(t, s, place(t, s, req(gpuRes, 600))); len(got) != 1 || got[0] != 600 {
		t.Fatalf("first 600 share: %v, want all on GPU 0", got)
	}
	if got := perGPU(t, s, place(t, s, req(gpuRes, 600))); len(got) != 1 || got[1] != 600 {
		t.Fatalf("second 600 share: %v, want all on GPU 1 (GPU 0 has 400 free)", got)
	}
	// 500 free in all, but no GPU has 500: NVIDIA's plugin would split it.
	v := s.Check(req(gpuRes, 500))
	if v.Code != NoGPUFits || v.Unresolvable() {
		t.Fatalf("500 on 400+400 free: %+v, want resolvable NoGPUFits", v)
	}
	if !strings.Contains(v.Reason(), "no single GPU has 500 free nvidia.com/gpu (most free on one GPU: 400 of 1000)") {
		t.Fatalf("reason %q", v.Reason())
	}
	if p, v := s.Place(req(gpuRes, 500)); p != nil || v.OK() {
		t.Fatalf("Place of a request no GPU fits: %v %+v", p, v)
	}
}

func TestOneGPUPolicyPicksGPU(t *testing.T) {
	for _, tc := range []struct {
		policy topology.AllocationPolicy
		want   int
	}{
		{topology.PolicyPacked, 1},      // best fit: 300 free beats 700 and 1000
		{topology.PolicyDistributed, 2}, // emptiest
	} {
		s := shareNode(t, 3, tc.policy)
		occupy(t, s, gpuRes, map[int]int{0: 300, 1: 700})
		got := perGPU(t, s, place(t, s, req(gpuRes, 250)))
		if len(got) != 1 || got[tc.want] != 250 {
			t.Errorf("%s: 250 share landed %v, want GPU %d", tc.policy, got, tc.want)
		}
	}
}

func TestOneGPUWholeGPUs(t *testing.T) {
	s := shareNode(t, 4, topology.PolicyPacked)
	occupy(t, s, gpuRes, map[int]int{1: 1})
	got := perGPU(t, s, place(t, s, req(gpuRes, 2000)))
	if len(got) != 2 || got[0] != 1000 || got[2] != 1000 {
		t.Fatalf("2 whole GPUs with GPU 1 partly used: %v, want GPUs 0 and 2", got)
	}
	s2 := shareNode(t, 4, topology.PolicyPacked)
	occupy(t, s2, gpuRes, map[int]int{0: 1, 1: 1})
	if v := s2.Check(req(gpuRes, 3000)); v.Code != NoWholeGPUs || v.Need != 3 || v.Free != 2 || v.Unresolvable() {
		t.Fatalf("3 whole GPUs with 2 unused: %+v", v)
	}
	if v := s.Check(req(gpuRes, 1500)); v.Code != NotWholeGPUs || !v.Unresolvable() {
		t.Fatalf("1.5 GPUs: %+v, want unresolvable NotWholeGPUs", v)
	}
	if v := s.Check(req(gpuRes, 5000)); v.Code != ExceedsNode {
		t.Fatalf("5 GPUs on a 4-GPU node: %+v", v)
	}
}

func TestOneGPURejectsUnsharedResources(t *testing.T) {
	cat := topology.NewCatalog()
	topo := fixtures.MustBuild(cat, fixtures.Spec{Name: "mig", Product: "NVIDIA A100-SXM4-40GB", GPUs: 1, MIG: balanced40})
	topo.TimeSlicing = &topology.TimeSlicing{OneGPUPerRequest: true, Resources: []topology.SharedResource{{Name: "nvidia.com/mig-1g.5gb", Replicas: 2}}}
	if _, err := Compile(topo, cat, topology.PolicyPacked); err == nil || !strings.Contains(err.Error(), "every advertised resource time-sliced") {
		t.Fatalf("compile: %v", err)
	}
}

// TestOneGPURandomChurn places and releases random requests and checks that
// no request is ever split, that Check and Place agree, and that Apply
// never finds a device taken.
func TestOneGPURandomChurn(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, policy := range []topology.AllocationPolicy{topology.PolicyPacked, topology.PolicyDistributed} {
		s := shareNode(t, 8, policy)
		var held []*Placement
		for step := 0; step < 3000; step++ {
			if len(held) > 0 && rng.IntN(3) == 0 {
				i := rng.IntN(len(held))
				if err := s.Release(held[i].Devices()); err != nil {
					t.Fatal(err)
				}
				held = append(held[:i], held[i+1:]...)
				continue
			}
			count := 1 + rng.IntN(999)
			if rng.IntN(4) == 0 {
				count = 1000 * (1 + rng.IntN(3))
			}
			r := req(gpuRes, count)
			v := s.Check(r)
			p, pv := s.Place(r)
			if v.OK() != pv.OK() || (p != nil) != v.OK() {
				t.Fatalf("step %d: Check %+v but Place %v %+v", step, v, p != nil, pv)
			}
			if p == nil {
				continue
			}
			split := perGPU(t, s, p)
			for gi, k := range split {
				if (count <= 1000 && len(split) != 1) || (count > 1000 && k != 1000) {
					t.Fatalf("step %d: %d replicas split as %v (GPU %d)", step, count, split, gi)
				}
			}
			if err := s.Apply(p.Devices()); err != nil {
				t.Fatalf("step %d: %v", step, err)
			}
			held = append(held, p)
		}
	}
}

// fgdFrag is the FGD paper's fragmentation of a node for one task, from
// per-GPU free shares, written independently of the allocator.
func fgdFrag(free []int, need int) float64 {
	total := 0
	for _, f := range free {
		total += f
	}
	if need > 1000 {
		whole := 0
		for _, f := range free {
			if f == 1000 {
				whole++
			}
		}
		if whole < need/1000 {
			return float64(total)
		}
		frag := 0
		for _, f := range free {
			if f < 1000 {
				frag += f
			}
		}
		return float64(frag)
	}
	fits, frag := false, 0
	for _, f := range free {
		if f >= need {
			fits = true
		} else {
			frag += f
		}
	}
	if !fits {
		return float64(total)
	}
	return float64(frag)
}

func TestOneGPUFragmentationMatchesFGD(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	mixNeeds := []int{200, 500, 1000, 2000}
	mix := &Mix{}
	for _, n := range mixNeeds {
		mix.Classes = append(mix.Classes, MixClass{Resources: req(gpuRes, n).Effective, Weight: 1 / float64(len(mixNeeds))})
	}
	sc := Scorer{Strategy: FragmentationAware, Mix: mix}
	for trial := 0; trial < 200; trial++ {
		s := shareNode(t, 4, topology.PolicyPacked)
		used := map[int]int{}
		for g := 0; g < 4; g++ {
			if k := []int{0, 0, 300, 500, 800, 1000}[rng.IntN(6)]; k > 0 {
				used[g] = k
			}
		}
		occupy(t, s, gpuRes, used)
		need := []int{100, 400, 700, 1000}[rng.IntN(4)]
		r := req(gpuRes, need)
		p, v := s.Place(r)
		if !v.OK() {
			continue
		}
		free := make([]int, 4)
		for g := range free {
			free[g] = 1000 - used[g]
		}
		after := append([]int(nil), free...)
		for g, k := range perGPU(t, s, p) {
			after[g] -= k
		}
		want := 0.0
		for _, n := range mixNeeds {
			want += (fgdFrag(free, n) - fgdFrag(after, n)) / float64(len(mixNeeds))
		}
		want /= 1000 // GPU-equivalents
		if got := sc.Score(s, r); math.Abs(got-want) > 1e-9 {
			t.Fatalf("trial %d: used %v, %d placed as %v: score %v, want FGD gain %v", trial, used, need, perGPU(t, s, p), got, want)
		}
	}
}
