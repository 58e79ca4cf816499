package openb

import (
	"fmt"
	"strings"
)

// MilliPerGPU is the number of share units of one GPU.
const MilliPerGPU = 1000

// Node is one node of the trace's node list.
type Node struct {
	Name     string
	CPUMilli int64
	MemMiB   int64
	GPUs     int
	// Model is the GPU model ("G2", "T4", "V100M32", ...); empty without GPUs.
	Model string
}

// Pod is one task of a pod list.
type Pod struct {
	Name     string
	CPUMilli int64
	MemMiB   int64
	// NumGPU is the number of GPUs; GPUMilli the share of each (1000 for
	// whole GPUs, less for a sharing pod, which has NumGPU 1).
	NumGPU   int
	GPUMilli int64
	// Models are the GPU models the pod may run on (gpu_spec); empty means any.
	Models []string
}

// GPURequest is the pod's GPU demand in share units.
func (p *Pod) GPURequest() int64 { return int64(p.NumGPU) * p.GPUMilli }

// Sharing reports whether the pod takes a fraction of one GPU.
func (p *Pod) Sharing() bool { return p.NumGPU == 1 && p.GPUMilli < MilliPerGPU }

// Accepts reports whether the pod may run on a GPU model.
func (p *Pod) Accepts(model string) bool {
	if len(p.Models) == 0 {
		return true
	}
	for _, m := range p.Models {
		if m == model {
			return true
		}
	}
	return false
}

// NodeState is what is left on a node: the ledger every policy is measured
// on. Policies read it; only Cluster.Bind changes it.
type NodeState struct {
	*Node
	CPULeft int64
	MemLeft int64
	// GPULeft is the free share of each GPU, in share units.
	GPULeft []int64
	Pods    int
}

// GPULeftTotal is the node's free GPU share.
func (n *NodeState) GPULeftTotal() int64 {
	t := int64(0)
	for _, g := range n.GPULeft {
		t += g
	}
	return t
}

// FitsResources reports whether the pod's CPU, memory and GPU model
// constraint fit, and GPUs returns a GPU choice; both in the paper's model.
func (n *NodeState) FitsResources(p *Pod) bool {
	if p.CPUMilli > n.CPULeft || p.MemMiB > n.MemLeft {
		return false
	}
	if p.NumGPU == 0 {
		return true
	}
	if n.GPUs == 0 || !p.Accepts(n.Model) {
		return false
	}
	return n.gpuFit(p)
}

// gpuFit reports whether enough GPUs have the pod's per-GPU share free.
func (n *NodeState) gpuFit(p *Pod) bool {
	k := 0
	for _, g := range n.GPULeft {
		if g >= p.GPUMilli {
			k++
			if k == p.NumGPU {
				return true
			}
		}
	}
	return false
}

// Fits is FitsResources by another name, for policies.
func (n *NodeState) Fits(p *Pod) bool { return n.FitsResources(p) }

// Cluster is the ledger of a replay: every node's free resources.
type Cluster struct {
	Nodes []*NodeState
	index map[string]int
	// TotalMilli is the GPU capacity of the cluster in share units.
	TotalMilli int64
	// AllocatedMilli is the GPU share allocated so far.
	AllocatedMilli int64
}

// NewCluster returns an empty ledger for the nodes.
func NewCluster(nodes []Node) (*Cluster, error) {
	c := &Cluster{index: make(map[string]int, len(nodes))}
	for i := range nodes {
		n := &nodes[i]
		if _, dup := c.index[n.Name]; dup {
			return nil, fmt.Errorf("node %s listed twice", n.Name)
		}
		c.index[n.Name] = len(c.Nodes)
		ns := &NodeState{Node: n, CPULeft: n.CPUMilli, MemLeft: n.MemMiB, GPULeft: make([]int64, n.GPUs)}
		for g := range ns.GPULeft {
			ns.GPULeft[g] = MilliPerGPU
		}
		c.Nodes = append(c.Nodes, ns)
		c.TotalMilli += int64(n.GPUs) * MilliPerGPU
	}
	return c, nil
}

// Index returns a node's position by name.
func (c *Cluster) Index(name string) (int, bool) {
	i, ok := c.index[name]
	return i, ok
}

// Bind records the pod on node ni with its GPU share taken from the listed
// GPUs (one entry per GPU the pod uses, p.GPUMilli each). It refuses, and
// changes nothing, when the placement breaks the model: a resource
// overcommitted, a GPU model the pod does not accept, the wrong number of
// GPUs, a GPU listed twice.
func (c *Cluster) Bind(p *Pod, ni int, gpus []int) error {
	if ni < 0 || ni >= len(c.Nodes) {
		return fmt.Errorf("pod %s: no node %d", p.Name, ni)
	}
	n := c.Nodes[ni]
	if p.CPUMilli > n.CPULeft || p.MemMiB > n.MemLeft {
		return fmt.Errorf("pod %s on %s: cpu %d/%d or memory %d/%d left", p.Name, n.Name, p.CPUMilli, n.CPULeft, p.MemMiB, n.MemLeft)
	}
	if len(gpus) != p.NumGPU {
		return fmt.Errorf("pod %s on %s: %d GPUs given, wants %d", p.Name, n.Name, len(gpus), p.NumGPU)
	}
	if p.NumGPU > 0 && !p.Accepts(n.Model) {
		return fmt.Errorf("pod %s on %s: GPU model %s not in %s", p.Name, n.Name, n.Model, strings.Join(p.Models, "|"))
	}
	seen := map[int]bool{}
	for _, g := range gpus {
		if g < 0 || g >= len(n.GPULeft) || seen[g] {
			return fmt.Errorf("pod %s on %s: bad or repeated GPU %d", p.Name, n.Name, g)
		}
		seen[g] = true
		if n.GPULeft[g] < p.GPUMilli {
			return fmt.Errorf("pod %s on %s: GPU %d has %d left, wants %d", p.Name, n.Name, g, n.GPULeft[g], p.GPUMilli)
		}
	}
	n.CPULeft -= p.CPUMilli
	n.MemLeft -= p.MemMiB
	for _, g := range gpus {
		n.GPULeft[g] -= p.GPUMilli
	}
	n.Pods++
	c.AllocatedMilli += p.GPURequest()
	return nil
}

// UnallocatedGPUPct is 100 minus the allocated share of all GPUs.
func (c *Cluster) UnallocatedGPUPct() float64 {
	if c.TotalMilli == 0 {
		return 0
	}
	return 100 - 100*float64(c.AllocatedMilli)/float64(c.TotalMilli)
}
