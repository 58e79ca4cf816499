package allocator

import (
	"github.com/gpuslice/gpuslice/pkg/podrequest"
	"github.com/gpuslice/gpuslice/pkg/topology"
)

// One-GPU-per-request sharing (topology.TimeSlicing.OneGPUPerRequest): a
// container's request of a time-sliced resource is served from a single GPU
// when it is at most one GPU's replicas, and from that many entirely unused
// GPUs when it is a whole number of GPUs' replicas. NVIDIA's device plugin
// does not work this way (it may split a request across GPUs); GPU-sharing
// plugins such as Alibaba's gpushare do, and so does the FGD paper's
// simulator. Compile only allows the mode when every advertised resource is
// time-sliced.

// perUnit is the replica count of each device of a shared resource (the
// device plugin splits every device of a resource the same number of ways).
func (n *Node) perUnit(r *resource) int32 {
	if len(r.units) == 0 {
		return 0
	}
	return n.units[r.units[0]].replicas
}

// unitFree is a device's free replicas, with deltas taken; 0 when unhealthy.
func (s *State) unitFree(ui int32, deltas []unitDelta) int32 {
	u := &s.node.units[ui]
	if !u.healthy {
		return 0
	}
	f := u.replicas - s.used[ui]
	for _, d := range deltas {
		if d.unit == ui {
			f -= d.count
		}
	}
	return f
}

type unitDelta struct {
	unit  int32
	count int32
}

// checkOneGPU is Check's per-GPU test for one request of a shared resource.
func (s *State) checkOneGPU(r *resource, rc *podrequest.ResourceCount) Verdict {
	n := s.node
	per := n.perUnit(r)
	need := int32(rc.Count)
	if need <= per {
		best := int32(0)
		for _, ui := range r.units {
			f := s.unitFree(ui, nil)
			if f >= need {
				return Verdict{}
			}
			best = max(best, f)
		}
		return Verdict{Code: NoGPUFits, Resource: rc.Name, Need: rc.Count, Free: int(best), Total: int(per)}
	}
	if need%per != 0 {
		return Verdict{Code: NotWholeGPUs, Resource: rc.Name, Need: rc.Count, Total: int(per)}
	}
	whole, healthy := 0, 0
	for _, ui := range r.units {
		if !n.units[ui].healthy {
			continue
		}
		healthy++
		if s.used[ui] == 0 {
			whole++
		}
	}
	if int(need/per) <= whole {
		return Verdict{}
	}
	v := Verdict{Code: NoWholeGPUs, Resource: rc.Name, Need: int(need / per), Free: whole, Total: int(per)}
	if int(need/per) > healthy {
		v.Code = ExceedsNode
		v.Need, v.Total, v.Unhealthy = rc.Count, int(r.total), int(r.total-r.healthy)
	}
	return v
}

// fitUnit returns the position in r.units of the device the plugin's policy
// would serve a request of need replicas (at most one device's worth) from,
// or -1: packed takes the fullest device that fits (best fit), distributed
// and spread the emptiest. Ties keep topology order.
func (s *State) fitUnit(r *resource, need int32, deltas []unitDelta) int {
	best, bestFree := -1, int32(0)
	for j, ui := range r.units {
		f := s.unitFree(ui, deltas)
		if f < need {
			continue
		}
		if best >= 0 {
			if s.node.policy == topology.PolicyPacked {
				if f >= bestFree {
					continue
				}
			} else if f <= bestFree {
				continue
			}
		}
		best, bestFree = j, f
	}
	return best
}

// pickOneGPU is pick for a shared resource in one-GPU-per-request mode. It
// returns fewer than size devices when the request cannot be served.
func (s *State) pickOneGPU(r *resource, required []ref, size int) []ref {
	per := s.node.perUnit(r)
	need := int32(size - len(required))
	if need <= 0 {
		return required
	}
	take := func(ui int32, k int32) {
		for ; k > 0; k-- {
			nr := ref{unit: ui, replica: s.lowestFree(ui)}
			s.flip(nr, true)
			required = append(required, nr)
		}
	}
	if int32(size) <= per {
		if len(required) > 0 {
			// Devices passed on by an init container pin the GPU.
			ui := required[0].unit
			if s.unitFree(ui, nil) >= need {
				take(ui, need)
			}
			return required
		}
		if j := s.fitUnit(r, need, nil); j >= 0 {
			take(r.units[j], need)
		}
		return required
	}
	if need%per != 0 {
		return required
	}
	for _, ui := range r.units {
		if need == 0 {
			break
		}
		if s.node.units[ui].healthy && s.used[ui] == 0 {
			take(ui, per)
			need -= per
		}
	}
	return required
}

// oneGPUDeltas predicts, without changing s, which devices req's effective
// request takes, for scoring. ok is false when it does not fit.
func (s *State) oneGPUDeltas(req *podrequest.Request, buf []unitDelta) (deltas []unitDelta, ok bool) {
	n := s.node
	deltas = buf[:0]
	for i := range req.Effective {
		rc := &req.Effective[i]
		ri, found := n.resIndex[rc.Name]
		if !found || rc.Count <= 0 {
			continue
		}
		r := &n.resources[ri]
		per := n.perUnit(r)
		need := int32(rc.Count)
		if need <= per {
			j := s.fitUnit(r, need, deltas)
			if j < 0 {
				return deltas, false
			}
			deltas = append(deltas, unitDelta{unit: r.units[j], count: need})
			continue
		}
		for _, ui := range r.units {
			if need <= 0 {
				break
			}
			if s.unitFree(ui, deltas) == per && n.units[ui].healthy {
				deltas = append(deltas, unitDelta{unit: ui, count: per})
				need -= per
			}
		}
		if need != 0 {
			return deltas, false
		}
	}
	return deltas, true
}

