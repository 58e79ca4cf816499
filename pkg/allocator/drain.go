package allocator

import (
	"fmt"
	"slices"

	"github.com/gpuslice/gpuslice/pkg/podrequest"
	"github.com/gpuslice/gpuslice/pkg/topology"
)

// FreeOnGPU is the number of free healthy replicas of resource on the GPU
// with the given index (0 when the node has no such GPU or resource).
func (s *State) FreeOnGPU(gpuIndex int, resource string) int {
	ri, ok := s.node.resIndex[resource]
	if !ok {
		return 0
	}
	n := int32(0)
	for _, ui := range s.node.resources[ri].units {
		u := &s.node.units[ui]
		if !u.healthy || s.node.gpus[u.gpu].index != gpuIndex {
			continue
		}
		n += u.replicas - s.used[ui]
	}
	return int(n)
}

// GPUsHolding lists the indexes of t's GPUs that hold any of the devices
// (time-slicing replicas count for their device), in the order first
// found; devices t does not advertise are skipped.
func GPUsHolding(t *topology.Node, devs []ResourceDevices) []int {
	units, err := t.Units()
	if err != nil {
		return nil
	}
	gpuOf := make(map[string]int, len(units))
	for _, u := range units {
		gpuOf[u.DeviceID] = t.GPUs[u.GPU].Index
	}
	var out []int
	for _, rd := range devs {
		for _, id := range rd.DeviceIDs {
			if i, ok := gpuOf[topology.BaseDeviceID(id)]; ok && !slices.Contains(out, i) {
				out = append(out, i)
			}
		}
	}
	return out
}

// DrainConflict is a draining GPU that holds a free replica of a resource
// a pod asks for.
type DrainConflict struct {
	GPU      int
	Resource string
}

func (c DrainConflict) String() string {
	return fmt.Sprintf("GPU %d is draining for a MIG layout change and the kubelet could hand out its free %s", c.GPU, c.Resource)
}

// DrainConflicts lists, for a node whose GPUs with the given indexes are
// draining (they take no new pod until they are empty and their layout
// changes), the draining GPUs that hold a free replica of a resource req
// asks for. The kubelet, not the scheduler, picks which free device of a
// resource a container gets, and among free MIG instances of one profile
// its pick is arbitrary: a pod asking for such a resource may land on a
// draining GPU, so the node must not take it. Nil when the node may take
// the pod.
func (s *State) DrainConflicts(req *podrequest.Request, draining []int) []DrainConflict {
	if len(draining) == 0 || req == nil {
		return nil
	}
	var out []DrainConflict
	for _, gi := range draining {
		for _, rc := range req.Effective {
			if rc.Count > 0 && s.FreeOnGPU(gi, rc.Name) > 0 {
				out = append(out, DrainConflict{GPU: gi, Resource: rc.Name})
			}
		}
	}
	return out
}
