package allocator

import (
	"fmt"
	"math/bits"

	"github.com/gpuslice/gpuslice/pkg/topology"
)

// ResourceDevices is the set of device IDs one container holds of one
// resource, as the kubelet's PodResources API reports it.
type ResourceDevices struct {
	Resource  string
	DeviceIDs []string
}

// State is what is allocated on one node: bound pods, assumed pods, pods of
// other schedulers. It is not safe for concurrent mutation; Clone it to get an
// independent copy (a per-cycle snapshot).
type State struct {
	node *Node
	// used replicas per unit, and which ones.
	used  []int32
	taken []uint64
	// free healthy replicas per resource.
	free []int32
	// used GPU-equivalents per GPU.
	gpuUsed []float64
	usedWt  float64
}

// NewState returns an empty allocation state for n.
func NewState(n *Node) *State {
	s := &State{
		node:    n,
		used:    make([]int32, len(n.units)),
		taken:   make([]uint64, n.bitWords),
		free:    make([]int32, len(n.resources)),
		gpuUsed: make([]float64, len(n.gpus)),
	}
	for i := range n.resources {
		s.free[i] = n.resources[i].healthy
	}
	return s
}

// Free is the number of free healthy replicas of resource (0 when the node
// does not advertise it).
func (s *State) Free(resource string) int {
	ri, ok := s.node.resIndex[resource]
	if !ok {
		return 0
	}
	return int(s.free[ri])
}

// Node returns the compiled node the state belongs to.
func (s *State) Node() *Node { return s.node }

// Clone returns an independent copy.
func (s *State) Clone() *State {
	c := *s
	c.used = append([]int32(nil), s.used...)
	c.taken = append([]uint64(nil), s.taken...)
	c.free = append([]int32(nil), s.free...)
	c.gpuUsed = append([]float64(nil), s.gpuUsed...)
	return &c
}

type ref struct {
	unit    int32
	replica int32
}

// resolve maps an advertised device ID of a resource to its unit and replica.
func (n *Node) resolve(resourceName, id string) (ref, error) {
	base, replica, ok := topology.SplitReplicaID(id)
	if !ok {
		return ref{}, fmt.Errorf("malformed device ID %q", id)
	}
	ui, found := n.idIndex[base]
	if !found {
		return ref{}, fmt.Errorf("device %s of %s is not advertised on node %s", id, resourceName, n.name)
	}
	u := &n.units[ui]
	if got := n.resources[u.res].name; got != resourceName {
		return ref{}, fmt.Errorf("device %s is advertised as %s on node %s, not %s", id, got, n.name, resourceName)
	}
	switch {
	case u.shared && replica < 0:
		return ref{}, fmt.Errorf("device %s of %s lacks a replica suffix (%s<n>)", id, resourceName, topology.ReplicaSeparator)
	case !u.shared && replica >= 0:
		return ref{}, fmt.Errorf("device %s of %s is not time-sliced but has a replica suffix", id, resourceName)
	case replica >= int(u.replicas):
		return ref{}, fmt.Errorf("device %s: replica %d out of range (%d replicas)", id, replica, u.replicas)
	}
	return ref{unit: ui, replica: max(int32(replica), 0)}, nil
}

func (s *State) isTaken(r ref) bool {
	b := s.node.units[r.unit].bitOff + r.replica
	return s.taken[b/64]&(1<<(uint(b)%64)) != 0
}

func (s *State) flip(r ref, take bool) {
	u := &s.node.units[r.unit]
	b := u.bitOff + r.replica
	s.taken[b/64] ^= 1 << (uint(b) % 64)
	d := int32(1)
	if !take {
		d = -1
	}
	s.used[r.unit] += d
	if u.healthy {
		s.free[u.res] -= d
	}
	s.gpuUsed[u.gpu] += float64(d) * u.weight
	s.usedWt += float64(d) * u.weight
}

func (s *State) resolveAll(devs []ResourceDevices) ([]ref, error) {
	var refs []ref
	for _, rd := range devs {
		for _, id := range rd.DeviceIDs {
			r, err := s.node.resolve(rd.Resource, id)
			if err != nil {
				return nil, err
			}
			refs = append(refs, r)
		}
	}
	return refs, nil
}

