package openb

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
)

// blNode is a hand-made node state: its GPU model, CPU left and the free
// share of each GPU (no GPUs: a CPU node).
type blNode struct {
	model   string
	cpuLeft int64
	gpus    []int64
}

// blCluster builds a ledger in the given states.
func blCluster(t testing.TB, specs []blNode) *Cluster {
	t.Helper()
	nodes := make([]Node, len(specs))
	for i, s := range specs {
		nodes[i] = Node{Name: fmt.Sprintf("n%d", i), CPUMilli: 128000, MemMiB: 1 << 20, GPUs: len(s.gpus)}
		if len(s.gpus) > 0 {
			nodes[i].Model = s.model
		}
	}
	c, err := NewCluster(nodes)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range specs {
		c.Nodes[i].CPULeft = s.cpuLeft
		copy(c.Nodes[i].GPULeft, s.gpus)
	}
	return c
}

func blNodes(c *Cluster) []Node {
	out := make([]Node, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = *n.Node
	}
	return out
}

func blFactory(t testing.TB, name string) Factory {
	t.Helper()
	for _, f := range Baselines() {
		if f.Name == name {
			return f
		}
	}
	t.Fatalf("no baseline %q", name)
	return Factory{}
}

func blNew(t testing.TB, name string, c *Cluster, all []Pod, seed uint64) Policy {
	t.Helper()
	p, err := blFactory(t, name).New(context.Background(), blNodes(c), all, rand.New(rand.NewPCG(seed, 7)))
	if err != nil {
		t.Fatal(err)
	}
	if p.Name() != name {
		t.Fatalf("policy %q calls itself %q", name, p.Name())
	}
	return p
}

// blPlace schedules p, checks the answer against the ledger (ok exactly
// when some node fits, the placement binds) and binds it.
func blPlace(t testing.TB, pol Policy, c *Cluster, p *Pod) (int, []int, bool) {
	t.Helper()
	fits := false
	for _, n := range c.Nodes {
		if n.FitsResources(p) {
			fits = true
			break
		}
	}
	node, gpus, ok, err := pol.Schedule(context.Background(), c, p)
	if err != nil {
		t.Fatalf("%s: pod %s: %v", pol.Name(), p.Name, err)
	}
	if ok != fits {
		t.Fatalf("%s: pod %s: ok=%v but some node fits=%v", pol.Name(), p.Name, ok, fits)
	}
	if !ok {
		return node, gpus, ok
	}
	if !c.Nodes[node].FitsResources(p) {
		t.Fatalf("%s: pod %s placed on node %d where it does not fit", pol.Name(), p.Name, node)
	}
	if err := c.Bind(p, node, gpus); err != nil {
		t.Fatalf("%s: %v", pol.Name(), err)
	}
	pol.Bound(p, node, gpus)
	return node, gpus, ok
}

type blPre struct {
	node int
	gpus []int
	pod  Pod
}

type blCase struct {
	name   string
	policy string
	nodes  []blNode
	// pre are pods bound (and reported to the policy) before pod arrives.
	pre  []blPre
	all  []Pod
	pod  Pod
	ok   bool
	node int
	gpus []int
}

func blRun(t *testing.T, cases []blCase) {
	for _, tc := range cases {
		t.Run(tc.policy+"/"+tc.name, func(t *testing.T) {
			// The expected placements are unique maxima: every seed agrees.
			for seed := uint64(1); seed <= 8; seed++ {
				c := blCluster(t, tc.nodes)
				pol := blNew(t, tc.policy, c, tc.all, seed)
				for i := range tc.pre {
					pr := &tc.pre[i]
					if err := c.Bind(&pr.pod, pr.node, pr.gpus); err != nil {
						t.Fatal(err)
					}
					pol.Bound(&pr.pod, pr.node, pr.gpus)
				}
				p := tc.pod
				if p.Name == "" {
					p.Name = "pod"
				}
				node, gpus, ok := blPlace(t, pol, c, &p)
				if ok != tc.ok {
					t.Fatalf("seed %d: ok=%v, want %v", seed, ok, tc.ok)
				}
				if !ok {
					continue
				}
				if len(gpus) == 0 {
					gpus = nil
				}
				if node != tc.node || !reflect.DeepEqual(gpus, tc.gpus) {
					t.Fatalf("seed %d: placed on node %d GPUs %v, want node %d GPUs %v", seed, node, gpus, tc.node, tc.gpus)
				}
			}
		})
	}
}

