package openb

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"sort"
	"testing"
)

func fgdPods(n int, p Pod) []Pod {
	out := make([]Pod, n)
	for i := range out {
		out[i] = p
		out[i].Name = fmt.Sprintf("%d-%d-%d-%d", p.CPUMilli, p.NumGPU, p.GPUMilli, i)
	}
	return out
}

func fgdConcat(lists ...[]Pod) []Pod {
	var out []Pod
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}

func TestFGDTypicalPods(t *testing.T) {
	a := Pod{CPUMilli: 1000, MemMiB: 10, NumGPU: 1, GPUMilli: 500}
	b := Pod{CPUMilli: 2000, MemMiB: 20, NumGPU: 1, GPUMilli: 1000}
	c := Pod{CPUMilli: 4000, MemMiB: 30}
	d := Pod{CPUMilli: 8000, MemMiB: 40, NumGPU: 2, GPUMilli: 1000}
	e := Pod{CPUMilli: 500, MemMiB: 50, NumGPU: 1, GPUMilli: 200}
	type shape struct {
		cpu, milli int64
		num        int
		freq       float64
	}
	cases := []struct {
		name       string
		all        []Pod
		includeCPU bool
		want       []shape
	}{
		// 100 pods, 95% = 95: 60, 90, 96 → three shapes, renormalised by 96.
		{"threshold", fgdConcat(fgdPods(60, a), fgdPods(30, b), fgdPods(6, c), fgdPods(3, d), fgdPods(1, e)), true,
			[]shape{{1000, 500, 1, 60.0 / 96}, {2000, 1000, 1, 30.0 / 96}, {4000, 0, 0, 6.0 / 96}}},
		// CPU pods left out: 94 pods, 89.3 covered by 60+30.
		{"no-cpu-pods", fgdConcat(fgdPods(60, a), fgdPods(30, b), fgdPods(6, c), fgdPods(3, d), fgdPods(1, e)), false,
			[]shape{{1000, 500, 1, 60.0 / 90}, {2000, 1000, 1, 30.0 / 90}}},
		// Equal counts: larger CPU first; all shapes needed (4 < 4.75).
		{"ties", fgdConcat(fgdPods(2, a), fgdPods(2, b), fgdPods(1, e)), true,
			[]shape{{2000, 1000, 1, 0.4}, {1000, 500, 1, 0.4}, {500, 200, 1, 0.2}}},
		// Equal counts and CPU: larger share first.
		{"ties-share", fgdConcat(fgdPods(1, Pod{CPUMilli: 1000, NumGPU: 1, GPUMilli: 300}), fgdPods(1, Pod{CPUMilli: 1000, NumGPU: 1, GPUMilli: 1000})), true,
			[]shape{{1000, 1000, 1, 0.5}, {1000, 300, 1, 0.5}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := FGDTypicalPods(tc.all, FGDPopularityThreshold, tc.includeCPU)
			if len(got) != len(tc.want) {
				t.Fatalf("%d typical pods %+v, want %d", len(got), got, len(tc.want))
			}
			sum := 0.0
			for i, w := range tc.want {
				g := got[i]
				if g.CPUMilli != w.cpu || g.GPUMilli != w.milli || g.NumGPU != w.num || math.Abs(g.Freq-w.freq) > 1e-12 {
					t.Errorf("typical[%d] = %+v, want %+v", i, g, w)
				}
				sum += g.Freq
			}
			if math.Abs(sum-1) > 1e-9 {
				t.Errorf("frequencies sum to %v", sum)
			}
		})
	}
	// The model list is part of the shape.
	m := fgdConcat(fgdPods(3, a), fgdPods(2, Pod{CPUMilli: 1000, NumGPU: 1, GPUMilli: 500, Models: []string{"T4"}}))
	got := FGDTypicalPods(m, 95, true)
	if len(got) != 2 || len(got[0].Models) != 0 || !reflect.DeepEqual(got[1].Models, []string{"T4"}) {
		t.Errorf("model lists not kept apart: %+v", got)
	}
}

