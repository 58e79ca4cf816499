package openb

// FGD, Fragmentation Gradient Descent (Weng et al., USENIX ATC'23, §5), as
// the paper's simulator hkust-adsl/kubernetes-scheduler-simulator runs it:
// plugin/fgd_score.go (FGDScore) for the node score and the GPU choice,
// pkg/utils/frag.go for the fragmentation measure and the target workload
// (GetTypicalPods, NodeGpuShareFragAmount, GetNodePodFrag,
// FragAmountSumExceptQ3), with the artifact's configuration
// (scripts/generate_config_and_run.py: typicalPodsConfig isInvolvedCpuPods
// true, podPopularityThreshold 95, podIncreaseStep 1, gpuResWeight 0;
// Open-Gpu-Share's gpuSelMethod is FGDScore itself).
//
// Fragmentation of a node for a task shape t (frag.go GetNodePodFrag and
// NodeGpuShareFragAmount), with L the node's free GPU share:
//   - t asks no GPU (per-GPU share 0): XL (CPU fits) or XR (CPU lacks);
//     either way all of L counts as fragment;
//   - t's GPU model list excludes the node's model: NoAccess, L counts;
//   - t's GPUs do not fit (fewer than t.NumGPU GPUs with at least t's
//     per-GPU share free): Q1 (CPU lacks too) or Q2, L counts;
//   - the GPUs fit but the CPU does not: Q4, L counts;
//   - both fit: Q3; the free share of the GPUs that cannot hold t's per-GPU
//     share counts (it is filed under Q2).
// The node's fragmentation is Σ_t freq_t × fragment_t over the typical
// pods, summed over every category but Q3 (FragAmountSumExceptQ3); memory
// plays no part. The score of placing the pod on a node is
// int64(100 × sigmoid((F_before − F_after)/1000)): the smaller the
// fragmentation increase, the higher. The paper chooses the node of least
// increase; the simulator's integer score makes nodes whose increases fall
// in the same 1/100 sigmoid step tie, and the first of them in node order
// is taken (see hostPicker: that is what reproduces the published figures;
// the simulator is followed where it differs from the paper).
//
// The placement on a node (F_after): a sharing pod is tried on every GPU
// that holds it; the node's score is the best GPU's, and that GPU (the
// lowest index among equal integer scores) is the one Reserve allocates.
// Other pods are subtracted as NodeResource.Sub does (GPUs in increasing
// order of free share; for whole-GPU pods: entirely free GPUs) and get the
// lowest-indexed entirely free GPUs (AllocateExclusiveGpuId).
//
// Float operations are done in the simulator's order, with explicit
// conversions where a fused multiply-add could change a rounding.
//
// The typical pods come from the pod list given to Factory.New. The
// simulator computes them from the trace's pod list before it is inflated
// by the workload tuning (core.go: SetTypicalPods before
// TunePodsByNodeTotalResource); the replay passes the inflated workload,
// whose shape distribution is a resampling of the same list.

import (
	"context"
	"math"
	"math/rand/v2"
	"sort"
	"strings"
)

// The artifact's typical-pods configuration.
const (
	// FGDPopularityThreshold is the share of the workload, in percent, that
	// the typical pods cover (podPopularityThreshold).
	FGDPopularityThreshold = 95
	// FGDIncludeCPUPods tells whether CPU-only pods are typical pods
	// (isInvolvedCpuPods).
	FGDIncludeCPUPods = true
)

// FGDTypicalPod is one resource shape of the target workload.
type FGDTypicalPod struct {
	CPUMilli int64
	// GPUMilli is the per-GPU share, 0 for CPU-only shapes.
	GPUMilli int64
	NumGPU   int
	// Models is the shape's GPU model list (empty: any).
	Models []string
	// Count is the number of pods of this shape.
	Count float64
	// Freq is the shape's popularity; the typical pods' Freq sum to 1.
	Freq float64
}

type fgdShapeKey struct {
	cpu, milli int64
	num        int
	models     string
}