func blFull(n int) []int64 {
	g := make([]int64, n)
	for i := range g {
		g[i] = MilliPerGPU
	}
	return g
}

func TestBaselinesTable(t *testing.T) {
	share := func(cpu, milli int64) Pod { return Pod{CPUMilli: cpu, MemMiB: 1024, NumGPU: 1, GPUMilli: milli} }
	whole := func(cpu int64, n int) Pod { return Pod{CPUMilli: cpu, MemMiB: 1024, NumGPU: n, GPUMilli: 1000} }
	cases := []blCase{
		// Random: the only node that fits, the only GPU that holds the share.
		{name: "only-fit", policy: "Random", nodes: []blNode{
			{"V100", 1000, blFull(8)},               // CPU lacks
			{"T4", 64000, blFull(4)},                // model excluded
			{"V100", 64000, []int64{200, 600, 100}}, // GPU 1 only
		}, pod: Pod{CPUMilli: 2000, MemMiB: 1024, NumGPU: 1, GPUMilli: 500, Models: []string{"V100"}}, ok: true, node: 2, gpus: []int{1}},
		// Random: whole GPUs are the lowest-indexed free ones.
		{name: "exclusive", policy: "Random", nodes: []blNode{
			{"V100", 64000, []int64{1000, 500, 1000, 1000}},
		}, pod: whole(1000, 2), ok: true, node: 0, gpus: []int{0, 2}},
		{name: "none-fits", policy: "Random", nodes: []blNode{
			{"V100", 64000, []int64{1000, 500}},
		}, pod: whole(1000, 2), ok: false},

		// DotProd: int64(100(1-dot/2)) with (cpu/128000, gpu/8000):
		// n0: 0.5·0.03125 + 1·0.125 → 92; n1: 0.0625·0.03125 + 0.25·0.125
		// → 98; n2 would score higher but lacks CPU.
		{name: "least-dot", policy: "DotProd", nodes: []blNode{
			{"V100", 64000, blFull(8)},
			{"V100", 8000, []int64{0, 1000, 0, 1000}},
			{"V100", 2000, []int64{1000}},
		}, pod: whole(4000, 1), ok: true, node: 1, gpus: []int{1}},
		// DotProd: n0: 0.25·0.015625 + 0.2875·0.03125 → 99; n1: 0.75·0.015625
		// + 0.5·0.03125 → 98. GPU: best fit for 250 is GPU 1 (300 free).
		{name: "best-fit-gpu", policy: "DotProd", nodes: []blNode{
			{"V100", 32000, []int64{600, 300, 1000, 400}},
			{"V100", 96000, blFull(4)},
		}, pod: share(2000, 250), ok: true, node: 0, gpus: []int{1}},

		// GpuClustering: n0 {share} 7500 left, n1 {1-gpu} 7000, n2 idle,
		// n3 {share,1-gpu} 6500. Share pod: n0 75+25·500/8000=76, n1 3,
		// n2 25, n3 50+4=54 → n0, best-fit GPU 0 (500 left).
		{name: "same-affinity", policy: "GpuClustering", nodes: []blNode{
			{"V100", 96000, blFull(8)}, {"V100", 96000, blFull(8)}, {"V100", 96000, blFull(8)}, {"V100", 96000, blFull(8)},
		}, pre: []blPre{
			{0, []int{0}, share(1000, 500)},
			{1, []int{0}, whole(1000, 1)},
			{3, []int{0}, share(1000, 500)},
			{3, []int{1}, whole(1000, 1)},
		}, pod: share(1000, 300), ok: true, node: 0, gpus: []int{0}},
		// 1-GPU pod: n0 1, n1 75+3=78, n2 25, n3 54 → n1, first free GPU 1.
		{name: "whole-affinity", policy: "GpuClustering", nodes: []blNode{
			{"V100", 96000, blFull(8)}, {"V100", 96000, blFull(8)}, {"V100", 96000, blFull(8)}, {"V100", 96000, blFull(8)},
		}, pre: []blPre{
			{0, []int{0}, share(1000, 500)},
			{1, []int{0}, whole(1000, 1)},
			{3, []int{0}, share(1000, 500)},
			{3, []int{1}, whole(1000, 1)},
		}, pod: whole(1000, 1), ok: true, node: 1, gpus: []int{1}},
		// 2-GPU pod: nobody has 2-gpu; n0 1, n1 3, n2 25+0, n3 4 → idle n2.
		{name: "idle-node", policy: "GpuClustering", nodes: []blNode{
			{"V100", 96000, blFull(8)}, {"V100", 96000, blFull(8)}, {"V100", 96000, blFull(8)}, {"V100", 96000, blFull(8)},
		}, pre: []blPre{
			{0, []int{0}, share(1000, 500)},
			{1, []int{0}, whole(1000, 1)},
			{3, []int{0}, share(1000, 500)},
			{3, []int{1}, whole(1000, 1)},
		}, pod: whole(1000, 2), ok: true, node: 2, gpus: []int{0, 1}},

		// GpuPacking, share 300: n0 idle 8 GPUs 33-8=25; n1 GPU 1 (400)
		// 100-(40/10)=96; n2 GPU 0 (700) 100-7=93; n3 idle 4 GPUs 29.
		{name: "shared-gpu", policy: "GpuPacking", nodes: []blNode{
			{"V100", 96000, blFull(8)},
			{"V100", 96000, []int64{1000, 400, 1000, 1000}},
			{"V100", 96000, []int64{700, 700}},
			{"V100", 96000, blFull(4)},
		}, pod: share(1000, 300), ok: true, node: 1, gpus: []int{1}},
		// 1 GPU: n0 25, n1 free GPU on a used node 50-1=49, n2 no free
		// GPU, n3 29 → n1 GPU 0.
		{name: "free-gpu-used-node", policy: "GpuPacking", nodes: []blNode{
			{"V100", 96000, blFull(8)},
			{"V100", 96000, []int64{1000, 400, 1000, 1000}},
			{"V100", 96000, []int64{700, 700}},
			{"V100", 96000, blFull(4)},
		}, pod: whole(1000, 1), ok: true, node: 1, gpus: []int{0}},
		// 2 GPUs: n1 50-2=48 > n3 29 > n0 25 → n1 GPUs 0, 2.
		{name: "two-gpus", policy: "GpuPacking", nodes: []blNode{
			{"V100", 96000, blFull(8)},
			{"V100", 96000, []int64{1000, 400, 1000, 1000}},
			{"V100", 96000, []int64{700, 700}},
			{"V100", 96000, blFull(4)},
		}, pod: whole(1000, 2), ok: true, node: 1, gpus: []int{0, 2}},
		// Idle nodes only: the one with fewer GPUs (33-1=32 > 33-4=29).
		{name: "smallest-idle", policy: "GpuPacking", nodes: []blNode{
			{"V100", 96000, blFull(4)},
			{"V100", 96000, blFull(1)},
		}, pod: whole(1000, 1), ok: true, node: 1, gpus: []int{0}},

		// BestFit, cpu 4000 share 500: n0 (1-(60000/128000+7500/8000)/2)·100
		// = 29; n1 (1-(4000/128000+1100/8000)/2)·100 = 91; n2 no GPU holds
		// 500 → n1, best-fit GPU 0 (600).
		{name: "share", policy: "BestFit", nodes: []blNode{
			{"V100", 64000, blFull(8)},
			{"V100", 8000, []int64{600, 1000}},
			{"V100", 6000, []int64{400, 400}},
		}, pod: share(4000, 500), ok: true, node: 1, gpus: []int{0}},
		// Whole GPU: n0 32, n1 (1-(4000/128000+600/8000)/2)·100 = 94 → n1 GPU 1.
		{name: "whole", policy: "BestFit", nodes: []blNode{
			{"V100", 64000, blFull(8)},
			{"V100", 8000, []int64{600, 1000}},
			{"V100", 6000, []int64{400, 400}},
		}, pod: whole(4000, 1), ok: true, node: 1, gpus: []int{1}},
		// Best-fit GPU among equals: the lowest index (GPU 1, not 3).
		{name: "gpu-tie", policy: "BestFit", nodes: []blNode{
			{"V100", 8000, []int64{700, 500, 900, 500}},
		}, pod: share(1000, 500), ok: true, node: 0, gpus: []int{1}},
		// CPU-only pod: least CPU left after it wins (GPU share counts too:
		// a CPU node with 9000 left beats a GPU node with 8000 and 1600).
		{name: "cpu-pod", policy: "BestFit", nodes: []blNode{
			{"V100", 8000, []int64{600, 1000}},
			{"", 9000, nil},
		}, pod: Pod{CPUMilli: 4000, MemMiB: 1024}, ok: true, node: 1},
	}
	blRun(t, cases)
}