// TestFGDFragMeasure checks the node fragmentation against values worked
// out by hand from frag.go's definition.
func TestFGDFragMeasure(t *testing.T) {
	typical := []FGDTypicalPod{
		{CPUMilli: 1000, GPUMilli: 500, NumGPU: 1, Freq: 0.5},
		{CPUMilli: 2000, GPUMilli: 1000, NumGPU: 1, Freq: 0.3},
		{CPUMilli: 4000, Freq: 0.1},
		{CPUMilli: 1000, GPUMilli: 1000, NumGPU: 1, Models: []string{"T4"}, Freq: 0.1},
	}
	cases := []struct {
		name string
		node blNode
		want float64
	}{
		// L=1900. 500: Q3, GPUs under 500 hold 300 → 150; 1000: Q3, under
		// 1000 hold 900 → 270; CPU pod: XR → 190; T4 pod: no access → 190.
		{"q3", blNode{"V100", 3000, []int64{1000, 300, 600, 0}}, 150 + 270 + 190 + 190},
		// CPU 1500: the 1000-share pod lacks CPU (Q4) → 0.3·1900.
		{"q4", blNode{"V100", 1500, []int64{1000, 300, 600, 0}}, 150 + 570 + 190 + 190},
		// L=700, no GPU holds 500: Q2 for both GPU shapes; CPU pod XL.
		{"q2", blNode{"V100", 5000, []int64{400, 300, 0, 0}}, 350 + 210 + 70 + 70},
		// CPU lacking and GPU lacking: Q1, all of L.
		{"q1", blNode{"V100", 500, []int64{400, 300}}, 700},
		// On a T4 node the T4 shape is Q3 with fragment 300.
		{"access", blNode{"T4", 5000, []int64{1000, 300}}, 0.5*300 + 0.3*300 + 0.1*1300 + 0.1*300},
		{"cpu-node", blNode{"", 5000, nil}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := blCluster(t, []blNode{tc.node})
			f := newFGDWithTypical(typical, 1, rand.New(rand.NewPCG(1, 1)))
			f.refresh(&f.nodes[0], c.Nodes[0])
			if got := f.nodes[0].frag; math.Abs(got-tc.want) > 1e-9 {
				t.Errorf("frag = %v, want %v", got, tc.want)
			}
			if ref := fgdRefFrag(typical, tc.node.model, tc.node.cpuLeft, tc.node.gpus); math.Abs(ref-tc.want) > 1e-9 {
				t.Errorf("reference frag = %v, want %v", ref, tc.want)
			}
		})
	}
}

