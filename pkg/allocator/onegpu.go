package allocator

import (
	"github.com/gpuslice/gpuslice/pkg/podrequest"
	"github.com/gpuslice/gpuslice/pkg/topology"
)

// One-GPU-per-request sharing (topology.TimeSlicing.OneGPUPerRequest): all
// of the mode is in this file. A
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
	for ri, need := range n.requested(req) {
		r := &n.resources[ri]
		if per := n.perUnit(r); need > per {
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
			continue
		}
		j := s.fitUnit(r, need, deltas)
		if j < 0 {
			return deltas, false
		}
		deltas = append(deltas, unitDelta{unit: r.units[j], count: need})
	}
	return deltas, true
}

// totalOneGPU is freeView.total in one-GPU-per-request mode: the free
// replicas of every device.
func (v freeView) totalOneGPU() float64 {
	t := 0.0
	for ui := range v.s.node.units {
		t += float64(v.s.unitFree(int32(ui), v.units)) * v.s.node.units[ui].weight
	}
	return t
}

// fitOneGPU is freeView.fit in one-GPU-per-request mode. A request of at
// most one device's replicas is served from one device: each device serves
// as many as its free replicas hold, and the devices with room for one can
// use their free replicas. A request of whole devices takes that many
// unused ones, and can use those.
func (v freeView) fitOneGPU(r *resource, need int32, usable float64) (int64, float64) {
	n := v.s.node
	per := n.perUnit(r)
	if need > per {
		if need%per != 0 {
			return 0, usable
		}
		whole := int64(0)
		for _, ui := range r.units {
			if n.units[ui].healthy && v.s.unitFree(ui, v.units) == per {
				whole++
				usable += float64(per) * n.units[ui].weight
			}
		}
		return whole / int64(need/per), usable
	}
	slots := int64(0)
	for _, ui := range r.units {
		f := v.s.unitFree(ui, v.units)
		slots += int64(f / need)
		if f >= need {
			usable += float64(f) * n.units[ui].weight
		}
	}
	return slots, usable
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