// blChoices counts the placements of p over many seeds on fresh copies of
// the cluster.
func blChoices(t *testing.T, policy string, specs []blNode, p Pod, seeds int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for seed := 1; seed <= seeds; seed++ {
		c := blCluster(t, specs)
		pol := blNew(t, policy, c, nil, uint64(seed))
		q := p
		node, gpus, ok := blPlace(t, pol, c, &q)
		if !ok {
			t.Fatalf("%s: no placement", policy)
		}
		got[fmt.Sprint(node, gpus)]++
	}
	return got
}

func TestRandomSpread(t *testing.T) {
	specs := []blNode{
		{"V100", 64000, []int64{1000, 300, 600}},
		{"V100", 1000, blFull(2)}, // lacks CPU
		{"V100", 64000, []int64{500, 500}},
		{"T4", 64000, blFull(1)},
	}
	got := blChoices(t, "Random", specs, Pod{CPUMilli: 2000, MemMiB: 1, NumGPU: 1, GPUMilli: 500}, 400)
	want := []string{"0 [0]", "0 [2]", "2 [0]", "2 [1]", "3 [0]"}
	for _, w := range want {
		if got[w] == 0 {
			t.Errorf("placement %s never drawn: %v", w, got)
		}
	}
	if len(got) != len(want) {
		t.Errorf("placements %v, want only %v", got, want)
	}
}

