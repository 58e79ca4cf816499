package v1alpha1

import (
	"fmt"

	"github.com/gpuslice/gpuslice/pkg/topology"
)

// Topology converts the published spec into the pure model. It does not
// validate: call (*topology.Node).Validate on the result, so that a corrupted
// object is reported with the problem it has.
func (s *GPUNodeSpec) Topology() *topology.Node {
	n := &topology.Node{
		Name:             s.NodeName,
		MIGStrategy:      topology.MIGStrategy(s.MIGStrategy),
		DeviceIDStrategy: topology.DeviceIDStrategy(s.DeviceIDStrategy),
		AllocationPolicy: topology.AllocationPolicy(s.AllocationPolicy),
		GPUs:             make([]topology.GPU, 0, len(s.GPUs)),
	}
	if ts := s.TimeSlicing; ts != nil {
		n.TimeSlicing = &topology.TimeSlicing{RenameByDefault: ts.RenameByDefault, FailRequestsGreaterThanOne: ts.FailRequestsGreaterThanOne}
		for _, r := range ts.Resources {
			n.TimeSlicing.Resources = append(n.TimeSlicing.Resources, topology.SharedResource{Name: r.Name, Rename: r.Rename, Replicas: int(r.Replicas)})
		}
	}
	for _, g := range s.GPUs {
		tg := topology.GPU{
			UUID: g.UUID, Index: int(g.Index), Product: g.Product, MemoryMiB: g.MemoryMiB,
			Healthy: g.Healthy, UnhealthyReason: g.UnhealthyReason, MIGEnabled: g.MIGEnabled,
		}
		for _, in := range g.Instances {
			tg.Instances = append(tg.Instances, topology.GPUInstance{Profile: in.Profile, Start: int(in.Start), Size: int(in.Size), DeviceID: in.DeviceID})
		}
		n.GPUs = append(n.GPUs, tg)
	}
	return n
}

// SpecFromTopology builds the published spec of a model node, its summary
// counted without allocations (allocations and state are left to the
// caller, who summarizes again with the allocations), so that the printer
// columns are filled whoever writes the object.
func SpecFromTopology(n *topology.Node) GPUNodeSpec {
	s := GPUNodeSpec{
		NodeName:         n.Name,
		MIGStrategy:      string(n.MIGStrategy),
		DeviceIDStrategy: string(n.DeviceIDStrategy),
		AllocationPolicy: string(n.AllocationPolicy),
	}
	if s.MIGStrategy == "" {
		s.MIGStrategy = string(topology.MIGStrategyNone)
	}
	if ts := n.TimeSlicing; ts != nil {
		s.TimeSlicing = &TimeSlicing{RenameByDefault: ts.RenameByDefault, FailRequestsGreaterThanOne: ts.FailRequestsGreaterThanOne, Resources: []SharedResource{}}
		for _, r := range ts.Resources {
			s.TimeSlicing.Resources = append(s.TimeSlicing.Resources, SharedResource{Name: r.Name, Rename: r.Rename, Replicas: int32(r.Replicas)})
		}
	}
	for _, g := range n.GPUs {
		ag := GPU{
			UUID: g.UUID, Index: int32(g.Index), Product: g.Product, MemoryMiB: g.MemoryMiB,
			Healthy: g.Healthy, UnhealthyReason: g.UnhealthyReason, MIGEnabled: g.MIGEnabled,
		}
		for _, in := range g.Instances {
			ag.Instances = append(ag.Instances, GPUInstance{Profile: in.Profile, Start: int32(in.Start), Size: int32(in.Size), DeviceID: in.DeviceID})
		}
		s.GPUs = append(s.GPUs, ag)
	}
	s.Summary = Summarize(n, nil)
	return s
}

// Summarize counts a node's advertised and allocated devices for the
// GPUNode's printer columns: GPUs, free/total devices, and the MIG strategy
// when a GPU has MIG enabled (empty otherwise, whatever the device plugin's
// --mig-strategy: the node has no MIG).
func Summarize(node *topology.Node, allocs []PodAllocation) Summary {
	s := Summary{GPUs: int32(len(node.GPUs))}
	for _, g := range node.GPUs {
		if g.MIGEnabled {
			s.MIG = string(node.MIGStrategy)
			break
		}
	}
	caps, err := node.Capacity()
	if err != nil {
		return s
	}
	total := int64(0)
	for _, n := range caps {
		total += n
	}
	used := map[string]bool{}
	for _, pa := range allocs {
		for _, c := range pa.Containers {
			for _, d := range c.Devices {
				if _, ours := caps[d.Resource]; !ours {
					continue
				}
				for _, id := range d.DeviceIDs {
					used[d.Resource+"/"+id] = true
				}
			}
		}
	}
	free := total - int64(len(used))
	if free < 0 {
		free = 0
	}
	s.Slices = fmt.Sprintf("%d/%d", free, total)
	return s
}
