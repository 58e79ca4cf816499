package allocator

import (
	"iter"

	"github.com/gpuslice/gpuslice/pkg/podrequest"
)

// The fragmentation-aware score reads one model of a node's free GPU
// capacity: freeView, what the device plugin can still hand out, before a
// placement or after it. Every term is a small function over it: the
// capacity each class of the mix can still use and the pods it can still
// host (stranded, slots), the host shortfall (total), the slivers and dead
// space of the pieces a placement leaves (sliverGain, deadGain), and a
// cycle's Supply.
//
// Two primitives depend on how the node's device plugin serves a request,
// and only they know the node's mode:
//
//   - total: the free capacity, in GPU-equivalents;
//   - fit: how many requests of a given size one resource's free devices can
//     serve, and the free capacity such requests can use.
//
// In count mode (the NVIDIA device plugin: MIG devices, whole GPUs,
// time-sliced replicas a request may take from several GPUs) any free
// device of a resource serves, so a resource's free count is all there is.
// In one-GPU-per-request mode (share-style plugins and the openb
// benchmark; everything of that mode is in onegpu.go) a request is served
// from one device, or from whole unused devices, so where the free replicas
// lie matters.
type freeView struct {
	s      *State
	counts []delta     // count mode: devices taken, per resource
	units  []unitDelta // one-GPU-per-request mode: replicas taken, per device
}

// delta is a number of devices of a resource that a placement takes.
type delta struct {
	res   int32
	count int32
}

// freeOf is resource ri's free device count with deltas taken.
func (s *State) freeOf(ri int32, deltas []delta) int32 {
	f := s.free[ri]
	for _, d := range deltas {
		if d.res == ri {
			f -= d.count
		}
	}
	return f
}

// requested yields, for each resource of req's effective request that the
// node advertises, its index and the count asked for (positive).
func (n *Node) requested(req *podrequest.Request) iter.Seq2[int32, int32] {
	return func(yield func(int32, int32) bool) {
		for i := range req.Effective {
			rc := &req.Effective[i]
			if ri, ok := n.resIndex[rc.Name]; ok && rc.Count > 0 && !yield(ri, int32(rc.Count)) {
				return
			}
		}
	}
}

// placed returns the view after req's devices are taken, appending to the
// given buffers: counts per resource in count mode, the devices the plugin
// would pick in one-GPU-per-request mode, where ok is false when req does
// not fit.
func (s *State) placed(req *podrequest.Request, counts []delta, units []unitDelta) (v freeView, ok bool) {
	if s.node.oneGPU {
		units, ok = s.oneGPUDeltas(req, units)
		return freeView{s: s, units: units}, ok
	}
	for ri, n := range s.node.requested(req) {
		counts = append(counts, delta{res: ri, count: n})
	}
	return freeView{s: s, counts: counts}, true
}

// total is the free capacity, in GPU-equivalents.
func (v freeView) total() float64 {
	if v.s.node.oneGPU {
		return v.totalOneGPU()
	}
	t := 0.0
	for ri := range v.s.node.resources {
		t += float64(v.s.freeOf(int32(ri), v.counts)) * v.s.node.resources[ri].weight
	}
	return t
}

// fit is how many requests of need devices of resource ri the free devices
// can serve (under 1: none), and usable plus the free capacity of ri such
// requests can use. A class asking for no device of a resource fits
// nowhere.
func (v freeView) fit(ri, need int32, usable float64) (int64, float64) {
	r := &v.s.node.resources[ri]
	if need <= 0 {
		return 0, usable
	}
	if v.s.node.oneGPU {
		return v.fitOneGPU(r, need, usable)
	}
	f := v.s.freeOf(ri, v.counts)
	return int64(f / need), usable + float64(f)*r.weight
}

// stranded is the free capacity (free, in GPU-equivalents) that class c
// cannot use. With the node's CPU and memory known (h.Known), the node can
// host k more pods of c (see slots), c uses k times a pod's share and the
// rest is stranded; unknown, c uses the free capacity of the resources it
// asks for when it fits, none otherwise.
func (v freeView) stranded(free float64, c *MixClass, h HostFit) float64 {
	if h.Known {
		k, perPod := v.slots(c, h)
		return strandedFrom(free, k, perPod)
	}
	usable := 0.0
	for i := range c.Resources {
		rc := &c.Resources[i]
		ri, ok := v.s.node.resIndex[rc.Name]
		if !ok {
			return free
		}
		var m int64
		if m, usable = v.fit(ri, int32(rc.Count), usable); m < 1 {
			return free
		}
	}
	return free - usable
}

// strandedFrom is the free capacity a class cannot use when the node hosts
// k more of its pods, each taking perPod: all of it when k is 0.
func strandedFrom(free, k, perPod float64) float64 {
	if k == 0 {
		return free
	}
	return max(free-k*perPod, 0)
}

// slots is how many more pods of class c the node can host: the least of
// what each resource's free devices serve (see fit) and of what h's CPU and
// memory allow (fractional, see hostSlots); and the GPU capacity one pod of
// c takes. k is 0 when c does not fit.
func (v freeView) slots(c *MixClass, h HostFit) (k, perPod float64) {
	n := v.s.node
	k = h.hostSlots(c)
	for i := range c.Resources {
		if k == 0 {
			return 0, 0
		}
		rc := &c.Resources[i]
		ri, ok := n.resIndex[rc.Name]
		if !ok || rc.Count <= 0 {
			return 0, 0
		}
		m, _ := v.fit(ri, int32(rc.Count), 0)
		k = min(k, float64(m))
		perPod += float64(rc.Count) * n.resources[ri].weight
	}
	if k == 0 {
		return 0, 0
	}
	return k, perPod
}
