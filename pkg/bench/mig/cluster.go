package mig

import (
	"fmt"
	"sort"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/gpuslice/gpuslice/pkg/sim"
	"github.com/gpuslice/gpuslice/pkg/topology"
	"github.com/gpuslice/gpuslice/pkg/topology/fixtures"
)

// Node labels the benchmark sets, as GPU feature discovery and the MIG
// manager would.
const (
	// LabelProduct is GPU feature discovery's product label.
	LabelProduct = "nvidia.com/gpu.product"
	// LabelMIGConfig is the MIG manager's label naming the node's
	// mig-parted layout.
	LabelMIGConfig = "nvidia.com/mig.config"
)

// NodeGroup is a set of identical nodes. GPUs == 0 is a CPU-only group.
type NodeGroup struct {
	// Prefix names the nodes: <Prefix>-<i>.
	Prefix string
	Count  int
	// Product is the GPUs' NVML device name.
	Product string
	GPUs    int
	// Layout is the mig-parted config the MIG manager applied to every GPU
	// of these nodes (the nvidia.com/mig.config label).
	Layout string
	// Profiles is the layout resolved to MIG profiles per GPU (see
	// ClusterSpec.Resolve); tests may set it directly.
	Profiles []string
	// Allocatable CPU (millicores), memory (GiB) and pods of each node.
	CPUMilli, MemoryGiB, Pods int64
}

// ClusterSpec is the simulated cluster.
type ClusterSpec struct {
	Groups []NodeGroup
	// Policy is the device plugin's SHARED_DEVICES_ALLOCATION_POLICY on
	// every GPU node: how it picks among a node's free MIG devices.
	Policy topology.AllocationPolicy
}

// DGX-like node sizes: allocatable after system reservations, kubelet's
// default 110 pods.
const (
	a100CPUMilli, a100MemGiB = 252_000, 1000 // DGX A100: 2x EPYC 7742 (256 threads), 1 TiB
	h100CPUMilli, h100MemGiB = 220_000, 2000 // DGX H100: 2x Xeon 8480C (224 threads), 2 TiB
	cpuNodeMilli, cpuNodeGiB = 62_000, 250   // CPU-only worker: 64 threads, 256 GiB
	maxPods                  = int64(110)    // kubelet default --max-pods
	a100Product              = "NVIDIA A100-SXM4-40GB"
	h100Product              = "NVIDIA H100 80GB HBM3"
)

// DefaultCluster is the benchmark's cluster: 16 eight-GPU nodes, half
// DGX A100 40GB and half DGX H100 80GB, each node's GPUs partitioned by one
// of NVIDIA's named mig-parted layouts (MIG strategy mixed), plus 4
// CPU-only nodes:
//
//	A100-SXM4-40GB: 4 all-balanced, 2 all-1g.5gb, 1 all-2g.10gb, 1 all-3g.20gb
//	H100 80GB HBM3: 4 all-balanced, 2 all-1g.10gb, 1 all-2g.20gb, 1 all-3g.40gb
//
// A MIG manager applies one layout per node (its nvidia.com/mig.config
// label), so layouts vary between nodes, not between a node's GPUs. The
// device plugin runs with its default policy, distributed; the policy only
// orders time-sliced replicas, and this cluster does not time-slice.
func DefaultCluster() ClusterSpec {
	a100 := func(layout string, n int) NodeGroup {
		return NodeGroup{Prefix: "a100-" + layout, Count: n, Product: a100Product, GPUs: 8, Layout: layout, CPUMilli: a100CPUMilli, MemoryGiB: a100MemGiB, Pods: maxPods}
	}
	h100 := func(layout string, n int) NodeGroup {
		return NodeGroup{Prefix: "h100-" + layout, Count: n, Product: h100Product, GPUs: 8, Layout: layout, CPUMilli: h100CPUMilli, MemoryGiB: h100MemGiB, Pods: maxPods}
	}
	return ClusterSpec{
		Policy: topology.PolicyDistributed,
		Groups: []NodeGroup{
			a100("all-balanced", 4), a100("all-1g.5gb", 2), a100("all-2g.10gb", 1), a100("all-3g.20gb", 1),
			h100("all-balanced", 4), h100("all-1g.10gb", 2), h100("all-2g.20gb", 1), h100("all-3g.40gb", 1),
			{Prefix: "cpu", Count: 4, CPUMilli: cpuNodeMilli, MemoryGiB: cpuNodeGiB, Pods: maxPods},
		},
	}
}

