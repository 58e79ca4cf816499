package sim

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"

	v1 "k8s.io/api/core/v1"
	schedconfig "k8s.io/kubernetes/pkg/scheduler/apis/config"
	"k8s.io/kubernetes/pkg/scheduler/framework"

	"github.com/gpuslice/gpuslice/pkg/allocator"
	"github.com/gpuslice/gpuslice/pkg/cache"
	"github.com/gpuslice/gpuslice/pkg/podrequest"
	"github.com/gpuslice/gpuslice/pkg/topology"
)

// ReplayInput is a cluster and a workload to replay: the nodes with their
// GPU topologies, the pods that stay where they are, and the pods to place.
type ReplayInput struct {
	Nodes []Node
	// Fixed are pods that keep their node (spec.nodeName) and are not
	// re-placed: they hold CPU, memory and pod slots (DaemonSets, CPU
	// workloads) and, when they ask for GPU devices, the devices the
	// simulated device plugin gives them there (a fixed pod it cannot serve
	// is reported in ReplayResult.FixedRejected and holds nothing).
	Fixed []*v1.Pod
	// Pods are placed one at a time, in order, without departures. Their
	// spec.nodeName is ignored: a copy without it is scheduled.
	Pods []*v1.Pod
	// Seed drives the scheduler's random tie-breaks.
	Seed uint64
	// DefaultPolicy is the device plugin policy of nodes whose topology does
	// not name one.
	DefaultPolicy topology.AllocationPolicy
}

// PodPlacement is where one replayed pod went.
type PodPlacement struct {
	Namespace, Name string
	// Node is empty when the pod was not placed.
	Node string
	// Reason says why the pod was not placed.
	Reason string
	// Devices are the devices the simulated device plugin gave, per resource.
	Devices []allocator.ResourceDevices
}

// GPUState is one physical GPU after a replay.
type GPUState struct {
	UUID  string
	Index int
	// Used and Capacity are GPU-equivalents (a MIG 3g of 7 weighs 3/7).
	Used, Capacity float64
	Healthy        bool
}

// NodeState is one GPU node after a replay.
type NodeState struct {
	Name string
	GPUs []GPUState
	// Pods are the replayed pods placed on the node.
	Pods int
	// DevicesUsed counts the node's allocated devices (replicas for
	// time-sliced resources).
	DevicesUsed int
}

// UsedGPUs counts the GPUs holding at least one allocated device.
func (n *NodeState) UsedGPUs() int {
	c := 0
	for _, g := range n.GPUs {
		if g.Used > 1e-9 {
			c++
		}
	}
	return c
}

// InUse reports whether any device of the node is allocated.
func (n *NodeState) InUse() bool { return n.DevicesUsed > 0 }

// ReplayResult is one profile's replay of a workload.
type ReplayResult struct {
	// Profile is the profile's schedulerName.
	Profile string
	// Placements are per pod, in the order of ReplayInput.Pods.
	Placements []PodPlacement
	// FixedRejected are the fixed pods whose devices the device plugin of
	// their node could not serve, with the reason.
	FixedRejected []PodPlacement
	Placed        int
	Unplaced      int
	// Nodes are the GPU nodes (nodes with a topology) in input order.
	Nodes []NodeState
	// GPUNodesUsed counts GPU nodes with at least one device allocated,
	// GPUsUsed the GPUs likewise; UsedGPUEquivalents sums GPU usage.
	GPUNodesUsed, GPUsUsed int
	UsedGPUEquivalents     float64
	Stats                  Stats
}

