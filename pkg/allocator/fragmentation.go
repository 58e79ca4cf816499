package allocator

import "github.com/gpuslice/gpuslice/pkg/podrequest"

// fragmentationGain is F(before) - F(after): how much placing req lowers the
// node's expected stranded capacity under the mix. F is, in the manner of
// FGD, the expectation over workload classes m of the free GPU capacity that
// m cannot use: all free capacity when m does not fit on the node, else the
// free capacity in resources m does not ask for. The device plugin hands out
// any free device of a resource, so "fits" is a count per resource.
func (s *State) fragmentationGain(req *podrequest.Request, mix *Mix, h HostFit, hostShortW float64) float64 {
	n := s.node
	var deltaBuf [maxReqResources]delta
	deltas := deltaBuf[:0]
	for i := range req.Effective {
		rc := &req.Effective[i]
		if ri, ok := n.resIndex[rc.Name]; ok && rc.Count > 0 {
			deltas = append(deltas, delta{res: ri, count: int32(rc.Count)})
		}
	}
	freeBefore, freeAfter := 0.0, 0.0
	for ri := range n.resources {
		w := n.resources[ri].weight
		freeBefore += float64(s.free[ri]) * w
		freeAfter += float64(s.freeOf(int32(ri), deltas)) * w
	}
	ha := h.after()
	return mixGain(mix, req, h.Pod,
		func(c *MixClass) float64 { return s.stranded(nil, freeBefore, c, h) },
		func(c *MixClass) float64 { return s.stranded(deltas, freeAfter, c, ha) }) +
		s.hostShortGain(hostShortW, mix, req, h, freeBefore, freeAfter)
}

// mixGain is the weighted sum over the mix's classes of before(c) -
// after(c), the stranded capacity without and with the placement; with no
// mix, the pod's own request stands for it.
func mixGain(mix *Mix, req *podrequest.Request, pod Host, before, after func(*MixClass) float64) float64 {
	if mix == nil || len(mix.Classes) == 0 {
		self := MixClass{Resources: req.Effective, Host: pod, Weight: 1}
		return before(&self) - after(&self)
	}
	b, a := 0.0, 0.0
	for i := range mix.Classes {
		c := &mix.Classes[i]
		b += c.Weight * before(c)
		a += c.Weight * after(c)
	}
	return b - a
}

type delta struct {
	res   int32
	count int32
}

func (s *State) freeOf(ri int32, deltas []delta) int32 {
	f := s.free[ri]
	for _, d := range deltas {
		if d.res == ri {
			f -= d.count
		}
	}
	return f
}

// stranded is the free capacity (free, in GPU-equivalents) that class c
// cannot use, with deltas taken from the free counts.
func (s *State) stranded(deltas []delta, free float64, c *MixClass, h HostFit) float64 {
	if h.Known {
		return s.strandedSlots(deltas, free, c, h)
	}
	n := s.node
	usable := 0.0
	for i := range c.Resources {
		rc := &c.Resources[i]
		ri, ok := n.resIndex[rc.Name]
		if !ok {
			return free
		}
		f := s.freeOf(ri, deltas)
		if f < int32(rc.Count) {
			return free
		}
		usable += float64(f) * n.resources[ri].weight
	}
	return free - usable
}

// strandedSlots is stranded when the node's CPU and memory are known: the
// node can host k more pods of class c (see slots), the class uses k times
// its request, the rest is stranded.
func (s *State) strandedSlots(deltas []delta, free float64, c *MixClass, h HostFit) float64 {
	k, perPod := s.slots(deltas, c, h)
	return strandedFrom(free, k, perPod)
}

// strandedFrom is the free capacity a class cannot use when the node hosts
// k more of its pods, each taking perPod: all of it when k is 0.
func strandedFrom(free, k, perPod float64) float64 {
	if k == 0 {
		return free
	}
	return max(free-k*perPod, 0)
}

// slots is how many more pods of class c the node can host, with deltas
// taken from the free counts: the least of the free devices of each
// resource divided by the class's count and of what h's CPU and memory
// allow (fractional, see hostSlots); and the weighted GPU capacity one pod
// of c takes. k is 0 when c does not fit.
func (s *State) slots(deltas []delta, c *MixClass, h HostFit) (k, perPod float64) {
	n := s.node
	k = h.hostSlots(c)
	for i := range c.Resources {
		rc := &c.Resources[i]
		ri, ok := n.resIndex[rc.Name]
		if !ok || rc.Count <= 0 {
			return 0, 0
		}
		k = min(k, float64(s.freeOf(ri, deltas)/int32(rc.Count)))
		perPod += float64(rc.Count) * n.resources[ri].weight
	}
	return k, perPod
}
