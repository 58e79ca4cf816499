package allocator

import (
	"fmt"

	"github.com/gpuslice/gpuslice/pkg/podrequest"
	"github.com/gpuslice/gpuslice/pkg/topology"
)

// Code classifies a feasibility verdict.
type Code uint8

const (
	// Fits: every requested resource has enough free healthy devices.
	Fits Code = iota
	// Insufficient: the node has the resource but too few free devices now;
	// freeing some (deletion, preemption) could help.
	Insufficient
	// NotOffered: the node advertises no device of the resource.
	NotOffered
	// ExceedsNode: the request is larger than every healthy device of the
	// resource on the node together; nothing but a reconfiguration helps.
	ExceedsNode
	// SharedCountOverOne: the device plugin runs with
	// failRequestsGreaterThanOne and a container asks for more than one
	// replica of a time-sliced resource; the kubelet would fail the pod.
	SharedCountOverOne
	// NoGPUFits: one GPU per request, and no single GPU has the replicas
	// free (Free is the most any one GPU has).
	NoGPUFits
	// NoWholeGPUs: one GPU per request, and too few GPUs are entirely
	// unused (Need and Free count GPUs).
	NoWholeGPUs
	// NotWholeGPUs: one GPU per request, and the request is more than one
	// GPU's replicas but not a whole number of GPUs (Total is one GPU's
	// replicas).
	NotWholeGPUs
	// SharesDevice: the request wants distinct devices (SharingDistinct),
	// and the device plugin would give a container its Need replicas of a
	// time-sliced resource on only Free different devices.
	SharesDevice
	// TooFewDevices: the request wants distinct devices, and the node has
	// only Total healthy devices advertising replicas of the resource,
	// fewer than the Need a container asks for.
	TooFewDevices
	// NotExclusive: the request wants exclusive devices (SharingExclusive)
	// and the node time-slices the resource.
	NotExclusive
)

// Verdict is the answer of Check. It holds no heap data, so producing it does
// not allocate; Reason formats the message on demand.
type Verdict struct {
	Code     Code
	Resource string
	// Need is the number of devices asked for; the rest describe the node's
	// devices of Resource.
	Need, Free, Used, Total, Unhealthy int
	Container                          string
	// Policy is the device plugin's allocation policy (SharesDevice).
	Policy topology.AllocationPolicy
}

// OK reports whether the request fits.
func (v Verdict) OK() bool { return v.Code == Fits }

// Unresolvable reports whether freeing devices on the node cannot make the
// request fit (the scheduler's UnschedulableAndUnresolvable).
func (v Verdict) Unresolvable() bool {
	switch v.Code {
	case NotOffered, ExceedsNode, SharedCountOverOne, NotWholeGPUs, TooFewDevices, NotExclusive:
		return true
	}
	return false
}

// Reason is a message a user can act on, naming the resource and the counts.
func (v Verdict) Reason() string {
	unhealthy := ""
	if v.Unhealthy > 0 {
		unhealthy = fmt.Sprintf(", %d unhealthy", v.Unhealthy)
	}
	switch v.Code {
	case Fits:
		return ""
	case Insufficient:
		if v.Free == 0 {
			return fmt.Sprintf("no free %s: %d of %d in use%s", v.Resource, v.Used, v.Total, unhealthy)
		}
		return fmt.Sprintf("not enough free %s: need %d, %d free (%d of %d in use%s)", v.Resource, v.Need, v.Free, v.Used, v.Total, unhealthy)
	case NotOffered:
		return fmt.Sprintf("node offers no %s", v.Resource)
	case ExceedsNode:
		return fmt.Sprintf("%s: request of %d exceeds the node's %d healthy devices (%d in all%s)", v.Resource, v.Need, v.Total-v.Unhealthy, v.Total, unhealthy)
	case NoGPUFits:
		return fmt.Sprintf("no single GPU has %d free %s (most free on one GPU: %d of %d)", v.Need, v.Resource, v.Free, v.Total)
	case NoWholeGPUs:
		return fmt.Sprintf("%s: need %d entirely unused GPUs, %d free", v.Resource, v.Need, v.Free)
	case NotWholeGPUs:
		return fmt.Sprintf("%s: request of %d is more than one GPU (%d) but not a whole number of GPUs", v.Resource, v.Need, v.Total)
	case SharesDevice:
		return fmt.Sprintf("container %q would get its %d %s replicas on %d physical device(s) (%s policy); it needs %d distinct devices", v.Container, v.Need, v.Resource, v.Free, v.Policy, v.Need)
	case TooFewDevices:
		return fmt.Sprintf("container %q asks for %d time-sliced %s replicas on distinct devices, the node has %d healthy devices offering it", v.Container, v.Need, v.Resource, v.Total)
	case NotExclusive:
		return fmt.Sprintf("%s is time-sliced on this node, and the pod asks for exclusive devices", v.Resource)
	case SharedCountOverOne:
		return fmt.Sprintf("container %q asks for %d replicas of time-sliced %s, but the device plugin sets failRequestsGreaterThanOne", v.Container, v.Need, v.Resource)
	}
	return fmt.Sprintf("unknown verdict %d", v.Code)
}