// Resolve fills every GPU group's Profiles from its mig-parted layout.
func (c ClusterSpec) Resolve(cat *topology.Catalog, parted *topology.MIGParted) (ClusterSpec, error) {
	out := c
	out.Groups = append([]NodeGroup(nil), c.Groups...)
	for i := range out.Groups {
		g := &out.Groups[i]
		if g.GPUs == 0 {
			continue
		}
		profiles, err := parted.Layout(cat, g.Layout, g.Product)
		if err != nil {
			return ClusterSpec{}, fmt.Errorf("node group %s: %w", g.Prefix, err)
		}
		g.Profiles = profiles
	}
	return out, nil
}

// Build returns fresh simulated nodes (a scheduler mutates nothing it is
// given, but every run gets its own) and the MIG device ID -> resource map
// of all nodes, for checking placements.
func (c ClusterSpec) Build(cat *topology.Catalog) ([]sim.Node, map[string]string, error) {
	var nodes []sim.Node
	deviceResource := map[string]string{}
	for _, g := range c.Groups {
		for i := range g.Count {
			name := fmt.Sprintf("%s-%d", g.Prefix, i)
			n := sim.Node{}
			var capacity map[string]int64
			if g.GPUs > 0 {
				if len(g.Profiles) == 0 {
					return nil, nil, fmt.Errorf("node group %s: layout %q not resolved to MIG profiles", g.Prefix, g.Layout)
				}
				topo, err := fixtures.Build(cat, fixtures.Spec{
					Name: name, Product: g.Product, GPUs: g.GPUs, MIG: g.Profiles,
					Strategy: topology.MIGStrategyMixed, Policy: c.Policy,
				})
				if err != nil {
					return nil, nil, fmt.Errorf("node %s: %w", name, err)
				}
				if capacity, err = topo.Capacity(); err != nil {
					return nil, nil, fmt.Errorf("node %s: %w", name, err)
				}
				for _, gpu := range topo.GPUs {
					for _, in := range gpu.Instances {
						deviceResource[in.DeviceID] = topology.MIGResourceName(in.Profile)
					}
				}
				n.Topology = topo
			}
			n.Node = kubeNode(name, g, capacity)
			nodes = append(nodes, n)
		}
	}
	return nodes, deviceResource, nil
}

// GPUResources lists the MIG resources the cluster advertises, sorted.
func (c ClusterSpec) GPUResources() []string {
	seen := map[string]bool{}
	for _, g := range c.Groups {
		for _, p := range g.Profiles {
			seen[topology.MIGResourceName(p)] = true
		}
	}
	out := make([]string, 0, len(seen))
	for r := range seen {
		out = append(out, r)
	}
	sort.Strings(out)
	return out
}

// Capacity sums the devices per MIG resource over the cluster.
func (c ClusterSpec) Capacity() map[string]int64 {
	out := map[string]int64{}
	for _, g := range c.Groups {
		for _, p := range g.Profiles {
			out[topology.MIGResourceName(p)] += int64(g.Count * g.GPUs)
		}
	}
	return out
}

// GPUNodes counts the nodes with GPUs, GPUs the GPUs.
func (c ClusterSpec) GPUNodes() (nodes, gpus int) {
	for _, g := range c.Groups {
		if g.GPUs > 0 {
			nodes += g.Count
			gpus += g.Count * g.GPUs
		}
	}
	return nodes, gpus
}

// kubeNode is the Node object the kubelet would report: allocatable CPU,
// memory and pods plus what the device plugin advertises (capacity).
func kubeNode(name string, g NodeGroup, capacity map[string]int64) *v1.Node {
	alloc := v1.ResourceList{
		v1.ResourceCPU:    *resource.NewMilliQuantity(g.CPUMilli, resource.DecimalSI),
		v1.ResourceMemory: *resource.NewQuantity(g.MemoryGiB<<30, resource.BinarySI),
		v1.ResourcePods:   *resource.NewQuantity(g.Pods, resource.DecimalSI),
	}
	for r, n := range capacity {
		alloc[v1.ResourceName(r)] = *resource.NewQuantity(n, resource.DecimalSI)
	}
	labels := map[string]string{v1.LabelHostname: name}
	if g.GPUs > 0 {
		// GPU feature discovery writes the product with '-' for spaces.
		labels[LabelProduct] = strings.ReplaceAll(g.Product, " ", "-")
		labels[LabelMIGConfig] = g.Layout
	}
	return &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, UID: types.UID(name)},
		Status: v1.NodeStatus{
			Capacity: alloc, Allocatable: alloc,
			Conditions: []v1.NodeCondition{{Type: v1.NodeReady, Status: v1.ConditionTrue}},
		},
	}
}