// FGDTypicalPods is frag.go GetTypicalPods (gpuResWeight 0, step 1): the
// distinct shapes (CPU, per-GPU share, GPU count, GPU model list) of all,
// CPU-only pods included when includeCPU, by decreasing number of pods (ties:
// larger CPU, then share, count, model list first), the most popular ones
// until they cover thresholdPct percent of the pods (95 when ≤ 0), with
// their popularity renormalised to sum 1.
func FGDTypicalPods(all []Pod, thresholdPct int, includeCPU bool) []FGDTypicalPod {
	if thresholdPct <= 0 {
		thresholdPct = FGDPopularityThreshold
	}
	index := map[fgdShapeKey]int{}
	var list []FGDTypicalPod
	var keys []fgdShapeKey
	total := float64(0)
	for i := range all {
		p := &all[i]
		k := fgdShapeKey{cpu: p.CPUMilli, milli: p.GPUMilli, num: p.NumGPU, models: strings.Join(p.Models, "|")}
		if p.NumGPU == 0 {
			if !includeCPU {
				continue
			}
			k.milli = 0
		}
		j, ok := index[k]
		if !ok {
			j = len(list)
			index[k] = j
			list = append(list, FGDTypicalPod{CPUMilli: k.cpu, GPUMilli: k.milli, NumGPU: k.num, Models: p.Models})
			keys = append(keys, k)
		}
		list[j].Count++
		total++
	}
	order := make([]int, len(list))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool {
		x, y := order[a], order[b]
		if list[x].Count != list[y].Count {
			return list[x].Count > list[y].Count
		}
		kx, ky := keys[x], keys[y]
		switch {
		case kx.cpu != ky.cpu:
			return kx.cpu > ky.cpu
		case kx.milli != ky.milli:
			return kx.milli > ky.milli
		case kx.num != ky.num:
			return kx.num > ky.num
		default:
			return kx.models > ky.models
		}
	})
	sorted := make([]FGDTypicalPod, len(list))
	for i, j := range order {
		sorted[i] = list[j]
	}
	expected := float64(thresholdPct) * total / 100.0
	cum := float64(0)
	i := 0
	for cum < expected && i < len(sorted) {
		cum += sorted[i].Count
		sorted[i].Freq = sorted[i].Count / total
		i++
	}
	if i >= len(sorted) {
		return sorted
	}
	out := sorted[:i:i]
	for j := range out {
		out[j].Freq /= cum / total
	}
	return out
}

// fgdShape is a typical pod prepared for scoring.
type fgdShape struct {
	cpu     int64
	num     int32
	cpuOnly bool
	// mi indexes the shape's per-GPU share in fgdPolicy.millis.
	mi     int32
	freq   float64
	models []string
}

// fgdNode caches a node's fragmentation for the state it was computed on.
type fgdNode struct {
	valid bool
	// of is the node the entry was computed for: in a cluster whose nodes
	// come and go (autoscaled replays) a position may hold another node.
	of    *NodeState
	cpu   int64
	total int64
	frag  float64
	gpus  []int64
	// below[j]: free share of the GPUs with less than millis[j] free;
	// cnt[j]: number of GPUs with at least millis[j] free.
	below []int64
	cnt   []int32
	// acc[t]: the node's GPU model is allowed to typical pod t.
	acc []bool
	// row numbers the node's GPU model (for memo keys), set with model.
	model string
	row   int32
	named bool
}

type fgdPolicy struct {
	rng    *rand.Rand
	shapes []fgdShape
	millis []int64
	nodes  []fgdNode
	accBy  map[string][]bool
	// rowOf numbers the distinct GPU models, for memo keys.
	rowOf  map[string]int32
	sBelow []int64
	sCnt   []int32
	// memo holds, within one Schedule call, the score (and GPU) of every
	// node state met so far: nodes in the same state score the same.
	memo map[fgdMemoKey]fgdMemoVal
}

// fgdMemoMaxGPUs bounds the nodes whose state is memoised.
const fgdMemoMaxGPUs = 8

type fgdMemoKey struct {
	row  int32
	ngpu int32
	cpu  int64
	gpus [fgdMemoMaxGPUs]int64
}

type fgdMemoVal struct {
	score int64
	gpu   int
}

func newFGDPolicy(_ context.Context, nodes []Node, all []Pod, rng *rand.Rand) (Policy, error) {
	return newFGDWithTypical(FGDTypicalPods(all, FGDPopularityThreshold, FGDIncludeCPUPods), len(nodes), rng), nil
}