// TestDotProdIntegerTies: the simulator's integer score makes nodes with
// different dot products tie (both 99 here); the first in order wins.
func TestDotProdIntegerTies(t *testing.T) {
	specs := []blNode{
		{"V100", 32000, []int64{600, 300, 1000, 400}},
		{"V100", 32000, blFull(4)},
	}
	p := Pod{CPUMilli: 2000, MemMiB: 1, NumGPU: 1, GPUMilli: 250}
	c := blCluster(t, specs)
	if a, b := dotProdScore(c.Nodes[0], &p), dotProdScore(c.Nodes[1], &p); a != 99 || b != 99 {
		t.Fatalf("scores %d %d, want 99 99", a, b)
	}
	got := blChoices(t, "DotProd", specs, p, 200)
	if got["0 [1]"] == 0 || len(got) != 1 {
		t.Errorf("placements %v, want only 0 [1]", got)
	}
}

// TestGpuClusteringCPUPods: CPU-only pods score 0 everywhere and land on
// the first fitting node.
func TestGpuClusteringCPUPods(t *testing.T) {
	specs := []blNode{{"V100", 8000, blFull(8)}, {"", 8000, nil}, {"V100", 1000, blFull(1)}}
	got := blChoices(t, "GpuClustering", specs, Pod{CPUMilli: 2000, MemMiB: 1}, 200)
	if got["0 []"] == 0 || len(got) != 1 {
		t.Errorf("placements %v, want node 0", got)
	}
}

// TestGpuPackingCPUPods: the same for GpuPacking.
func TestGpuPackingCPUPods(t *testing.T) {
	specs := []blNode{{"V100", 8000, blFull(8)}, {"", 8000, nil}, {"V100", 1000, blFull(1)}}
	got := blChoices(t, "GpuPacking", specs, Pod{CPUMilli: 2000, MemMiB: 1}, 200)
	if got["0 []"] == 0 || len(got) != 1 {
		t.Errorf("placements %v, want node 0", got)
	}
}

