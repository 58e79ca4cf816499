// Package gpuview builds the per-GPU view of a cluster where gpuslice runs:
// for every GPUNode, which MIG slice, whole GPU or time-sliced replica holds
// which pod, which are free, unhealthy or being reconfigured, and the
// cluster's totals (GPU-equivalents used, free and stranded, empty GPUs and
// nodes). Devices come from what the kubelet reported (GPUNode
// allocations); for pods it has not reported yet, from the scheduler's
// assignment annotation (marked predicted).
package gpuview

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"

	"github.com/gpuslice/gpuslice/pkg/allocator"
	gpusliceapi "github.com/gpuslice/gpuslice/pkg/apis/gpuslice/v1alpha1"
	"github.com/gpuslice/gpuslice/pkg/assignment"
	"github.com/gpuslice/gpuslice/pkg/podrequest"
	"github.com/gpuslice/gpuslice/pkg/topology"
)

// Slot is one device the device plugin advertises: a MIG device or a whole
// GPU, split into Replicas when time-sliced.
type Slot struct {
	// Label is the MIG profile, "GPU" or, time-sliced, "GPU x4".
	Label    string `json:"label"`
	Resource string `json:"resource"`
	DeviceID string `json:"deviceID"`
	Replicas int    `json:"replicas"`
	// Used counts the replicas (1 for an unshared device) in use.
	Used int `json:"used"`
	// Pods hold the slot, namespace/name; "(predicted)" marks a pod whose
	// devices only the scheduler's annotation gives.
	Pods []string `json:"pods,omitempty"`
}

// Free reports whether nothing holds the slot.
func (s *Slot) Free() bool { return s.Used == 0 }

// GPU is one physical GPU.
type GPU struct {
	Index           int    `json:"index"`
	UUID            string `json:"uuid"`
	Product         string `json:"product"`
	Healthy         bool   `json:"healthy"`
	UnhealthyReason string `json:"unhealthyReason,omitempty"`
	MIGEnabled      bool   `json:"migEnabled"`
	// Draining: gpuslice-repartitioner keeps new pods off the GPU (the
	// node's gpuslice.io/mig-drain annotation) until it is empty and its
	// MIG layout changes.
	Draining bool    `json:"draining,omitempty"`
	Slots    []Slot  `json:"slots"`
	Used     float64 `json:"usedGPUEquivalents"`
	Capacity float64 `json:"capacityGPUEquivalents"`
}

// Empty reports whether no device of the GPU is in use.
func (g *GPU) Empty() bool { return g.Used < 1e-9 }

// Node is one GPU node.
type Node struct {
	Name string `json:"name"`
	// State is the GPUNode's (Ready, Reconfiguring, Degraded).
	State   string `json:"state"`
	Message string `json:"message,omitempty"`
	// Reconfiguring is set while the MIG manager applies a layout (GPUNode
	// state or the node's nvidia.com/mig.config.state label).
	Reconfiguring bool `json:"reconfiguring"`
	// MIGConfig and MIGConfigState are the node's nvidia.com/mig.config
	// and nvidia.com/mig.config.state labels: the named layout MIG manager
	// applies (gpuslice-repartitioner's start with "gpuslice-") and how far.
	MIGConfig      string `json:"migConfig,omitempty"`
	MIGConfigState string `json:"migConfigState,omitempty"`
	GPUs           []GPU  `json:"gpus"`
	// Unattributed are GPU pods bound to the node whose devices nobody has
	// reported or predicted.
	Unattributed []string `json:"unattributed,omitempty"`
	// Problems are what could not be read (an invalid topology, devices
	// that do not resolve).
	Problems []string `json:"problems,omitempty"`
}

// Empty reports whether none of the node's GPUs is in use.
func (n *Node) Empty() bool {
	for i := range n.GPUs {
		if !n.GPUs[i].Empty() {
			return false
		}
	}
	return true
}