func TestFGDPlacement(t *testing.T) {
	// Typical pods: half 500-share, half 1-GPU (cpu 1000 each).
	all := fgdConcat(
		fgdPods(5, Pod{CPUMilli: 1000, MemMiB: 1, NumGPU: 1, GPUMilli: 500}),
		fgdPods(5, Pod{CPUMilli: 1000, MemMiB: 1, NumGPU: 1, GPUMilli: 1000}))
	share := Pod{CPUMilli: 1000, MemMiB: 1, NumGPU: 1, GPUMilli: 500}
	whole := Pod{CPUMilli: 1000, MemMiB: 1, NumGPU: 1, GPUMilli: 1000}
	cases := []blCase{
		// Share 500. n0 [1000 1000]: 0 → 250 (the 1-GPU shape loses a free
		// GPU's half), score int(100σ(-0.25)) = 43. n1 [500 1000]: 250 →
		// 0 on GPU 0 (56), → 500 on GPU 1 (43). n2 [200 1000]: 200 → 450
		// (43). n1 GPU 0 wins.
		{name: "share", policy: "FGD", all: all, nodes: []blNode{
			{"V100", 32000, []int64{1000, 1000}},
			{"V100", 32000, []int64{500, 1000}},
			{"V100", 32000, []int64{200, 1000}},
		}, pod: share, ok: true, node: 1, gpus: []int{0}},
		// The same with GPUs reversed: the GPU choice follows.
		{name: "share-gpu", policy: "FGD", all: all, nodes: []blNode{
			{"V100", 32000, []int64{1000, 500}},
		}, pod: share, ok: true, node: 0, gpus: []int{1}},
		// CPU-only pod: the CPU node stays at 0 (50); on n1 the CPU left
		// (500) no longer fits either shape: 0 → 2000 (11).
		{name: "cpu-pod", policy: "FGD", all: all, nodes: []blNode{
			{"", 8000, nil},
			{"V100", 1500, []int64{1000, 1000}},
		}, pod: Pod{CPUMilli: 1000, MemMiB: 1}, ok: true, node: 0},
		// 1-GPU pod. n0 [0 1000 500 1000]: 250 → 250 (50), GPU 1 (the
		// lowest free one). n1 [1000 1000] with 1500 CPU: 0 → 1000 (26).
		{name: "whole", policy: "FGD", all: all, nodes: []blNode{
			{"V100", 32000, []int64{0, 1000, 500, 1000}},
			{"V100", 1500, []int64{1000, 1000}},
		}, pod: whole, ok: true, node: 0, gpus: []int{1}},
		// Model constraint: only the T4 node is a candidate.
		{name: "model", policy: "FGD", all: all, nodes: []blNode{
			{"V100", 32000, []int64{500, 1000}},
			{"T4", 32000, []int64{1000, 1000}},
		}, pod: Pod{CPUMilli: 1000, MemMiB: 1, NumGPU: 1, GPUMilli: 500, Models: []string{"T4"}}, ok: true, node: 1, gpus: []int{0}},
		{name: "none", policy: "FGD", all: all, nodes: []blNode{
			{"V100", 32000, []int64{400, 1000}},
		}, pod: Pod{CPUMilli: 1000, MemMiB: 1, NumGPU: 2, GPUMilli: 1000}, ok: false},
	}
	blRun(t, cases)
}

// fgdRefFrag is frag.go NodeGpuShareFragAmountScore written plainly: every
// category accumulated in typical-pod order, Q3's fragment filed under Q2,
// the categories but Q3 summed in order.
func fgdRefFrag(typical []FGDTypicalPod, model string, cpu int64, gpus []int64) float64 {
	const (
		q1 = iota
		q2
		q3
		q4
		xl
		xr
		na
	)
	var data [7]float64
	left := int64(0)
	for _, g := range gpus {
		left += g
	}
	for _, t := range typical {
		cat := 0
		switch {
		case t.GPUMilli == 0:
			cat = xr
			if cpu >= t.CPUMilli {
				cat = xl
			}
		case !fgdAccessible(model, t.Models):
			cat = na
		default:
			fit := 0
			for _, g := range gpus {
				if g >= t.GPUMilli {
					fit++
				}
			}
			switch {
			case fit >= t.NumGPU && cpu >= t.CPUMilli:
				cat = q3
			case fit >= t.NumGPU:
				cat = q4
			case cpu >= t.CPUMilli:
				cat = q2
			default:
				cat = q1
			}
		}
		if cat == q3 {
			frag := int64(0)
			for _, g := range gpus {
				if g < t.GPUMilli {
					frag += g
				}
			}
			data[q2] += float64(t.Freq * float64(frag))
			data[q3] += float64(t.Freq * float64(left-frag))
		} else {
			data[cat] += float64(t.Freq * float64(left))
		}
	}
	out := 0.0
	for i, v := range data {
		if i != q3 {
			out += v
		}
	}
	return out
}

// fgdRefScore is fgd_score.go calculateGpuShareFragExtendScore written
// plainly: a sharing pod tried on every GPU that holds it (first best
// wins), other pods subtracted as NodeResource.Sub does.
func fgdRefScore(typical []FGDTypicalPod, model string, cpu int64, gpus []int64, p *Pod) (int64, int) {
	before := fgdRefFrag(typical, model, cpu, gpus)
	sig := func(after float64) int64 {
		return int64(1.0 / (1.0 + math.Exp(-((before - after) / 1000))) * 100)
	}
	if p.NumGPU == 1 && p.GPUMilli < MilliPerGPU {
		score, id := int64(0), -1
		for i := range gpus {
			if gpus[i] >= p.GPUMilli {
				n := append([]int64(nil), gpus...)
				n[i] -= p.GPUMilli
				s := sig(fgdRefFrag(typical, model, cpu-p.CPUMilli, n))
				if id < 0 || s > score {
					score, id = s, i
				}
			}
		}
		return score, id
	}
	n := append([]int64(nil), gpus...)
	idx := make([]int, len(n))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return n[idx[a]] < n[idx[b]] })
	req := p.NumGPU
	for _, i := range idx {
		if req == 0 {
			break
		}
		if p.GPUMilli <= n[i] {
			n[i] -= p.GPUMilli
			req--
		}
	}
	return sig(fgdRefFrag(typical, model, cpu-p.CPUMilli, n)), -1
}

