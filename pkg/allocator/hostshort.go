package allocator

import "github.com/gpuslice/gpuslice/pkg/podrequest"

// The class-by-class stranding of fragmentationGain asks what the next pod
// of each class could use. Once the cluster fills, the node's free GPU
// capacity will be taken by pods of the mix whatever comes next, and they
// bring CPU and memory with them: about the mix's mean CPU and memory per
// GPU-equivalent. A node whose free CPU or memory is short of that strands
// the GPU capacity the shortfall would have served. A CPU-only pod that
// takes the last cores of a node whose GPUs are partly free costs those
// GPUs, though every class may still fit once; the same pod costs nothing
// on a node with cores to spare. A GPU pod that brings less CPU per GPU
// than the mix's mean relieves a short node; one that brings more should
// go where cores are plenty.

// mixHostPerGPU is the CPU and memory the mix brings per GPU-equivalent of
// this node's devices: the pod-weighted means over the classes whose
// resources the node advertises. ok is false when no class asks for them
// (or for no CPU and memory).
func (s *State) mixHostPerGPU(mix *Mix, req *podrequest.Request, pod Host) (cpu, mem float64, ok bool) {
	n := s.node
	var wGPU, wCPU, wMem float64
	add := func(rcs []podrequest.ResourceCount, h Host, w float64) {
		g := 0.0
		for i := range rcs {
			ri, found := n.resIndex[rcs[i].Name]
			if !found {
				return
			}
			g += float64(rcs[i].Count) * n.resources[ri].weight
		}
		if g <= 0 {
			return
		}
		wGPU += w * g
		wCPU += w * float64(h.MilliCPU)
		wMem += w * float64(h.MemBytes)
	}
	if mix == nil || len(mix.Classes) == 0 {
		add(req.Effective, pod, 1)
	} else {
		for i := range mix.Classes {
			c := &mix.Classes[i]
			add(c.Resources, c.Host, c.Weight)
		}
	}
	if wGPU <= 0 || (wCPU <= 0 && wMem <= 0) {
		return 0, 0, false
	}
	return wCPU / wGPU, wMem / wGPU, true
}

// hostShortfall is the free GPU capacity (free, in GPU-equivalents) that
// h's free CPU and memory cannot serve at cpu and mem per GPU-equivalent.
func hostShortfall(free float64, h HostFit, cpu, mem float64) float64 {
	if free <= 0 {
		return 0
	}
	short := 0.0
	if cpu > 0 {
		short = max(short, free-float64(max(h.NodeFree.MilliCPU, 0))/cpu)
	}
	if mem > 0 {
		short = max(short, free-float64(max(h.NodeFree.MemBytes, 0))/mem)
	}
	return max(short, 0)
}

// hostShortGain is w times how much placing the pod (taking the node's
// free GPU capacity from freeBefore to freeAfter and h to h.after()) lowers
// the host shortfall. 0 when w is 0 or h is unknown.
func (s *State) hostShortGain(w float64, mix *Mix, req *podrequest.Request, h HostFit, freeBefore, freeAfter float64) float64 {
	if w == 0 || !h.Known {
		return 0
	}
	cpu, mem, ok := s.mixHostPerGPU(mix, req, h.Pod)
	if !ok {
		return 0
	}
	return w * (hostShortfall(freeBefore, h, cpu, mem) - hostShortfall(freeAfter, h.after(), cpu, mem))
}
