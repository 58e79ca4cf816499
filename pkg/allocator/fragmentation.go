package allocator

import "github.com/gpuslice/gpuslice/pkg/podrequest"

// fragmentationGain is F(before) - F(after): how much placing req lowers the
// node's expected stranded capacity under the scorer's mix, plus its other
// weighed terms. F is, in the manner of FGD, the expectation over workload
// classes m of the free GPU capacity that m cannot use (see stranded). All
// terms read the free capacity before and after the placement (freeView);
// slivers and dead space only exist where a request is served from one GPU.
func (s *State) fragmentationGain(req *podrequest.Request, sc *Scorer, h HostFit) float64 {
	var countBuf [maxReqResources]delta
	var unitBuf [maxReqResources * 8]unitDelta
	before := freeView{s: s}
	after, ok := s.placed(req, countBuf[:0], unitBuf[:0])
	if !ok {
		return 0 // Check rejects it; nothing to compare
	}
	freeBefore, freeAfter := before.total(), after.total()
	ha := h.after()
	return mixGain(sc.Mix, req, h.Pod,
		func(c *MixClass) float64 { return before.stranded(freeBefore, c, h) },
		func(c *MixClass) float64 { return after.stranded(freeAfter, c, ha) }) +
		s.hostShortGain(sc.HostShortfall, sc.Mix, req, h, freeBefore, freeAfter) +
		after.sliverGain(sc.Slivers) +
		after.deadGain(sc.DeadSpace, sc.Mix)
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