func TestBaselinesOrder(t *testing.T) {
	var names []string
	for _, f := range Baselines() {
		names = append(names, f.Name)
	}
	want := []string{"Random", "DotProd", "GpuClustering", "GpuPacking", "BestFit", "FGD"}
	if !reflect.DeepEqual(names, want) {
		t.Fatalf("Baselines() = %v, want %v", names, want)
	}
}

// blRandomWorld is a small random cluster and pod list covering every case
// of the model: CPU nodes, GPU models, model constraints, memory.
func blRandomWorld(seed uint64, nNodes, nPods int) ([]Node, []Pod) {
	r := rand.New(rand.NewPCG(seed, 99))
	models := []string{"A", "B", "C"}
	var nodes []Node
	for i := 0; i < nNodes; i++ {
		g := []int{0, 1, 2, 4, 8}[r.IntN(5)]
		n := Node{Name: fmt.Sprintf("n%02d", i), CPUMilli: []int64{16000, 32000, 64000, 96000}[r.IntN(4)], MemMiB: []int64{65536, 131072, 262144}[r.IntN(3)], GPUs: g}
		if g > 0 {
			n.Model = models[r.IntN(len(models))]
		}
		nodes = append(nodes, n)
	}
	var pods []Pod
	for i := 0; i < nPods; i++ {
		p := Pod{Name: fmt.Sprintf("p%04d", i), CPUMilli: []int64{500, 1000, 2000, 4000, 8000, 16000}[r.IntN(6)], MemMiB: []int64{1024, 4096, 16384, 65536}[r.IntN(4)]}
		switch k := r.IntN(10); {
		case k < 2:
		case k < 6:
			p.NumGPU, p.GPUMilli = 1, []int64{100, 250, 300, 500, 600, 750}[r.IntN(6)]
		default:
			p.NumGPU, p.GPUMilli = []int{1, 1, 2, 4, 8}[r.IntN(5)], MilliPerGPU
		}
		switch r.IntN(8) {
		case 0:
			p.Models = []string{"A"}
		case 1:
			p.Models = []string{"B", "C"}
		}
		pods = append(pods, p)
	}
	return nodes, pods
}

type blDecision struct {
	node int
	gpus []int
	ok   bool
}

// blReplay schedules every pod once, checking each answer with blPlace.
func blReplay(t testing.TB, f Factory, nodes []Node, pods []Pod, seed uint64) []blDecision {
	t.Helper()
	c, err := NewCluster(nodes)
	if err != nil {
		t.Fatal(err)
	}
	pol, err := f.New(context.Background(), nodes, pods, rand.New(rand.NewPCG(seed, 3)))
	if err != nil {
		t.Fatal(err)
	}
	out := make([]blDecision, 0, len(pods))
	for i := range pods {
		node, gpus, ok := blPlace(t, pol, c, &pods[i])
		if !ok {
			node, gpus = -1, nil
		}
		out = append(out, blDecision{node, gpus, ok})
	}
	return out
}

// TestBaselinesProperties: on random clusters filled past capacity, every
// policy answers ok exactly when a node fits, every placement binds on the
// ledger, and a seed gives the same decisions twice.
func TestBaselinesProperties(t *testing.T) {
	for _, f := range Baselines() {
		t.Run(f.Name, func(t *testing.T) {
			for w := uint64(1); w <= 3; w++ {
				nodes, pods := blRandomWorld(w, 12, 400)
				a := blReplay(t, f, nodes, pods, 42)
				b := blReplay(t, f, nodes, pods, 42)
				if !reflect.DeepEqual(a, b) {
					t.Fatalf("world %d: seed 42 gave different decisions", w)
				}
				placed, failed := 0, 0
				for _, d := range a {
					if d.ok {
						placed++
					} else {
						failed++
					}
				}
				if placed == 0 || failed == 0 {
					t.Fatalf("world %d: %d placed, %d failed: the test should fill the cluster", w, placed, failed)
				}
			}
		})
	}
}

