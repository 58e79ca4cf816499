package allocator

import (
	"fmt"
	"math"

	"github.com/gpuslice/gpuslice/pkg/podrequest"
)

// Strategy is a scoring strategy.
type Strategy string

const (
	// Binpack prefers the GPUs, then the node, already most in use, and among
	// alike nodes the one where the pod consumes least: empty GPUs and empty
	// nodes stay empty.
	Binpack Strategy = "binpack"
	// Spread prefers the emptiest GPUs and nodes.
	Spread Strategy = "spread"
	// FragmentationAware prefers the placement that strands the least
	// capacity for the workload mix the cluster sees (in the spirit of FGD,
	// Weng et al., USENIX ATC'23).
	FragmentationAware Strategy = "fragmentation-aware"
)

// Strategies lists the valid strategies.
var Strategies = []Strategy{Binpack, Spread, FragmentationAware}

// Scorer scores feasible nodes for a pod. It is immutable and safe for
// concurrent use.
type Scorer struct {
	Strategy Strategy
	// GPUWeight and NodeWeight weigh GPU-level against node-level fullness for
	// binpack and spread. Both zero means 2 and 1.
	GPUWeight, NodeWeight float64
	// Mix is the workload mix for FragmentationAware. Nil or empty means the
	// pod's own request stands for the mix.
	Mix *Mix
	// TieBreak adds this multiple of the binpack fullness (in [0, 1]) to
	// FragmentationAware scores, so that among placements that strand the
	// same capacity the busier GPUs and nodes win. 0 adds nothing.
	TieBreak float64
	// HostShortfall weighs, in FragmentationAware scores, how much the
	// placement lowers the node's host shortfall: the free GPU capacity its
	// free CPU and memory cannot serve at the mix's mean CPU and memory per
	// GPU-equivalent (see hostShortGain). Both terms are GPU-equivalents; 0
	// leaves the shortfall out.
	HostShortfall float64
	// Slivers weighs, in FragmentationAware scores on nodes that serve a
	// request from one GPU (topology.TimeSlicing.OneGPUPerRequest), how
	// much the placement lowers the capacity left in slivers: free pieces
	// of a partly used GPU under sliverFraction of it (see sliverGain).
	// GPU-equivalents; 0 leaves slivers out.
	Slivers float64
	// DeadSpace weighs, in FragmentationAware scores on nodes that serve a
	// request from one GPU, how much the placement lowers the dead space of
	// the GPUs it takes from: the capacity that each free piece is expected
	// to leave idle for good once pods of the mix fill it (see deadGain).
	// GPU-equivalents; 0 leaves it out.
	DeadSpace float64
}

// HostFit is the CPU and memory side of a placement, for the
// fragmentation-aware strategy: what the pod requests and what the node has
// left before it. A class of the mix whose CPU or memory does not fit on the
// node can use none of the node's free GPU capacity. The zero value (Known
// false) leaves CPU and memory out.
type HostFit struct {
	Pod, NodeFree Host
	Known         bool
}

func (h HostFit) after() HostFit {
	h.NodeFree.MilliCPU -= h.Pod.MilliCPU
	h.NodeFree.MemBytes -= h.Pod.MemBytes
	return h
}

// hostSlots is how many pods of class c the CPU and memory h leaves can
// host (a large number when h is unknown or c asks for neither). It is
// fractional from one pod up: a node with CPU for 2.5 pods of c holds half a
// pod's CPU that c can still use once other pods free a little, and, above
// all, taking a core from a node whose CPU binds c costs c that core's
// share, not nothing until a whole pod's worth is gone. Under one pod it is
// 0: c does not fit.
func (h HostFit) hostSlots(c *MixClass) float64 {
	const unbounded = 1 << 40
	if !h.Known {
		return unbounded
	}
	k := float64(unbounded)
	if c.Host.MilliCPU > 0 {
		k = min(k, float64(max(h.NodeFree.MilliCPU, 0))/float64(c.Host.MilliCPU))
	}
	if c.Host.MemBytes > 0 {
		k = min(k, float64(max(h.NodeFree.MemBytes, 0))/float64(c.Host.MemBytes))
	}
	if k < 1 {
		return 0
	}
	return k
}

// Validate checks the scorer's settings.
func (sc *Scorer) Validate() error {
	switch sc.Strategy {
	case Binpack, Spread, FragmentationAware:
	default:
		return fmt.Errorf("unknown scoring strategy %q (want binpack, spread or fragmentation-aware)", sc.Strategy)
	}
	if sc.GPUWeight < 0 || sc.NodeWeight < 0 {
		return fmt.Errorf("weights must not be negative (gpu %v, node %v)", sc.GPUWeight, sc.NodeWeight)
	}
	for _, w := range []struct {
		name string
		v    float64
	}{{"tie-break", sc.TieBreak}, {"host shortfall", sc.HostShortfall}, {"sliver", sc.Slivers}, {"dead space", sc.DeadSpace}} {
		if w.v < 0 || math.IsNaN(w.v) || math.IsInf(w.v, 0) {
			return fmt.Errorf("%s weight must be finite and not negative, got %v", w.name, w.v)
		}
	}
	return nil
}

// maxReqResources bounds the distinct GPU resources one pod asks for that
// scoring tracks on the stack; more spill to the heap.
const maxReqResources = 4

// maxStackUnits bounds the devices of one resource simulated on the stack.
const maxStackUnits = 64

// Score rates placing req on the node; higher is better. Binpack and Spread
// return a busyness in [0, 1] minus 0.1 per GPU-equivalent the pod
// consumes; FragmentationAware returns minus the change in expected stranded
// GPU capacity, in GPU-equivalents. Compare scores of one strategy only.
// The caller has checked that req fits.
func (sc *Scorer) Score(s *State, req *podrequest.Request) float64 {
	return sc.ScoreHost(s, req, HostFit{})
}

