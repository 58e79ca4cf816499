package sim

import (
	"fmt"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/types"

	"github.com/gpuslice/gpuslice/pkg/allocator"
	"github.com/gpuslice/gpuslice/pkg/assignment"
	"github.com/gpuslice/gpuslice/pkg/cache"
	"github.com/gpuslice/gpuslice/pkg/topology"
)

// boundPod is an admitted pod: where it runs and the devices it holds.
type boundPod struct {
	pod     *v1.Pod
	node    int
	devices []allocator.ResourceDevices
}

// Remove deletes an admitted pod: the kubelet frees its devices and the
// scheduler forgets it.
func (s *Scheduler) Remove(uid types.UID) error {
	b, ok := s.bound[uid]
	if !ok {
		return fmt.Errorf("pod %s is not bound", uid)
	}
	delete(s.bound, uid)
	if err := s.nodes[b.node].RemovePod(s.logger, b.pod); err != nil {
		return err
	}
	if len(b.devices) > 0 {
		if err := s.devices[b.node].Release(b.devices); err != nil {
			return err
		}
	}
	s.shared.ForgetPod(b.pod)
	return nil
}

// Allocated returns the devices every pod on the node holds: what the
// exporter's PodResources read-back reports.
func (s *Scheduler) Allocated(node string) []allocator.ResourceDevices {
	ni, ok := s.index[node]
	if !ok {
		return nil
	}
	var out []allocator.ResourceDevices
	for _, b := range s.bound {
		if b.node == ni {
			out = append(out, b.devices...)
		}
	}
	return out
}

// StartReconfigure is NVIDIA's MIG manager starting a run on the node:
// the exporter publishes the node Reconfiguring (its topology unchanged;
// gpuslice's Filter takes no GPU pod there), and the device plugin is down
// for the whole node, so allocatable of every nvidia.com/ resource drops
// to 0.
func (s *Scheduler) StartReconfigure(node string) error {
	ni, ok := s.index[node]
	if !ok || s.devices[ni] == nil {
		return fmt.Errorf("node %s has no GPUs", node)
	}
	s.gpuCache.SetTopology(node, &cache.Topology{Node: s.topos[node], State: "Reconfiguring", Message: "MIG manager: nvidia.com/mig.config.state=pending"})
	s.setDeviceAllocatable(ni, nil)
	return nil
}

// FinishReconfigure is the run's end and the device plugin registering
// again: the node's topology becomes topo (published Ready), the device
// plugin's state is rebuilt with every running pod's devices, which must
// all still exist (a pod never loses a device), and allocatable follows
// topo.
func (s *Scheduler) FinishReconfigure(node string, topo *topology.Node) error {
	ni, ok := s.index[node]
	if !ok || s.devices[ni] == nil {
		return fmt.Errorf("node %s has no GPUs", node)
	}
	compiled, err := allocator.Compile(topo, s.cat, s.devices[ni].Node().Policy())
	if err != nil {
		return fmt.Errorf("node %s: %w", node, err)
	}
	st := allocator.NewState(compiled)
	for _, b := range s.bound {
		if b.node == ni && len(b.devices) > 0 {
			if err := st.Apply(b.devices); err != nil {
				return fmt.Errorf("node %s: pod %s lost a device in the reconfiguration: %w", node, b.pod.Name, err)
			}
		}
	}
	s.devices[ni] = st
	caps, err := topo.Capacity()
	if err != nil {
		return err
	}
	s.topos[node] = topo
	s.gpuCache.SetTopology(node, &cache.Topology{Node: topo, State: "Ready"})
	s.setDeviceAllocatable(ni, caps)
	return nil
}

// setDeviceAllocatable sets the node's nvidia.com/ allocatable and capacity
// to caps (nil: every such resource 0, capacity kept).
func (s *Scheduler) setDeviceAllocatable(ni int, caps map[string]int64) {
	n := s.nodes[ni].Node().DeepCopy()
	for name := range n.Status.Allocatable {
		if strings.HasPrefix(string(name), "nvidia.com/") {
			if caps == nil {
				n.Status.Allocatable[name] = *resource.NewQuantity(0, resource.DecimalSI)
			} else {
				delete(n.Status.Allocatable, name)
				delete(n.Status.Capacity, name)
			}
		}
	}
	for r, c := range caps {
		n.Status.Allocatable[v1.ResourceName(r)] = *resource.NewQuantity(c, resource.DecimalSI)
		n.Status.Capacity[v1.ResourceName(r)] = *resource.NewQuantity(c, resource.DecimalSI)
	}
	s.nodes[ni].SetNode(n)
}

// Topology returns the node's current topology (nil for a node without
// GPUs). Do not change it.
func (s *Scheduler) Topology(node string) *topology.Node { return s.topos[node] }

// SetDrain is gpuslice-repartitioner writing the node's drain annotation
// (assignment.DrainAnnotation): the GPUs with these indexes take no new pod
// (nil or empty lifts every drain of the node).
func (s *Scheduler) SetDrain(node string, gpus []int) error {
	ni, ok := s.index[node]
	if !ok {
		return fmt.Errorf("node %s is not in the simulation", node)
	}
	n := s.nodes[ni].Node().DeepCopy()
	if len(gpus) == 0 {
		delete(n.Annotations, assignment.DrainAnnotation)
	} else {
		if n.Annotations == nil {
			n.Annotations = map[string]string{}
		}
		n.Annotations[assignment.DrainAnnotation] = assignment.FormatDrain(gpus)
	}
	s.nodes[ni].SetNode(n)
	return nil
}
