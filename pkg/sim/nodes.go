package sim

import (
	"fmt"
	"slices"

	v1 "k8s.io/api/core/v1"
	fwk "k8s.io/kube-scheduler/framework"
	internalcache "k8s.io/kubernetes/pkg/scheduler/backend/cache"

	"github.com/gpuslice/gpuslice/pkg/allocator"
	"github.com/gpuslice/gpuslice/pkg/cache"
)

// resnapshot rebuilds the framework's snapshot over nodes (in that order)
// with every bound pod on its node, and points the lister at it.
func (s *Scheduler) resnapshot(nodes []*v1.Node) error {
	pods := make([]*v1.Pod, 0, len(s.bound))
	for _, b := range s.bound {
		pods = append(pods, b.pod)
	}
	snapshot := internalcache.NewSnapshot(pods, nodes)
	infos := make([]fwk.NodeInfo, 0, len(nodes))
	for _, n := range nodes {
		ni, err := snapshot.NodeInfos().Get(n.Name)
		if err != nil {
			return err
		}
		infos = append(infos, ni)
	}
	s.nodes = infos
	s.lister.SharedLister = snapshot
	return nil
}

func (s *Scheduler) currentNodes() []*v1.Node {
	out := make([]*v1.Node, len(s.nodes))
	for i, ni := range s.nodes {
		out[i] = ni.Node()
	}
	return out
}

// AddNode adds a node to the running simulation, as a node that has
// registered and whose exporter has published its topology (an
// autoscaler's new node once it is ready for pods). It is appended to the
// node order.
func (s *Scheduler) AddNode(n Node) error {
	if n.Node == nil {
		return fmt.Errorf("add node: no Node object")
	}
	name := n.Node.Name
	if _, dup := s.index[name]; dup {
		return fmt.Errorf("add node %s: already in the simulation", name)
	}
	var dev *allocator.State
	if n.Topology != nil {
		if n.Topology.Name != name {
			return fmt.Errorf("add node %s: topology names node %q", name, n.Topology.Name)
		}
		compiled, err := allocator.Compile(n.Topology, s.cat, s.policy)
		if err != nil {
			return fmt.Errorf("add node %s: %w", name, err)
		}
		dev = allocator.NewState(compiled)
	}
	nodes := append(s.currentNodes(), n.Node)
	if err := s.resnapshot(nodes); err != nil {
		return err
	}
	s.index[name] = len(s.devices)
	s.devices = append(s.devices, dev)
	if n.Topology != nil {
		s.topos[name] = n.Topology
		s.gpuCache.SetTopology(name, &cache.Topology{Node: n.Topology, State: "Ready"})
		s.gpuCache.SetHeartbeat(name, s.start)
	}
	return nil
}

// RemoveNode deletes a node from the running simulation. The node must be
// empty: a pod still bound there is an error (an autoscaler removing a node
// with running pods would take their devices).
func (s *Scheduler) RemoveNode(name string) error {
	ni, ok := s.index[name]
	if !ok {
		return fmt.Errorf("remove node %s: not in the simulation", name)
	}
	for _, b := range s.bound {
		if b.node == ni {
			return fmt.Errorf("remove node %s: pod %s/%s still runs there", name, b.pod.Namespace, b.pod.Name)
		}
	}
	nodes := slices.Delete(s.currentNodes(), ni, ni+1)
	s.devices = slices.Delete(s.devices, ni, ni+1)
	delete(s.index, name)
	for n, i := range s.index {
		if i > ni {
			s.index[n] = i - 1
		}
	}
	for _, b := range s.bound {
		if b.node > ni {
			b.node--
		}
	}
	if s.next > ni {
		s.next--
	}
	if len(nodes) > 0 {
		s.next %= len(nodes)
	} else {
		s.next = 0
	}
	delete(s.topos, name)
	s.shared.ForgetNode(name)
	return s.resnapshot(nodes)
}