// TestFGDMatchesReference compares the cached, incremental scoring with the
// plain definition on random node states, pods and workloads, and checks
// that Schedule picks a node of the best score with that node's GPU.
func TestFGDMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	shares := []int64{0, 50, 100, 250, 300, 500, 600, 750, 1000}
	for world := uint64(1); world <= 20; world++ {
		nodes, pods := blRandomWorld(world, 60, 300)
		typical := FGDTypicalPods(pods, FGDPopularityThreshold, FGDIncludeCPUPods)
		c, err := NewCluster(nodes)
		if err != nil {
			t.Fatal(err)
		}
		for i, n := range c.Nodes {
			n.CPULeft = r.Int64N(n.CPUMilli + 1)
			for g := range n.GPULeft {
				n.GPULeft[g] = shares[r.IntN(len(shares))]
			}
			// Repeat states, so that nodes in the same state (scored once
			// per pod) are common.
			if r.IntN(2) == 0 {
				continue
			}
			for j := 0; j < i; j++ {
				if m := c.Nodes[j]; m.Model == n.Model && len(m.GPULeft) == len(n.GPULeft) && m.CPUMilli == n.CPUMilli {
					n.CPULeft = m.CPULeft
					copy(n.GPULeft, m.GPULeft)
					break
				}
			}
		}
		f := newFGDWithTypical(typical, len(nodes), rand.New(rand.NewPCG(world, 1)))
		for k := 0; k < 40; k++ {
			p := &pods[r.IntN(len(pods))]
			best := int64(-1)
			refScore := make([]int64, len(c.Nodes))
			refGPU := make([]int, len(c.Nodes))
			for i, n := range c.Nodes {
				refScore[i] = -1
				if !n.FitsResources(p) {
					continue
				}
				s, g := fgdRefScore(typical, n.Model, n.CPULeft, n.GPULeft, p)
				refScore[i], refGPU[i] = s, g
				best = max(best, s)
			}
			node, gpus, ok, err := f.Schedule(context.Background(), c, p)
			if err != nil {
				t.Fatal(err)
			}
			if ok != (best >= 0) {
				t.Fatalf("world %d pod %+v: ok=%v, best reference score %d", world, *p, ok, best)
			}
			if !ok {
				continue
			}
			if refScore[node] != best {
				t.Fatalf("world %d pod %+v: node %d scores %d, best is %d", world, *p, node, refScore[node], best)
			}
			if p.Sharing() && gpus[0] != refGPU[node] {
				t.Fatalf("world %d pod %+v on node %d %v: GPU %d, reference %d", world, *p, node, c.Nodes[node].GPULeft, gpus[0], refGPU[node])
			}
			// Every node's score, not only the winner's.
			for i, n := range c.Nodes {
				if refScore[i] < 0 {
					continue
				}
				fc := &f.nodes[i]
				if !fc.fresh(n) {
					f.refresh(fc, n)
				}
				var s int64
				g := -1
				if p.Sharing() {
					s, g = f.scoreSharing(fc, p)
				} else {
					s = f.scoreSub(fc, p)
				}
				if s != refScore[i] || g != refGPU[i] {
					t.Fatalf("world %d pod %+v node %d %v: score %d GPU %d, reference %d GPU %d", world, *p, i, n.GPULeft, s, g, refScore[i], refGPU[i])
				}
			}
			if err := c.Bind(p, node, gpus); err != nil {
				t.Fatal(err)
			}
		}
	}
}
