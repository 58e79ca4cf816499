package allocator

import (
	"slices"

	"github.com/gpuslice/gpuslice/pkg/podrequest"
	"github.com/gpuslice/gpuslice/pkg/topology"
)

// ContainerDevices is the predicted device set of one container.
type ContainerDevices struct {
	Name    string
	Devices []ResourceDevices
}

// Placement is the predicted assignment of a pod's devices on one node.
type Placement struct {
	Node       string
	Containers []ContainerDevices
}

// Devices returns each device of the placement once, per resource in order of
// first appearance. Devices an init container passes on to a later container
// appear under both containers but are allocated once.
func (p *Placement) Devices() []ResourceDevices {
	if p == nil {
		return nil
	}
	if len(p.Containers) == 1 {
		// One container lists each device once already.
		out := make([]ResourceDevices, len(p.Containers[0].Devices))
		copy(out, p.Containers[0].Devices)
		return out
	}
	var out []ResourceDevices
	seen := map[string]bool{}
	idx := map[string]int{}
	for _, c := range p.Containers {
		for _, rd := range c.Devices {
			for _, id := range rd.DeviceIDs {
				key := rd.Resource + "\x00" + id
				if seen[key] {
					continue
				}
				seen[key] = true
				i, ok := idx[rd.Resource]
				if !ok {
					i = len(out)
					idx[rd.Resource] = i
					out = append(out, ResourceDevices{Resource: rd.Resource})
				}
				out[i].DeviceIDs = append(out[i].DeviceIDs, id)
			}
		}
	}
	return out
}

// Place predicts the devices the kubelet and the stock device plugin would
// give req on this node. It does not change s; commit the result with
// s.Apply(p.Devices()). When the request does not fit, the placement is nil
// and the verdict says why.
//
// The kubelet allocates container by container, init containers first; a
// container first takes devices left by earlier non-restartable init
// containers, then asks the plugin for the rest, passing those as
// must-include devices. The plugin ranks physical GPUs with its policy's
// comparator and takes one replica at a time.
//
// A request with SharingDistinct is refused (SharesDevice) where the
// predicted pick gives a container several replicas of one device.
func (s *State) Place(req *podrequest.Request) (*Placement, Verdict) {
	if v := s.checkCounts(req); !v.OK() {
		return nil, v
	}
	return s.place(req)
}

// place is Place after checkCounts.
func (s *State) place(req *podrequest.Request) (*Placement, Verdict) {
	distinct := s.needsDistinct(req)
	work := s.Clone()
	n := s.node
	reuse := map[int32][]ref{}
	p := &Placement{Node: n.name}
	for _, c := range req.Containers {
		cd := ContainerDevices{Name: c.Name}
		for _, rc := range c.Resources {
			ri := n.resIndex[rc.Name] // Check saw every resource
			got := make([]ref, 0, rc.Count)
			for _, r := range reuse[ri] {
				if len(got) == rc.Count {
					break
				}
				got = append(got, r)
			}
			got = work.pick(ri, got, rc.Count)
			if len(got) < rc.Count {
				// Only one GPU per request can get here: Check looks at the
				// pod's effective request, not at each container's.
				r := &n.resources[ri]
				return nil, Verdict{Code: NoGPUFits, Resource: rc.Name, Need: rc.Count, Total: int(n.perUnit(r)), Container: c.Name}
			}
			if distinct && rc.Count > 1 && n.resources[ri].shared {
				if v := s.distinctDevices(ri, got, c.Name, rc); !v.OK() {
					return nil, v
				}
			}
			ids := make([]string, len(got))
			for i, r := range got {
				ids[i] = n.deviceID(r)
			}
			cd.Devices = append(cd.Devices, ResourceDevices{Resource: rc.Name, DeviceIDs: ids})
			if c.Init && !c.Restartable {
				reuse[ri] = unionRefs(reuse[ri], got)
			} else {
				reuse[ri] = minusRefs(reuse[ri], got)
			}
		}
		p.Containers = append(p.Containers, cd)
	}
	return p, Verdict{}
}