// fragmentationGainOneGPU is fragmentationGain at GPU level, as the FGD
// paper defines it: for a class that fits on the node, the stranded
// capacity is the free capacity of the GPUs that cannot serve the class's
// per-GPU share (all partly used GPUs, for a class asking for whole GPUs);
// for a class that does not fit, all free capacity.
func (s *State) fragmentationGainOneGPU(req *podrequest.Request, mix *Mix, h HostFit, hostShortW, sliverW, deadW float64) float64 {
	var buf [maxReqResources * 8]unitDelta
	deltas, ok := s.oneGPUDeltas(req, buf[:])
	if !ok {
		return 0 // Check rejects it; nothing to compare
	}
	freeBefore, freeAfter := s.freeWeight(nil), s.freeWeight(deltas)
	ha := h.after()
	return mixGain(mix, req, h.Pod,
		func(c *MixClass) float64 { return s.strandedOneGPU(nil, freeBefore, c, h) },
		func(c *MixClass) float64 { return s.strandedOneGPU(deltas, freeAfter, c, ha) }) +
		s.hostShortGain(hostShortW, mix, req, h, freeBefore, freeAfter) +
		s.sliverGain(sliverW, deltas) +
		s.deadGain(deadW, mix, deltas)
}

func (s *State) freeWeight(deltas []unitDelta) float64 {
	total := 0.0
	for ui := range s.node.units {
		total += float64(s.unitFree(int32(ui), deltas)) * s.node.units[ui].weight
	}
	return total
}

func (s *State) strandedOneGPU(deltas []unitDelta, free float64, c *MixClass, h HostFit) float64 {
	if h.Known {
		return s.strandedSlotsOneGPU(deltas, free, c, h)
	}
	n := s.node
	usable := 0.0
	for i := range c.Resources {
		rc := &c.Resources[i]
		ri, ok := n.resIndex[rc.Name]
		if !ok {
			return free
		}
		r := &n.resources[ri]
		per := n.perUnit(r)
		need := int32(rc.Count)
		if need > per {
			if need%per != 0 {
				return free
			}
			whole := int32(0)
			for _, ui := range r.units {
				if s.unitFree(ui, deltas) == per {
					whole++
					usable += float64(per) * n.units[ui].weight
				}
			}
			if whole < need/per {
				return free
			}
			continue
		}
		fits := false
		for _, ui := range r.units {
			if f := s.unitFree(ui, deltas); f >= need {
				fits = true
				usable += float64(f) * n.units[ui].weight
			}
		}
		if !fits {
			return free
		}
	}
	return free - usable
}

// gpuFillOneGPU is gpuFillOfPick in one-GPU-per-request mode.
func (s *State) gpuFillOneGPU(r *resource, count int) float64 {
	per := s.node.perUnit(r)
	if int32(count) > per {
		return 0 // whole, unused GPUs
	}
	j := s.fitUnit(r, int32(count), nil)
	if j < 0 {
		return 0
	}
	u := &s.node.units[r.units[j]]
	return s.gpuUsed[u.gpu] / s.node.gpus[u.gpu].capacity
}

// strandedSlotsOneGPU is the stranded capacity when the node's CPU and
// memory are known: the node can host k more pods of class c (see
// slotsOneGPU), the class can use k times its GPU request and the rest of
// the free capacity is stranded. Unlike FGD's one-pod test, this sees a node
// whose CPU serves two more pods while six GPUs are free.
func (s *State) strandedSlotsOneGPU(deltas []unitDelta, free float64, c *MixClass, h HostFit) float64 {
	k, perPod := s.slotsOneGPU(deltas, c, h)
	return strandedFrom(free, k, perPod)
}

// slotsOneGPU is slots in one-GPU-per-request mode: the least of how many
// pods of c fit on the GPUs (slots of the class's share on each GPU, or
// sets of whole unused GPUs) and in h's CPU and memory.
func (s *State) slotsOneGPU(deltas []unitDelta, c *MixClass, h HostFit) (k, perPod float64) {
	n := s.node
	k = h.hostSlots(c)
	if k == 0 {
		return 0, 0
	}
	for i := range c.Resources {
		rc := &c.Resources[i]
		ri, ok := n.resIndex[rc.Name]
		if !ok {
			return 0, 0
		}
		r := &n.resources[ri]
		per := n.perUnit(r)
		need := int32(rc.Count)
		slots := int64(0)
		if need > per {
			if need%per != 0 {
				return 0, 0
			}
			whole := int64(0)
			for _, ui := range r.units {
				if n.units[ui].healthy && s.unitFree(ui, deltas) == per {
					whole++
				}
			}
			slots = whole / int64(need/per)
		} else {
			for _, ui := range r.units {
				slots += int64(s.unitFree(ui, deltas) / need)
			}
		}
		k = min(k, float64(slots))
		if k == 0 {
			return 0, 0
		}
		perPod += float64(need) * r.weight
	}
	return k, perPod
}