// Cluster is the view of every GPU node.
type Cluster struct {
	Nodes []Node `json:"nodes"`
	// PendingGPUPods are GPU pods not bound to a node.
	PendingGPUPods []string `json:"pendingGPUPods,omitempty"`
	// MIGDemand is, per MIG profile, the pending pods the scheduler
	// recorded as waiting for want of it (gpuslice.io/mig-demand).
	MIGDemand []ProfileDemand `json:"migDemand,omitempty"`
}

// ProfileDemand is the pending pods waiting for one MIG profile.
type ProfileDemand struct {
	Profile string `json:"profile"`
	// Pods counts the pods, Instances the instances they ask for.
	Pods      int `json:"pods"`
	Instances int `json:"instances"`
	// Oldest is the earliest since of their records.
	Oldest time.Time `json:"oldest"`
}

// Options for Build.
type Options struct {
	Catalog *topology.Catalog
	// DefaultPolicy stands for the device plugin policy a GPUNode does not
	// report.
	DefaultPolicy topology.AllocationPolicy
}

const predictedMark = " (predicted)"

// Build assembles the view from the GPUNodes, the pods (of every namespace)
// and the nodes (for their MIG manager label; may be nil).
func Build(gns []*gpusliceapi.GPUNode, pods []*v1.Pod, nodes []*v1.Node, o Options) *Cluster {
	if o.Catalog == nil {
		o.Catalog = topology.NewCatalog()
	}
	if o.DefaultPolicy == "" {
		o.DefaultPolicy = topology.PolicyDistributed
	}
	nodeLabels := map[string]map[string]string{}
	drains := map[string][]int{}
	for _, n := range nodes {
		nodeLabels[n.Name] = n.Labels
		drains[n.Name], _ = assignment.ParseDrain(n.Annotations[assignment.DrainAnnotation])
	}
	byNode := map[string][]*v1.Pod{}
	demand := map[string]ProfileDemand{}
	c := &Cluster{}
	for _, p := range pods {
		if p.Status.Phase == v1.PodSucceeded || p.Status.Phase == v1.PodFailed {
			continue
		}
		req, err := podrequest.Parse(p, podrequest.Options{Catalog: o.Catalog})
		if err != nil || req.Empty() {
			continue
		}
		if p.Spec.NodeName == "" {
			c.PendingGPUPods = append(c.PendingGPUPods, key(p.Namespace, p.Name))
			if d, err := assignment.DemandFromPod(p); err == nil && d != nil {
				for profile, n := range d.Profiles {
					demand[profile] = addDemand(demand[profile], profile, n, d.Since)
				}
			}
			continue
		}
		byNode[p.Spec.NodeName] = append(byNode[p.Spec.NodeName], p)
	}
	sort.Strings(c.PendingGPUPods)
	for _, d := range demand {
		c.MIGDemand = append(c.MIGDemand, d)
	}
	sort.Slice(c.MIGDemand, func(i, j int) bool { return c.MIGDemand[i].Profile < c.MIGDemand[j].Profile })
	gns = slices.Clone(gns)
	sort.Slice(gns, func(i, j int) bool { return gns[i].Name < gns[j].Name })
	for _, gn := range gns {
		c.Nodes = append(c.Nodes, buildNode(gn, byNode[gn.Name], nodeLabels[gn.Name], drains[gn.Name], o))
	}
	return c
}

func key(ns, name string) string { return ns + "/" + name }

func addDemand(d ProfileDemand, profile string, instances int, since time.Time) ProfileDemand {
	d.Profile = profile
	d.Pods++
	d.Instances += instances
	if d.Oldest.IsZero() || since.Before(d.Oldest) {
		d.Oldest = since
	}
	return d
}

// Line is the demand as text, its age at now: "MIG demand: 3 pods want
// 3g.20gb (3 instances, oldest 2m)".
func (d *ProfileDemand) Line(now time.Time) string {
	pods := "pods want"
	if d.Pods == 1 {
		pods = "pod wants"
	}
	return fmt.Sprintf("MIG demand: %d %s %s (%d instances, oldest %s)", d.Pods, pods, d.Profile, d.Instances, now.Sub(d.Oldest).Round(time.Second))
}

