package openb

import (
	"math/rand/v2"
	"testing"
)

func TestBinsBounds(t *testing.T) {
	for _, tc := range []struct {
		name         string
		sizes        []int64
		lower, bestF int
	}{
		// Four items over half a bin need four bins, though they sum to 2.4.
		{"over half", []int64{600, 600, 600, 600}, 4, 4},
		{"pairs", []int64{600, 600, 600, 400, 400, 400}, 3, 3},
		// 810s leave 190: the 200s cannot join them.
		{"leftover too small", []int64{810, 810, 810, 200, 200, 200}, 4, 4},
		{"fillers", []int64{810, 810, 160, 160, 470, 470, 50}, 3, 3},
		{"empty", nil, 0, 0},
	} {
		if got := binsLowerBound(tc.sizes, 1000); got != tc.lower {
			t.Errorf("%s: lower bound %d, want %d", tc.name, got, tc.lower)
		}
		if got := binsBestFitDecreasing(tc.sizes, 1000); got != tc.bestF {
			t.Errorf("%s: best fit %d, want %d", tc.name, got, tc.bestF)
		}
	}
}

// TestBinsBoundsBracket checks on random instances that the lower bound
// is at least the volume bound and at most what best fit uses, and that
// best fit never uses more bins than items.
func TestBinsBoundsBracket(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 200; i++ {
		sizes := make([]int64, 1+rng.IntN(60))
		sum := int64(0)
		for j := range sizes {
			sizes[j] = 1 + rng.Int64N(999)
			sum += sizes[j]
		}
		lo, bf := binsLowerBound(sizes, 1000), binsBestFitDecreasing(sizes, 1000)
		if volume := int((sum + 999) / 1000); lo < volume {
			t.Fatalf("%v: lower bound %d under the volume bound %d", sizes, lo, volume)
		}
		if lo > bf || bf > len(sizes) {
			t.Fatalf("%v: lower bound %d, best fit %d, %d items", sizes, lo, bf, len(sizes))
		}
	}
}

// TestShareFloor checks which pods the floor counts: the sharing pods
// among those arrived when the request first reaches the capacity.
func TestShareFloor(t *testing.T) {
	nodes := []Node{{Name: "n0", CPUMilli: 8000, MemMiB: 8192, GPUs: 2, Model: "T4"}}
	pods := []Pod{
		{Name: "a", NumGPU: 1, GPUMilli: 810},
		{Name: "b", NumGPU: 1, GPUMilli: 810},
		{Name: "c", NumGPU: 1, GPUMilli: 380},
		{Name: "d"}, // CPU only
	}
	f, err := shareFloor(nodes, pods, 42, 1.0)
	if err != nil {
		t.Fatal(err)
	}
	// Capacity 2000 is reached by whichever two GPU pods come first plus
	// the third, or by the two 810s and the 380 in any order: all three
	// arrive by 100 % (810+810 < 2000).
	if f.Pods != 3 || f.RequestMilli != 2000 || f.CapacityGPUs != 2 {
		t.Fatalf("floor %+v: want the three sharing pods, 2000 units, 2 GPUs", f)
	}
	// 810 + 380 > 1000: three GPUs, one more than the cluster has.
	if f.LowerGPUs != 3 || f.BestFitGPUs != 3 {
		t.Fatalf("floor %+v: want 3 GPUs both ways", f)
	}
	if got := f.IdlePct(f.LowerGPUs); got != 50 {
		t.Fatalf("idle %v %%, want 50", got)
	}
}