// Check reports whether req fits on the node now. It does not allocate,
// except for a request whose containers ask for several time-sliced
// replicas on distinct devices: that needs the predicted pick (Place).
func (s *State) Check(req *podrequest.Request) Verdict {
	if v := s.checkCounts(req); !v.OK() {
		return v
	}
	if s.needsDistinct(req) {
		_, v := s.place(req)
		return v
	}
	return Verdict{}
}

// needsDistinct reports whether req asks for distinct devices and one of its
// containers asks for more than one replica of a time-sliced resource of
// this node (on one-GPU-per-request nodes a request is served from one GPU
// by design: the rule does not apply).
func (s *State) needsDistinct(req *podrequest.Request) bool {
	n := s.node
	if req == nil || req.Sharing != podrequest.SharingDistinct || n.oneGPU {
		return false
	}
	for i := range req.Containers {
		for _, rc := range req.Containers[i].Resources {
			if rc.Count <= 1 {
				continue
			}
			if ri, ok := n.resIndex[rc.Name]; ok && n.resources[ri].shared {
				return true
			}
		}
	}
	return false
}

// checkCounts is Check without the distinct-device rule: enough free
// healthy devices, the device plugin's own limits, exclusivity.
func (s *State) checkCounts(req *podrequest.Request) Verdict {
	n := s.node
	if req == nil {
		return Verdict{}
	}
	if req.Sharing == podrequest.SharingExclusive {
		for i := range req.Effective {
			if ri, ok := n.resIndex[req.Effective[i].Name]; ok && n.resources[ri].shared {
				return Verdict{Code: NotExclusive, Resource: req.Effective[i].Name, Need: req.Effective[i].Count}
			}
		}
	}
	for i := range req.Effective {
		rc := &req.Effective[i]
		ri, ok := n.resIndex[rc.Name]
		if !ok {
			return Verdict{Code: NotOffered, Resource: rc.Name, Need: rc.Count}
		}
		r := &n.resources[ri]
		if int32(rc.Count) <= s.free[ri] {
			if n.oneGPU {
				if v := s.checkOneGPU(r, rc); !v.OK() {
					return v
				}
			}
			continue
		}
		v := Verdict{Code: Insufficient, Resource: rc.Name, Need: rc.Count, Free: int(s.free[ri]), Total: int(r.total), Unhealthy: int(r.total - r.healthy)}
		if int32(rc.Count) > r.healthy {
			v.Code = ExceedsNode
		}
		for _, ui := range r.units {
			v.Used += int(s.used[ui])
		}
		return v
	}
	if n.failOver1 {
		for i := range req.Containers {
			c := &req.Containers[i]
			for _, rc := range c.Resources {
				if rc.Count <= 1 {
					continue
				}
				if ri, ok := n.resIndex[rc.Name]; ok && n.resources[ri].shared {
					return Verdict{Code: SharedCountOverOne, Resource: rc.Name, Need: rc.Count, Container: c.Name}
				}
			}
		}
	}
	return Verdict{}
}