func buildNode(gn *gpusliceapi.GPUNode, pods []*v1.Pod, labels map[string]string, drains []int, o Options) Node {
	n := Node{Name: gn.Name, State: string(gn.Spec.State), Message: gn.Spec.Message}
	n.Reconfiguring = gn.Spec.State == gpusliceapi.StateReconfiguring
	if st, ok := labels[topology.MIGConfigStateLabel]; ok && st != "success" {
		n.Reconfiguring = true
	}
	n.MIGConfig, n.MIGConfigState = labels[topology.MIGConfigLabel], labels[topology.MIGConfigStateLabel]
	topo := gn.Spec.Topology()
	compiled, err := allocator.Compile(topo, o.Catalog, o.DefaultPolicy)
	if err != nil {
		n.Problems = append(n.Problems, fmt.Sprintf("topology: %v", err))
		return n
	}
	units, err := topo.Units()
	if err != nil {
		n.Problems = append(n.Problems, fmt.Sprintf("topology: %v", err))
		return n
	}
	state := allocator.NewState(compiled)
	holders := map[string][]string{} // base device ID -> pods
	apply := func(who string, devs []allocator.ResourceDevices) {
		if err := state.Apply(devs); err != nil {
			n.Problems = append(n.Problems, fmt.Sprintf("%s: %v", who, err))
			return
		}
		for _, rd := range devs {
			for _, id := range rd.DeviceIDs {
				base, _, _ := topology.SplitReplicaID(id)
				if !slices.Contains(holders[base], who) {
					holders[base] = append(holders[base], who)
				}
			}
		}
	}
	reported := map[string]bool{}
	for _, a := range gn.Spec.Allocations {
		reported[a.PodUID] = true
		var devs []allocator.ResourceDevices
		for _, c := range a.Containers {
			for _, d := range c.Devices {
				devs = append(devs, allocator.ResourceDevices{Resource: d.Resource, DeviceIDs: d.DeviceIDs})
			}
		}
		apply(key(a.Namespace, a.Name), devs)
	}
	sort.Slice(pods, func(i, j int) bool {
		return key(pods[i].Namespace, pods[i].Name) < key(pods[j].Namespace, pods[j].Name)
	})
	for _, p := range pods {
		if reported[string(p.UID)] {
			continue
		}
		a, err := assignment.FromPod(p)
		if err != nil || a == nil || a.Node != n.Name {
			n.Unattributed = append(n.Unattributed, key(p.Namespace, p.Name))
			continue
		}
		apply(key(p.Namespace, p.Name)+predictedMark, a.Placement().Devices())
	}

	usage := state.GPUs()
	for gi, g := range topo.GPUs {
		gv := GPU{Index: g.Index, UUID: g.UUID, Product: g.Product, Healthy: g.Healthy, UnhealthyReason: g.UnhealthyReason, MIGEnabled: g.MIGEnabled, Draining: slices.Contains(drains, g.Index)}
		for _, u := range usage {
			if u.UUID == g.UUID {
				gv.Used, gv.Capacity = u.Used, u.Capacity
			}
		}
		for _, u := range units {
			if u.GPU != gi {
				continue
			}
			label := "GPU"
			if u.Instance >= 0 {
				label = g.Instances[u.Instance].Profile
			}
			if u.Shared {
				label += fmt.Sprintf(" x%d", u.Replicas)
			}
			s := Slot{Label: label, Resource: u.Resource, DeviceID: u.DeviceID, Replicas: u.Replicas, Pods: holders[u.DeviceID]}
			s.Used = usedReplicas(state, u)
			gv.Slots = append(gv.Slots, s)
		}
		n.GPUs = append(n.GPUs, gv)
	}
	return n
}

// usedReplicas counts a unit's allocated replicas from the state's
// per-resource usage, by probing each replica ID.
func usedReplicas(s *allocator.State, u topology.Unit) int {
	if !u.Shared {
		if taken(s, u.Resource, u.DeviceID) {
			return 1
		}
		return 0
	}
	n := 0
	for r := range u.Replicas {
		if taken(s, u.Resource, topology.ReplicaID(u.DeviceID, r)) {
			n++
		}
	}
	return n
}