// blSynthOpenb is a synthetic cluster of the openb trace's size (1213 GPU
// nodes: 8-, 4-, 2- and 1-GPU, several models) and a pod list of its mix
// (CPU-only, sharing, whole-GPU pods, some with a model constraint) whose
// GPU request is 1.3 × the cluster's GPU capacity, as the paper replays it.
func blSynthOpenb(seed uint64) ([]Node, []Pod) {
	r := rand.New(rand.NewPCG(seed, 0x6f70656e62))
	models := []string{"G2", "G3", "T4", "V100M32", "P100", "A10", "G1"}
	var nodes []Node
	capacity := int64(0)
	add := func(count, gpus int, cpu, mem int64) {
		for i := 0; i < count; i++ {
			m := models[r.IntN(len(models))]
			nodes = append(nodes, Node{Name: fmt.Sprintf("node-%04d", len(nodes)), CPUMilli: cpu, MemMiB: mem, GPUs: gpus, Model: m})
			capacity += int64(gpus) * MilliPerGPU
		}
	}
	add(600, 8, 96000, 786432)
	add(150, 4, 64000, 393216)
	add(300, 2, 64000, 262144)
	add(163, 1, 32000, 131072)
	cpus := []int64{1000, 2000, 4000, 6000, 8000, 12000, 16000, 32000}
	cpuW := []int{10, 20, 25, 10, 15, 8, 10, 2}
	pick := func(w []int) int {
		tot := 0
		for _, x := range w {
			tot += x
		}
		k := r.IntN(tot)
		for i, x := range w {
			if k < x {
				return i
			}
			k -= x
		}
		return len(w) - 1
	}
	shares := []int64{50, 100, 200, 250, 300, 400, 500, 600, 700, 800}
	shareW := []int{5, 15, 10, 15, 5, 5, 25, 8, 6, 6}
	var pods []Pod
	total := int64(0)
	for total < capacity*13/10 {
		p := Pod{Name: fmt.Sprintf("pod-%05d", len(pods)), CPUMilli: cpus[pick(cpuW)], MemMiB: []int64{2048, 8192, 16384, 32768}[r.IntN(4)]}
		switch k := r.IntN(100); {
		case k < 13:
		case k < 51:
			p.NumGPU, p.GPUMilli = 1, shares[pick(shareW)]
		case k < 96:
			p.NumGPU, p.GPUMilli = 1, MilliPerGPU
		case k < 98:
			p.NumGPU, p.GPUMilli = 2, MilliPerGPU
		case k < 99:
			p.NumGPU, p.GPUMilli = 4, MilliPerGPU
		default:
			p.NumGPU, p.GPUMilli = 8, MilliPerGPU
		}
		if p.NumGPU > 0 && r.IntN(20) == 0 {
			p.Models = []string{models[r.IntN(len(models))]}
		}
		pods = append(pods, p)
		total += p.GPURequest()
	}
	return nodes, pods
}

// BenchmarkBaselineReplay times one full replay of the synthetic openb-size
// workload per policy (go test -bench BaselineReplay -benchtime 1x -run ^$).
func BenchmarkBaselineReplay(b *testing.B) {
	nodes, pods := blSynthOpenb(1)
	for _, f := range Baselines() {
		b.Run(f.Name, func(b *testing.B) {
			var unalloc float64
			for b.Loop() {
				c, err := NewCluster(nodes)
				if err != nil {
					b.Fatal(err)
				}
				pol, err := f.New(context.Background(), nodes, pods, rand.New(rand.NewPCG(42, 3)))
				if err != nil {
					b.Fatal(err)
				}
				for i := range pods {
					p := &pods[i]
					node, gpus, ok, err := pol.Schedule(context.Background(), c, p)
					if err != nil {
						b.Fatal(err)
					}
					if ok {
						if err := c.Bind(p, node, gpus); err != nil {
							b.Fatal(err)
						}
						pol.Bound(p, node, gpus)
					}
				}
				unalloc = c.UnallocatedGPUPct()
			}
			b.ReportMetric(float64(len(pods)), "pods")
			if f.Name == "FGD" {
				b.ReportMetric(float64(len(FGDTypicalPods(pods, FGDPopularityThreshold, FGDIncludeCPUPods))), "typical")
			}
			b.ReportMetric(unalloc, "unalloc%")
		})
	}
}
