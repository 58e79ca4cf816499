package sim

import (
	"context"
	"fmt"
	"slices"

	v1 "k8s.io/api/core/v1"
	"k8s.io/kubernetes/pkg/scheduler/framework"

	"github.com/gpuslice/gpuslice/pkg/allocator"
	"github.com/gpuslice/gpuslice/pkg/podrequest"
)

// AdmissionError is the kubelet refusing a pod the scheduler bound: its
// device plugin cannot serve the request on that node (what a real kubelet
// reports as UnexpectedAdmissionError).
type AdmissionError struct {
	Pod, Node, Reason string
}

func (e *AdmissionError) Error() string {
	return fmt.Sprintf("kubelet on %s rejected pod %s: %s", e.Node, e.Pod, e.Reason)
}

// Admit binds a scheduled pod: the kubelet admits it and the device plugin
// picks its devices, which are returned. When the device plugin cannot serve
// the pod, the reservation is undone and an *AdmissionError returned.
func (s *Scheduler) Admit(ctx context.Context, pod *v1.Pod, d Decision) (*allocator.Placement, error) {
	ni, ok := s.index[d.Node]
	if !ok || d.state == nil {
		return nil, fmt.Errorf("pod %s: no scheduling decision to admit", pod.Name)
	}
	req, err := podrequest.Parse(pod, podrequest.Options{Catalog: s.cat})
	if err != nil {
		return nil, fmt.Errorf("pod %s: %w", pod.Name, err)
	}
	var placement *allocator.Placement
	var devs []allocator.ResourceDevices
	if !req.Empty() {
		reject := func(reason string) (*allocator.Placement, error) {
			s.fw.RunReservePluginsUnreserve(ctx, d.state, pod, d.Node)
			s.stats.AdmissionRejected++
			return nil, &AdmissionError{Pod: pod.Name, Node: d.Node, Reason: reason}
		}
		dev := s.devices[ni]
		if dev == nil {
			return reject("node has no GPU devices")
		}
		p, v := dev.Place(req)
		if !v.OK() {
			return reject(v.Reason())
		}
		devs = p.Devices()
		if err := dev.Apply(devs); err != nil {
			return reject(err.Error())
		}
		placement = p
		if info, ok := s.gpuCache.Pod(pod.UID); ok && !sameDevices(info.Devices, devs) {
			s.stats.Mispredicted++
		}
	}
	bound := pod.DeepCopy()
	bound.Spec.NodeName = d.Node
	pi, err := framework.NewPodInfo(bound)
	if err != nil {
		return nil, fmt.Errorf("pod %s: %w", pod.Name, err)
	}
	s.nodes[ni].AddPodInfo(pi)
	s.bound[bound.UID] = &boundPod{pod: bound, node: ni, devices: devs}
	s.shared.ObservePod(s.logger, bound)
	s.stats.Scheduled++
	return placement, nil
}

// Rollback undoes a decision that will not be admitted (the caller refuses
// it for reasons of its own).
func (s *Scheduler) Rollback(ctx context.Context, pod *v1.Pod, d Decision) {
	if d.state != nil {
		s.fw.RunReservePluginsUnreserve(ctx, d.state, pod, d.Node)
	}
}

func sameDevices(a, b []allocator.ResourceDevices) bool {
	key := func(rds []allocator.ResourceDevices) []string {
		var out []string
		for _, rd := range rds {
			for _, id := range rd.DeviceIDs {
				out = append(out, rd.Resource+"="+id)
			}
		}
		slices.Sort(out)
		return out
	}
	return slices.Equal(key(a), key(b))
}

// Devices returns a node's device plugin state (nil for a node without
// GPUs), for reports.
func (s *Scheduler) Devices(node string) *allocator.State {
	if i, ok := s.index[node]; ok {
		return s.devices[i]
	}
	return nil
}

// NodeNames lists the nodes in the order given to New.
func (s *Scheduler) NodeNames() []string {
	out := make([]string, len(s.nodes))
	for i, n := range s.nodes {
		out[i] = n.Node().Name
	}
	return out
}