// distinctDevices checks that the replicas got of resource ri are on
// rc.Count different devices.
func (s *State) distinctDevices(ri int32, got []ref, container string, rc podrequest.ResourceCount) Verdict {
	n := s.node
	units := make(map[int32]struct{}, len(got))
	for _, r := range got {
		units[r.unit] = struct{}{}
	}
	if len(units) >= rc.Count {
		return Verdict{}
	}
	healthy := 0
	for _, ui := range n.resources[ri].units {
		if n.units[ui].healthy {
			healthy++
		}
	}
	if healthy < rc.Count {
		return Verdict{Code: TooFewDevices, Resource: rc.Name, Need: rc.Count, Total: healthy, Container: container}
	}
	return Verdict{Code: SharesDevice, Resource: rc.Name, Need: rc.Count, Free: len(units), Container: container, Policy: n.policy}
}

// pick adds devices of resource ri to required until it holds size, marking
// them taken in s, and returns the full list (required first).
func (s *State) pick(ri int32, required []ref, size int) []ref {
	r := &s.node.resources[ri]
	if s.node.oneGPU {
		return s.pickOneGPU(r, required, size)
	}
	if r.aligned {
		for _, ui := range r.units {
			if len(required) >= size {
				break
			}
			if s.node.units[ui].healthy && s.used[ui] == 0 {
				nr := ref{unit: ui}
				s.flip(nr, true)
				required = append(required, nr)
			}
		}
		return required
	}
	picked := make([]int32, len(r.units))
	pos := make(map[int32]int, len(r.units))
	for j, ui := range r.units {
		pos[ui] = j
	}
	for _, q := range required {
		picked[pos[q.unit]]++
	}
	for len(required) < size {
		j := s.choose(r, nil, picked)
		if j < 0 {
			break // unreachable after Check; never invent a device
		}
		ui := r.units[j]
		nr := ref{unit: ui, replica: s.lowestFree(ui)}
		s.flip(nr, true)
		picked[j]++
		required = append(required, nr)
	}
	return required
}

// choose returns the position in r.units of the GPU the plugin's comparator
// prefers for the next replica, or -1 when none is free. extra (optional)
// adds replicas tentatively taken on top of s; picked counts replicas taken
// from each unit by the current request. Ties keep topology order: the
// plugin's choice among equals is arbitrary.
func (s *State) choose(r *resource, extra, picked []int32) int {
	best, bestAlloc, bestPicked := -1, int32(0), int32(0)
	policy := s.node.policy
	for j, ui := range r.units {
		u := &s.node.units[ui]
		alloc := s.used[ui]
		if extra != nil {
			alloc += extra[j]
		}
		if !u.healthy || alloc >= u.replicas {
			continue
		}
		pk := picked[j]
		if best >= 0 && !better(policy, alloc, pk, bestAlloc, bestPicked) {
			continue
		}
		best, bestAlloc, bestPicked = j, alloc, pk
	}
	return best
}

func better(policy topology.AllocationPolicy, alloc, picked, bestAlloc, bestPicked int32) bool {
	switch policy {
	case topology.PolicyPacked:
		if alloc != bestAlloc {
			return alloc > bestAlloc
		}
		return picked < bestPicked
	case topology.PolicySpread:
		if picked != bestPicked {
			return picked < bestPicked
		}
		return alloc < bestAlloc
	default: // distributed
		if alloc != bestAlloc {
			return alloc < bestAlloc
		}
		return picked < bestPicked
	}
}

func unionRefs(a, b []ref) []ref {
	for _, x := range b {
		if !slices.Contains(a, x) {
			a = append(a, x)
		}
	}
	return a
}

func minusRefs(a, b []ref) []ref {
	out := a[:0:0]
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}