func newFGDWithTypical(typical []FGDTypicalPod, nodes int, rng *rand.Rand) *fgdPolicy {
	f := &fgdPolicy{rng: rng, accBy: map[string][]bool{}, rowOf: map[string]int32{}, nodes: make([]fgdNode, nodes), memo: map[fgdMemoKey]fgdMemoVal{}}
	mIndex := map[int64]int32{}
	for _, t := range typical {
		s := fgdShape{cpu: t.CPUMilli, num: int32(t.NumGPU), freq: t.Freq, models: t.Models, mi: -1}
		if t.GPUMilli == 0 {
			// GetNodePodFrag tests the share, not the count.
			s.cpuOnly = true
		} else {
			j, ok := mIndex[t.GPUMilli]
			if !ok {
				j = int32(len(f.millis))
				mIndex[t.GPUMilli] = j
				f.millis = append(f.millis, t.GPUMilli)
			}
			s.mi = j
		}
		f.shapes = append(f.shapes, s)
	}
	f.sBelow = make([]int64, len(f.millis))
	f.sCnt = make([]int32, len(f.millis))
	return f
}

func (f *fgdPolicy) Name() string { return "FGD" }

func (f *fgdPolicy) Bound(*Pod, int, []int)    {}
func (f *fgdPolicy) Rejected(*Pod, int, error) {}

// fgdAccessible is utils.IsNodeAccessibleToPodByType.
func fgdAccessible(nodeModel string, models []string) bool {
	if len(models) == 0 {
		return true
	}
	if nodeModel == "" {
		return false
	}
	named := 0
	for _, m := range models {
		if m == "" {
			continue
		}
		named++
		if m == nodeModel {
			return true
		}
	}
	return named == 0
}

func (f *fgdPolicy) accRow(model string) []bool {
	if row, ok := f.accBy[model]; ok {
		return row
	}
	row := make([]bool, len(f.shapes))
	for i := range f.shapes {
		row[i] = fgdAccessible(model, f.shapes[i].models)
	}
	f.accBy[model] = row
	return row
}

// fresh reports whether the cache holds the node's current state.
func (c *fgdNode) fresh(n *NodeState) bool {
	if !c.valid || c.of != n || c.cpu != n.CPULeft || len(c.gpus) != len(n.GPULeft) {
		return false
	}
	for g, left := range n.GPULeft {
		if c.gpus[g] != left {
			return false
		}
	}
	return true
}

func (f *fgdPolicy) refresh(c *fgdNode, n *NodeState) {
	if len(c.gpus) != len(n.GPULeft) {
		c.gpus = make([]int64, len(n.GPULeft))
	}
	copy(c.gpus, n.GPULeft)
	if len(c.below) != len(f.millis) {
		c.below = make([]int64, len(f.millis))
		c.cnt = make([]int32, len(f.millis))
	}
	c.cpu = n.CPULeft
	c.total = 0
	for _, left := range c.gpus {
		c.total += left
	}
	for j, m := range f.millis {
		b, k := int64(0), int32(0)
		for _, left := range c.gpus {
			if left < m {
				b += left
			} else {
				k++
			}
		}
		c.below[j], c.cnt[j] = b, k
	}
	c.acc = f.accRow(n.Model)
	c.frag = f.fragOf(c.acc, c.cpu, c.total, c.below, c.cnt)
	c.valid, c.of = true, n
}

// fragOf is NodeGpuShareFragAmountScore for a node with cpu CPU left, total
// GPU share left and the per-share summaries below/cnt. The amounts are
// accumulated per category in typical-pod order and the categories summed
// in the simulator's order (Q1, Q2, Q4, XL, XR, NoAccess).
func (f *fgdPolicy) fragOf(acc []bool, cpu, total int64, below []int64, cnt []int32) float64 {
	var q1, q2, q4, xl, xr, na float64
	all := float64(total)
	for i := range f.shapes {
		t := &f.shapes[i]
		cpuOK := cpu >= t.cpu
		switch {
		case t.cpuOnly:
			if cpuOK {
				xl += float64(t.freq * all)
			} else {
				xr += float64(t.freq * all)
			}
		case !acc[i]:
			na += float64(t.freq * all)
		case cnt[t.mi] >= t.num:
			if cpuOK {
				q2 += float64(t.freq * float64(below[t.mi]))
			} else {
				q4 += float64(t.freq * all)
			}
		case cpuOK:
			q2 += float64(t.freq * all)
		default:
			q1 += float64(t.freq * all)
		}
	}
	return q1 + q2 + q4 + xl + xr + na
}

// fgdScore is the plugin's int64(sigmoid((before-after)/1000) × 100).
func fgdScore(before, after float64) int64 {
	x := (before - after) / 1000
	return int64(float64(1.0/(1.0+math.Exp(-x))) * simMaxNodeScore)
}

// shift moves one GPU's free share from a to b in the scratch summaries.
func (f *fgdPolicy) shift(a, b int64) {
	for j, m := range f.millis {
		if a < m {
			f.sBelow[j] -= a
		} else {
			f.sCnt[j]--
		}
		if b < m {
			f.sBelow[j] += b
		} else {
			f.sCnt[j]++
		}
	}
}