// ScoreHost is Score with the node's CPU and memory taken into account by
// FragmentationAware (the other strategies ignore h). req may ask for no GPU:
// a CPU-only pod's placement can still strand GPUs by taking the CPU or
// memory that GPU pods of the mix need.
func (sc *Scorer) ScoreHost(s *State, req *podrequest.Request, h HostFit) float64 {
	wg, wn := sc.GPUWeight, sc.NodeWeight
	if wg == 0 && wn == 0 {
		wg, wn = 2, 1
	}
	switch sc.Strategy {
	case FragmentationAware:
		gain := s.fragmentationGain(req, sc, h)
		if sc.TieBreak != 0 {
			gain += sc.TieBreak * s.fullness(req, wg, wn)
		}
		return gain
	case Spread:
		return s.emptiness(req, wg, wn)
	default:
		return s.fullness(req, wg, wn) + scarcityWeight*s.scarcity(req)
	}
}

// sizeCost is what one GPU-equivalent consumed costs in binpack and spread
// scores: among nodes that are otherwise alike, the pod goes where it takes
// the least capacity (a time-sliced replica rather than a whole GPU for the
// same nvidia.com/gpu request).
const sizeCost = 0.1

// fullness is how busy, before the placement, the GPUs the pod is predicted
// to land on are (weight wg) and how busy the node is (weight wn), minus the
// capacity the pod consumes. Binpack maximises it: pods go to GPUs and nodes
// already in use, so empty ones stay empty.
func (s *State) fullness(req *podrequest.Request, wg, wn float64) float64 {
	gpuFill, nodeFill, added := s.busyness(req)
	return (wg*gpuFill+wn*nodeFill)/(wg+wn) - sizeCost*added
}

// scarcityWeight weighs, in binpack (not in fragmentation-aware's
// tie-break), the share of the node's devices of
// each requested resource that the pod takes: among nodes that are
// otherwise alike (empty nodes, when a pod must open one), the pod goes
// where its kind of device is scarce, and nodes rich in it stay free for
// the pods that need many (a 1g pod opens an all-balanced A100 rather than
// an all-1g one).
const scarcityWeight = 0.01

// scarcity is the mean over the requested resources of the request's share
// of the node's healthy devices of that resource.
func (s *State) scarcity(req *podrequest.Request) float64 {
	n := s.node
	sum, k := 0.0, 0
	for ri, count := range n.requested(req) {
		if healthy := n.resources[ri].healthy; healthy > 0 {
			sum += min(float64(count)/float64(healthy), 1)
			k++
		}
	}
	if k == 0 {
		return 0
	}
	return sum / float64(k)
}

// emptiness is spread's score: the opposite preference for GPUs and nodes,
// with the same cost for consumed capacity.
func (s *State) emptiness(req *podrequest.Request, wg, wn float64) float64 {
	gpuFill, nodeFill, added := s.busyness(req)
	return (wg*(1-gpuFill)+wn*(1-nodeFill))/(wg+wn) - sizeCost*added
}

// busyness returns the fill before placement of the GPUs the pod lands on,
// of the node, and the GPU-equivalents the pod consumes.
func (s *State) busyness(req *podrequest.Request) (gpuFill, nodeFill, added float64) {
	n := s.node
	gpuSum, gpuWt := 0.0, 0.0
	for ri, count := range n.requested(req) {
		r := &n.resources[ri]
		w := float64(count) * r.weight
		added += w
		gpuWt += w
		gpuSum += w * s.gpuFillOfPick(r, int(count))
	}
	if n.totalWt > 0 {
		nodeFill = s.usedWt / n.totalWt
	}
	gpuFill = nodeFill
	if gpuWt > 0 {
		gpuFill = gpuSum / gpuWt
	}
	return gpuFill, nodeFill, added
}

// gpuFillOfPick is the mean fill, before the pick, of the GPUs the
// request's devices of r land on. Time-sliced replicas follow the plugin's
// greedy comparator; for MIG devices and whole GPUs the plugin's pick among
// free devices is arbitrary, so it is the expectation over the free devices.
func (s *State) gpuFillOfPick(r *resource, count int) float64 {
	n := s.node
	if n.oneGPU {
		return s.gpuFillOneGPU(r, count)
	}
	if !r.shared {
		sum, cnt := 0.0, 0
		for _, ui := range r.units {
			u := &n.units[ui]
			if !u.healthy || s.used[ui] >= u.replicas {
				continue
			}
			g := &n.gpus[u.gpu]
			sum += s.gpuUsed[u.gpu] / g.capacity
			cnt++
		}
		if cnt == 0 {
			return 0
		}
		return sum / float64(cnt)
	}
	var extraBuf, pickedBuf [maxStackUnits]int32
	extra, picked := extraBuf[:], pickedBuf[:]
	if len(r.units) > maxStackUnits {
		extra, picked = make([]int32, len(r.units)), make([]int32, len(r.units))
	} else {
		extra, picked = extra[:len(r.units)], picked[:len(r.units)]
	}
	for k := 0; k < count; k++ {
		j := s.choose(r, extra, picked)
		if j < 0 {
			break
		}
		extra[j]++
		picked[j]++
	}
	sum, total := 0.0, 0
	for j, ui := range r.units {
		if picked[j] == 0 {
			continue
		}
		u := &n.units[ui]
		g := &n.gpus[u.gpu]
		sum += float64(picked[j]) * s.gpuUsed[u.gpu] / g.capacity
		total += int(picked[j])
	}
	if total == 0 {
		return 0
	}
	return sum / float64(total)
}