// Apply marks devices as allocated. It is all or nothing: an unknown device,
// a device already held by someone else, or the same device listed twice is
// an error and leaves the state unchanged. Never double-book.
func (s *State) Apply(devs []ResourceDevices) error {
	refs, err := s.resolveAll(devs)
	if err != nil {
		return err
	}
	for i, r := range refs {
		if s.isTaken(r) {
			for _, back := range refs[:i] {
				s.flip(back, false)
			}
			return fmt.Errorf("device %s is already allocated on node %s", s.node.deviceID(r), s.node.name)
		}
		s.flip(r, true)
	}
	return nil
}

// Release frees devices previously applied. Releasing a device that is not
// allocated is an error and leaves the state unchanged.
func (s *State) Release(devs []ResourceDevices) error {
	refs, err := s.resolveAll(devs)
	if err != nil {
		return err
	}
	for i, r := range refs {
		if !s.isTaken(r) {
			for _, back := range refs[:i] {
				s.flip(back, true)
			}
			return fmt.Errorf("device %s is not allocated on node %s", s.node.deviceID(r), s.node.name)
		}
		s.flip(r, false)
	}
	return nil
}

func (n *Node) deviceID(r ref) string {
	u := &n.units[r.unit]
	if u.shared {
		return topology.ReplicaID(u.deviceID, int(r.replica))
	}
	return u.deviceID
}

// lowestFree returns the lowest free replica of a unit, or -1. Units start
// on a word boundary of the bitset.
func (s *State) lowestFree(ui int32) int32 {
	u := &s.node.units[ui]
	first := u.bitOff / 64
	for w := int32(0); w < (u.replicas+63)/64; w++ {
		if inv := ^s.taken[first+w]; inv != 0 {
			if r := w*64 + int32(bits.TrailingZeros64(inv)); r < u.replicas {
				return r
			}
			return -1
		}
	}
	return -1
}

// Usage of one resource on the node.
type Usage struct {
	Resource  string
	Total     int // advertised replicas, healthy or not
	Healthy   int
	Used      int
	Free      int // healthy and unallocated
	Unhealthy int
}

// Usage reports every resource's usage in topology order.
func (s *State) Usage() []Usage {
	out := make([]Usage, len(s.node.resources))
	for i := range s.node.resources {
		out[i] = s.usage(int32(i))
	}
	return out
}

func (s *State) usage(ri int32) Usage {
	r := &s.node.resources[ri]
	used := int32(0)
	for _, ui := range r.units {
		used += s.used[ui]
	}
	return Usage{Resource: r.name, Total: int(r.total), Healthy: int(r.healthy), Used: int(used), Free: int(s.free[ri]), Unhealthy: int(r.total - r.healthy)}
}

// GPUUsage is how full one physical GPU is.
type GPUUsage struct {
	UUID  string
	Index int
	// Used and Capacity are in GPU-equivalents (a MIG 3g of 7 weighs 3/7).
	Used, Capacity float64
	Healthy        bool
}

// GPUs reports per-GPU usage in topology order.
func (s *State) GPUs() []GPUUsage {
	out := make([]GPUUsage, len(s.node.gpus))
	for i, g := range s.node.gpus {
		out[i] = GPUUsage{UUID: g.uuid, Index: g.index, Used: s.gpuUsed[i], Capacity: g.capacity, Healthy: g.healthy}
	}
	return out
}

// HealthyTotals sums the node's healthy GPUs, in GPU-equivalents: their
// capacity, what is in use, what is free, and what is stranded (the free
// capacity of GPUs partly in use, as kubectl gpuslice top counts it).
type HealthyTotals struct {
	Capacity, Used, Free, Stranded float64
}

// Totals sums the node's healthy GPUs.
func (s *State) Totals() HealthyTotals {
	var t HealthyTotals
	for gi, g := range s.node.gpus {
		if !g.healthy {
			continue
		}
		used := s.gpuUsed[gi]
		free := g.capacity - used
		t.Capacity += g.capacity
		t.Used += used
		t.Free += free
		if used > 1e-9 && free > 1e-9 {
			t.Stranded += free
		}
	}
	return t
}

// EmptyGPUs counts GPUs that hold no allocated device.
func (s *State) EmptyGPUs() int {
	n := 0
	for gi := range s.node.gpus {
		if s.gpuUsed[gi] < 1e-9 {
			n++
		}
	}
	return n
}