// scoreSharing scores a sharing pod on a node: the best GPU's score, and
// that GPU (the first of the best).
func (f *fgdPolicy) scoreSharing(c *fgdNode, p *Pod) (int64, int) {
	best, bestG := int64(0), -1
	cpu := c.cpu - p.CPUMilli
	total := c.total - p.GPUMilli
	for g, a := range c.gpus {
		if a < p.GPUMilli {
			continue
		}
		// A GPU with the same free share as an earlier one scores the
		// same and cannot displace it.
		dup := false
		for h := 0; h < g; h++ {
			if c.gpus[h] == a {
				dup = true
				break
			}
		}
		if dup {
			continue
		}
		copy(f.sBelow, c.below)
		copy(f.sCnt, c.cnt)
		f.shift(a, a-p.GPUMilli)
		s := fgdScore(c.frag, f.fragOf(c.acc, cpu, total, f.sBelow, f.sCnt))
		if bestG < 0 || s > best {
			best, bestG = s, g
		}
	}
	return best, bestG
}

// scoreSub scores a CPU-only or whole-GPU pod on a node, the pod taken
// away as NodeResource.Sub does: CPU, then its GPUs in increasing order of
// free share (lowest index first among equals) among those that hold it.
func (f *fgdPolicy) scoreSub(c *fgdNode, p *Pod) int64 {
	copy(f.sBelow, c.below)
	copy(f.sCnt, c.cnt)
	total := c.total
	lastLeft, lastIdx := int64(-1), -1
	for k := 0; k < p.NumGPU; k++ {
		pick := -1
		for g, left := range c.gpus {
			if left < p.GPUMilli || left < lastLeft || (left == lastLeft && g <= lastIdx) {
				continue
			}
			if pick < 0 || left < c.gpus[pick] {
				pick = g
			}
		}
		if pick < 0 {
			break
		}
		lastLeft, lastIdx = c.gpus[pick], pick
		f.shift(lastLeft, lastLeft-p.GPUMilli)
		total -= p.GPUMilli
	}
	return fgdScore(c.frag, f.fragOf(c.acc, c.cpu-p.CPUMilli, total, f.sBelow, f.sCnt))
}

func (f *fgdPolicy) Schedule(ctx context.Context, c *Cluster, p *Pod) (int, []int, bool, error) {
	if err := ctx.Err(); err != nil {
		return 0, nil, false, err
	}
	if len(f.nodes) != len(c.Nodes) {
		f.nodes = make([]fgdNode, len(c.Nodes))
	}
	sharing := p.Sharing()
	clear(f.memo)
	var h hostPicker
	h.reset()
	gpu := -1
	for i, n := range c.Nodes {
		if !n.FitsResources(p) {
			continue
		}
		fc := &f.nodes[i]
		if !fc.named || fc.model != n.Model {
			row, ok := f.rowOf[n.Model]
			if !ok {
				row = int32(len(f.rowOf))
				f.rowOf[n.Model] = row
			}
			fc.model, fc.row, fc.named = n.Model, row, true
		}
		memo := len(n.GPULeft) <= fgdMemoMaxGPUs
		var key fgdMemoKey
		if memo {
			key.row, key.ngpu, key.cpu = fc.row, int32(len(n.GPULeft)), n.CPULeft
			copy(key.gpus[:], n.GPULeft)
			if v, ok := f.memo[key]; ok {
				if h.offer(i, v.score) {
					gpu = v.gpu
				}
				continue
			}
		}
		if !fc.fresh(n) {
			f.refresh(fc, n)
		}
		var v fgdMemoVal
		if sharing {
			v.score, v.gpu = f.scoreSharing(fc, p)
		} else {
			v.score, v.gpu = f.scoreSub(fc, p), -1
		}
		if memo {
			f.memo[key] = v
		}
		if h.offer(i, v.score) {
			gpu = v.gpu
		}
	}
	if h.node < 0 {
		return 0, nil, false, nil
	}
	n := c.Nodes[h.node]
	switch {
	case sharing:
		return h.node, []int{gpu}, true, nil
	case p.NumGPU == 0:
		return h.node, nil, true, nil
	case p.GPUMilli >= MilliPerGPU:
		return h.node, gpusExclusive(n, p), true, nil
	default:
		// Outside the model (the simulator panics): first fit by index.
		return h.node, gpusFirstFit(n, p), true, nil
	}
}