// Replay places in.Pods with one scheduler profile over fresh simulated
// nodes: every pod goes through a full scheduling cycle (the real
// kube-scheduler framework with the profile's plugins, GPUSlice among them
// where the profile enables it), then the simulated kubelet admits it and the
// device plugin picks its devices. Pods the scheduler or the kubelet turns
// away are reported with the reason and do not hold anything.
//
// Replay does not modify the input; results are deterministic for a seed.
func Replay(ctx context.Context, profile *schedconfig.KubeSchedulerProfile, in ReplayInput) (*ReplayResult, error) {
	if profile == nil {
		return nil, errors.New("replay: no scheduler profile")
	}
	s, err := New(ctx, Options{
		Profile: profile, Nodes: in.Nodes, DefaultPolicy: in.DefaultPolicy,
		Rand: rand.New(rand.NewPCG(in.Seed, 0x7265706c6179)),
	})
	if err != nil {
		return nil, err
	}
	r := &ReplayResult{Profile: profile.SchedulerName, Placements: make([]PodPlacement, 0, len(in.Pods))}
	nodePods := map[string]int{}
	for _, p := range in.Fixed {
		_, err := s.AddFixed(ctx, p)
		var rejected *AdmissionError
		switch {
		case errors.As(err, &rejected):
			r.FixedRejected = append(r.FixedRejected, PodPlacement{Namespace: p.Namespace, Name: p.Name, Reason: rejected.Error()})
		case err != nil:
			return nil, err
		}
	}
	for _, orig := range in.Pods {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		pod := orig.DeepCopy()
		pod.Spec.NodeName = ""
		pod.Status = v1.PodStatus{Phase: v1.PodPending}
		pl := PodPlacement{Namespace: pod.Namespace, Name: pod.Name}
		d, err := s.Schedule(ctx, pod)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", profile.SchedulerName, err)
		}
		if d.Node == "" {
			pl.Reason = d.Reason
		} else {
			placement, err := s.Admit(ctx, pod, d)
			var rejected *AdmissionError
			switch {
			case errors.As(err, &rejected):
				pl.Reason = rejected.Error()
			case err != nil:
				return nil, fmt.Errorf("%s: %w", profile.SchedulerName, err)
			default:
				pl.Node = d.Node
				if placement != nil {
					pl.Devices = placement.Devices()
				}
				nodePods[d.Node]++
			}
		}
		if pl.Node == "" {
			r.Unplaced++
		} else {
			r.Placed++
		}
		r.Placements = append(r.Placements, pl)
	}
	for _, n := range in.Nodes {
		st := s.Devices(n.Node.Name)
		if st == nil {
			continue
		}
		ns := NodeState{Name: n.Node.Name, Pods: nodePods[n.Node.Name]}
		for _, g := range st.GPUs() {
			ns.GPUs = append(ns.GPUs, GPUState{UUID: g.UUID, Index: g.Index, Used: g.Used, Capacity: g.Capacity, Healthy: g.Healthy})
			r.UsedGPUEquivalents += g.Used
		}
		for _, u := range st.Usage() {
			ns.DevicesUsed += u.Used
		}
		if ns.InUse() {
			r.GPUNodesUsed++
		}
		r.GPUsUsed += ns.UsedGPUs()
		r.Nodes = append(r.Nodes, ns)
	}
	r.Stats = s.Stats()
	return r, nil
}

// ReplayProfiles replays the same input under each profile, side by side
// (each on its own fresh nodes, with the same seed), in the given order.
func ReplayProfiles(ctx context.Context, profiles []*schedconfig.KubeSchedulerProfile, in ReplayInput) ([]*ReplayResult, error) {
	out := make([]*ReplayResult, 0, len(profiles))
	for _, p := range profiles {
		r, err := Replay(ctx, p, in)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// Profiles returns the named profiles of a configuration, or all of them
// when no name is given.
func Profiles(cfg *schedconfig.KubeSchedulerConfiguration, names ...string) ([]*schedconfig.KubeSchedulerProfile, error) {
	if len(names) == 0 {
		for _, p := range cfg.Profiles {
			names = append(names, p.SchedulerName)
		}
	}
	out := make([]*schedconfig.KubeSchedulerProfile, 0, len(names))
	for _, n := range names {
		p, err := Profile(cfg, n)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// AddFixed puts a pod on its node (spec.nodeName) without a scheduling
// cycle, as a pod that was already running there: it holds the node's CPU,
// memory and pod slots for the pods scheduled after it and, when it asks
// for GPU devices, the devices the node's simulated device plugin gives it
// (returned), which GPUSlice's cache then counts as the kubelet's report.
// When the device plugin cannot serve it, an *AdmissionError is returned and
// the pod holds nothing. A pod for a node the simulation does not have, or
// with an invalid GPU request, is an error.
func (s *Scheduler) AddFixed(ctx context.Context, pod *v1.Pod) (*allocator.Placement, error) {
	ni, ok := s.index[pod.Spec.NodeName]
	if !ok {
		return nil, fmt.Errorf("pod %s/%s: node %q is not in the simulation", pod.Namespace, pod.Name, pod.Spec.NodeName)
	}
	req, err := podrequest.Parse(pod, podrequest.Options{Catalog: s.cat})
	if err != nil {
		return nil, fmt.Errorf("pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	var placement *allocator.Placement
	if !req.Empty() {
		reject := func(reason string) (*allocator.Placement, error) {
			return nil, &AdmissionError{Pod: pod.Namespace + "/" + pod.Name, Node: pod.Spec.NodeName, Reason: reason}
		}
		dev := s.devices[ni]
		if dev == nil {
			return reject("node has no GPU devices")
		}
		p, v := dev.Place(req)
		if !v.OK() {
			return reject(v.Reason())
		}
		if err := dev.Apply(p.Devices()); err != nil {
			return reject(err.Error())
		}
		placement = p
		// GPUSlice learns the devices as from a bound pod's assignment.
		s.gpuCache.UpsertPod(cache.PodUpdate{
			UID: pod.UID, Namespace: pod.Namespace, Name: pod.Name, Node: pod.Spec.NodeName, Request: req, Assignment: p,
		})
	}
	pi, err := framework.NewPodInfo(pod)
	if err != nil {
		return nil, fmt.Errorf("pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	s.nodes[ni].AddPodInfo(pi)
	// Reconfigurations keep its devices; Remove takes it away.
	s.bound[pod.UID] = &boundPod{pod: pod, node: ni, devices: placement.Devices()}
	return placement, nil
}