// taken reports whether a device is allocated: applying it again fails
// only when it is (the clone keeps s unchanged).
func taken(s *allocator.State, resource, id string) bool {
	c := s.Clone()
	return c.Apply([]allocator.ResourceDevices{{Resource: resource, DeviceIDs: []string{id}}}) != nil
}

// Totals are the cluster's GPU figures (`kubectl gpuslice top`).
type Totals struct {
	GPUNodes int `json:"gpuNodes"`
	GPUs     int `json:"gpus"`
	// GPU-equivalents (a MIG 3g of 7 is 3/7) of healthy GPUs.
	Capacity float64 `json:"capacityGPUEquivalents"`
	Used     float64 `json:"usedGPUEquivalents"`
	Free     float64 `json:"freeGPUEquivalents"`
	// Stranded is the free capacity of partly used GPUs: it can take
	// slices, not a pod that needs a whole GPU.
	Stranded       float64 `json:"strandedGPUEquivalents"`
	EmptyGPUs      int     `json:"emptyGPUs"`
	EmptyNodes     int     `json:"emptyNodes"`
	UnhealthyGPUs  int     `json:"unhealthyGPUs"`
	NotReadyNodes  int     `json:"notReadyNodes"`
	PendingGPUPods int     `json:"pendingGPUPods"`
}

// Totals sums the view. Unhealthy GPUs count in GPUs and UnhealthyGPUs only;
// nodes that are not Ready count in NotReadyNodes and their GPUs as usual.
func (c *Cluster) Totals() Totals {
	t := Totals{GPUNodes: len(c.Nodes), PendingGPUPods: len(c.PendingGPUPods)}
	for i := range c.Nodes {
		n := &c.Nodes[i]
		if n.State != string(gpusliceapi.StateReady) {
			t.NotReadyNodes++
		}
		if n.Empty() && len(n.GPUs) > 0 {
			t.EmptyNodes++
		}
		for j := range n.GPUs {
			g := &n.GPUs[j]
			t.GPUs++
			if !g.Healthy {
				t.UnhealthyGPUs++
				continue
			}
			t.Capacity += g.Capacity
			t.Used += g.Used
			free := g.Capacity - g.Used
			t.Free += free
			if g.Empty() {
				t.EmptyGPUs++
			} else if free > 1e-9 {
				t.Stranded += free
			}
		}
	}
	return t
}

// Line is one GPU as text: "GPU 0 [1g.5gb: ml/a] [1g.5gb: free] ...".
func (g *GPU) Line() string { return g.StyledLine(nil) }

// Style marks up a part of a line: kind is "free", "held", "predicted" or
// "unhealthy".
type Style func(kind, text string) string

// StyledLine is Line with each slot's holder and the health marked up by
// style (nil: plain).
func (g *GPU) StyledLine(style Style) string {
	if style == nil {
		style = func(_, text string) string { return text }
	}
	var parts []string
	for _, s := range g.Slots {
		who := style("free", "free")
		if !s.Free() {
			kind := "held"
			for _, p := range s.Pods {
				if strings.HasSuffix(p, predictedMark) {
					kind = "predicted"
				}
			}
			text := strings.Join(s.Pods, ",")
			if s.Replicas > 1 {
				text = fmt.Sprintf("%d/%d %s", s.Used, s.Replicas, text)
			}
			who = style(kind, text)
		}
		parts = append(parts, fmt.Sprintf("[%s: %s]", s.Label, who))
	}
	line := fmt.Sprintf("GPU %d %s", g.Index, strings.Join(parts, " "))
	if !g.Healthy {
		reason := g.UnhealthyReason
		if reason == "" {
			reason = "unhealthy"
		}
		line += " " + style("unhealthy", "UNHEALTHY ("+reason+")")
	}
	if g.Draining {
		line += " " + style("state", "draining: no new pod until its MIG layout changes")
	}
	return line
}
