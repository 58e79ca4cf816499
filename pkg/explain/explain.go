// Package explain answers "why is this GPU pod pending, and what would fit
// it?" and "which devices did this pod get, and did the kubelet pick what
// gpuslice predicted?" (`kubectl gpuslice explain`). It is pure: it reads
// the objects it is given (GPUNodes, exporter Leases, pods, nodes, the
// profile's GPUSliceArgs) and judges each node with the scheduler plugin's
// own code: the same cache (pkg/cache) fed the way the plugin's informers
// feed it, the same freshness rules, allocator State.Check and the Filter's
// messages.
package explain

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	v1 "k8s.io/api/core/v1"
	v1helper "k8s.io/component-helpers/scheduling/corev1"
	"k8s.io/klog/v2"

	"github.com/gpuslice/gpuslice/pkg/allocator"
	"github.com/gpuslice/gpuslice/pkg/apis/config"
	gpusliceapi "github.com/gpuslice/gpuslice/pkg/apis/gpuslice/v1alpha1"
	"github.com/gpuslice/gpuslice/pkg/cache"
	"github.com/gpuslice/gpuslice/pkg/plugins/gpuslice"
	"github.com/gpuslice/gpuslice/pkg/podrequest"
	"github.com/gpuslice/gpuslice/pkg/topology"
)

// Input is what Explain reads.
type Input struct {
	Pod *v1.Pod
	// Pods are the cluster's pods (every namespace); Pod may be among them.
	Pods     []*v1.Pod
	GPUNodes []*gpusliceapi.GPUNode
	// Leases are the exporters' heartbeats (in Args.LeaseNamespace).
	Leases []*coordinationv1.Lease
	Nodes  []*v1.Node
	// Args are the GPUSlice args of the profile named by the pod's
	// schedulerName; nil when no gpuslice profile has that name.
	Args *config.GPUSliceArgs
	// Now is the time heartbeats are judged at.
	Now     time.Time
	Catalog *topology.Catalog
	// MIGParted, when set, names the layouts that would offer a MIG
	// profile no node has.
	MIGParted *topology.MIGParted
}

// Status of the pod as Explain sees it.
const (
	StatusNoGPU       = "NoGPU"
	StatusNotGPUSlice = "NotScheduledByGPUSlice"
	StatusPending     = "Pending"
	StatusBound       = "Bound"
	StatusFinished    = "Finished"
	// StatusInvalid: the pod's GPU request is invalid (gpuslice's
	// PreFilter rejects it with the same message).
	StatusInvalid = "InvalidRequest"
)

// Report is Explain's answer.
type Report struct {
	Pod           string   `json:"pod"`
	SchedulerName string   `json:"schedulerName"`
	Status        string   `json:"status"`
	Summary       string   `json:"summary"`
	Request       []string `json:"request,omitempty"`
	Sharing       string   `json:"sharing,omitempty"`
	// Unschedulable is the message of the pod's PodScheduled=False
	// condition (the scheduler's summary over all its plugins).
	Unschedulable string `json:"unschedulableMessage,omitempty"`
	// Nodes are each GPU node's verdict for a pending pod.
	Nodes []NodeVerdict `json:"nodes,omitempty"`
	// FitsNow are the nodes where the pod fits now.
	FitsNow []string `json:"fitsNow,omitempty"`
	// WouldFit are the smallest changes that would make it fit.
	WouldFit []string `json:"wouldFit,omitempty"`
	Bound    *Bound   `json:"bound,omitempty"`
}

// NodeVerdict is one node's verdict on a pending pod.
type NodeVerdict struct {
	Node string `json:"node"`
	// GPUs is gpuslice Filter's message ("" when the pod's GPUs fit).
	GPUs string `json:"gpus,omitempty"`
	// Unresolvable: the node cannot take the pod until it changes
	// (preemption would not help).
	Unresolvable bool `json:"unresolvable,omitempty"`
	// Other are other scheduler checks the node fails (cordoned, a taint
	// not tolerated, nodeSelector); not exhaustive.
	Other []string `json:"other,omitempty"`
}

// Fits reports whether nothing rejects the node.
func (v *NodeVerdict) Fits() bool { return v.GPUs == "" && len(v.Other) == 0 }

// Devices are one container's devices of one resource.
type Devices struct {
	Container string   `json:"container"`
	Resource  string   `json:"resource"`
	DeviceIDs []string `json:"deviceIDs"`
}

// Match values.
const (
	MatchEqual     = "equal"
	MatchTwin      = "equal twin"
	MatchDifferent = "different"
	MatchUnknown   = "unknown"
)

// Bound describes a bound pod's devices.
type Bound struct {
	Node string `json:"node"`
	// Kubelet are the devices the kubelet gave, as the node's exporter read
	// them back (GPUNode allocations); empty when not reported yet.
	Kubelet []Devices `json:"kubelet,omitempty"`
	// Assignment is the pod's gpuslice.io/assignment annotation.
	Assignment       []Devices `json:"assignment,omitempty"`
	AssignmentSource string    `json:"assignmentSource,omitempty"`
	// Match compares the prediction with the kubelet's pick: equal, equal
	// twin (other devices of the same shapes on GPUs of the same product
	// and layout), different, or unknown.
	Match string `json:"match"`
	Note  string `json:"note,omitempty"`
}

// Explain builds the report.
func Explain(in Input) (*Report, error) {
	if in.Pod == nil {
		return nil, fmt.Errorf("no pod given")
	}
	if in.Catalog == nil {
		in.Catalog = topology.NewCatalog()
	}
	pod := in.Pod
	r := &Report{Pod: pod.Namespace + "/" + pod.Name, SchedulerName: pod.Spec.SchedulerName}
	if r.SchedulerName == "" {
		r.SchedulerName = v1.DefaultSchedulerName
	}
	sharing := ""
	if in.Args != nil {
		sharing = in.Args.DefaultSharing
	}
	req, err := gpuslice.ParseRequest(pod, in.Catalog, sharing)
	if err != nil {
		r.Status, r.Summary = StatusInvalid, "gpuslice rejects the pod's GPU request on every node: "+err.Error()
		return r, nil
	}
	if req.Empty() {
		r.Status, r.Summary = StatusNoGPU, "the pod asks for no GPU resource: gpuslice does not place its devices"
		return r, nil
	}
	for _, rc := range req.Effective {
		r.Request = append(r.Request, fmt.Sprintf("%s: %d", rc.Name, rc.Count))
	}
	r.Sharing = string(req.Sharing)
	if pod.Status.Phase == v1.PodSucceeded || pod.Status.Phase == v1.PodFailed {
		r.Status, r.Summary = StatusFinished, fmt.Sprintf("the pod has finished (%s): it holds no devices", pod.Status.Phase)
		return r, nil
	}
	if pod.Spec.NodeName != "" {
		r.Status = StatusBound
		r.Bound = explainBound(in, pod)
		r.Summary = fmt.Sprintf("bound to %s; kubelet's pick vs prediction: %s", pod.Spec.NodeName, r.Bound.Match)
		if in.Args == nil {
			r.Summary += fmt.Sprintf(" (schedulerName %s is not a gpuslice profile)", r.SchedulerName)
		}
		return r, nil
	}
	if in.Args == nil {
		r.Status = StatusNotGPUSlice
		r.Summary = fmt.Sprintf("schedulerName %s is not a gpuslice profile: gpuslice does not schedule this pod", r.SchedulerName)
		return r, nil
	}
	r.Status = StatusPending
	for _, c := range pod.Status.Conditions {
		if c.Type == v1.PodScheduled && c.Status == v1.ConditionFalse {
			r.Unschedulable = c.Message
		}
	}
	explainPending(in, req, r)
	if n := pod.Status.NominatedNodeName; n != "" {
		r.Summary += fmt.Sprintf("; nominated for node %s (preemption is making room there)", n)
	}
	return r, nil
}

// buildCache feeds a cache the way the plugin's informers do.
func buildCache(in Input, skip *v1.Pod) *cache.Cache {
	policy := topology.AllocationPolicy(in.Args.DefaultAllocationPolicy)
	if policy == "" {
		policy = topology.PolicyDistributed
	}
	c := cache.New(cache.Options{
		Catalog:       in.Catalog,
		DefaultPolicy: policy,
		StaleAfter:    in.Args.HeartbeatTimeout.Duration,
		Now:           func() time.Time { return in.Now },
	})
	for _, gn := range in.GPUNodes {
		c.SetTopology(gn.Name, gpuslice.TopologyOf(gn))
	}
	for _, l := range in.Leases {
		if l.Namespace == in.Args.LeaseNamespace {
			c.SetHeartbeat(l.Name, gpuslice.RenewTime(l))
		}
	}
	for _, p := range in.Pods {
		if p.UID == skip.UID {
			continue
		}
		if u, _, err := gpuslice.PodUpdateOf(p, in.Catalog); err == nil {
			c.UpsertPod(u)
		}
	}
	return c
}

// gpuNodeNames are the nodes with a GPUNode or a GPU resource.
func gpuNodeNames(in Input) []string {
	set := map[string]bool{}
	for _, gn := range in.GPUNodes {
		set[gn.Name] = true
	}
	for _, n := range in.Nodes {
		for name := range n.Status.Allocatable {
			if podrequest.IsGPUResource(string(name), podrequest.Options{}) {
				set[n.Name] = true
			}
		}
	}
	names := make([]string, 0, len(set))
	for n := range set {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func explainPending(in Input, req *podrequest.Request, r *Report) {
	c := buildCache(in, in.Pod)
	nodes := map[string]*v1.Node{}
	for _, n := range in.Nodes {
		nodes[n.Name] = n
	}
	type cand struct {
		name string
		st   *allocator.State
	}
	var unusable []string
	var usable []cand
	for _, name := range gpuNodeNames(in) {
		v := NodeVerdict{Node: name, Other: otherChecks(in.Pod, nodes[name])}
		view := c.View(name)
		switch {
		case !view.Freshness.Usable:
			v.GPUs, v.Unresolvable = gpuslice.UnusableReason(view.Freshness), true
			if view.State != nil && view.State.Check(req).OK() && len(v.Other) == 0 {
				unusable = append(unusable, fmt.Sprintf("fits on %s once it takes GPU pods again (%s)", name, view.Freshness.Reason))
			}
		default:
			if verdict := view.State.Check(req); !verdict.OK() {
				v.GPUs, v.Unresolvable = gpuslice.RejectReason(verdict), verdict.Unresolvable()
			}
			if len(v.Other) == 0 {
				usable = append(usable, cand{name, view.State})
			}
		}
		if v.Fits() {
			r.FitsNow = append(r.FitsNow, name)
		}
		r.Nodes = append(r.Nodes, v)
	}
	switch {
	case len(r.FitsNow) > 0:
		r.Summary = fmt.Sprintf("fits now on %s (the scheduler retries it on the next cluster event)", strings.Join(r.FitsNow, ", "))
		return
	case len(r.Nodes) == 0:
		r.Summary = "no GPU node: no GPUNode and no node with a GPU resource"
		return
	}
	r.Summary = fmt.Sprintf("no GPU node fits it (%d rejected)", len(r.Nodes))
	// One pod leaving a node.
	podsOn := map[string][]*v1.Pod{}
	for _, p := range in.Pods {
		if p.Spec.NodeName != "" && p.UID != in.Pod.UID {
			podsOn[p.Spec.NodeName] = append(podsOn[p.Spec.NodeName], p)
		}
	}
	for _, cd := range usable {
		var leaving []string
		for _, p := range podsOn[cd.name] {
			info, ok := c.Pod(p.UID)
			if !ok || info.Node != cd.name || len(info.Devices) == 0 {
				continue
			}
			st := cd.st.Clone()
			if st.Release(info.Devices) != nil {
				continue
			}
			if st.Check(req).OK() {
				leaving = append(leaving, p.Namespace+"/"+p.Name)
			}
		}
		sort.Strings(leaving)
		if len(leaving) > 0 {
			r.WouldFit = append(r.WouldFit, fmt.Sprintf("fits on %s once one of these pods leaves: %s", cd.name, strings.Join(leaving, ", ")))
		}
	}
	r.WouldFit = append(r.WouldFit, unusable...)
	if len(r.WouldFit) > 0 {
		return
	}
	for _, cd := range usable {
		if allocator.NewState(cd.st.Node()).Check(req).OK() {
			r.WouldFit = append(r.WouldFit, fmt.Sprintf("fits on %s only once several of its GPU pods leave (it fits the node empty)", cd.name))
		}
	}
	if len(r.WouldFit) > 0 {
		return
	}
	r.WouldFit = append(r.WouldFit, notOffered(in, req)...)
	if len(r.WouldFit) == 0 {
		r.WouldFit = append(r.WouldFit, "no GPU node fits it even empty: a node with more or other GPUs (see the per-node reasons)")
	}
}

// notOffered names the resources of the request no GPU node offers, with
// the mig-parted layouts that would offer a MIG profile on the cluster's
// GPU products.
func notOffered(in Input, req *podrequest.Request) []string {
	offered := map[string]bool{}
	products := map[string]bool{}
	for _, gn := range in.GPUNodes {
		capacity, err := gn.Spec.Topology().Capacity()
		if err != nil {
			continue
		}
		for res, n := range capacity {
			if n > 0 {
				offered[res] = true
			}
		}
		for _, g := range gn.Spec.GPUs {
			products[g.Product] = true
		}
	}
	var out []string
	for _, rc := range req.Effective {
		if offered[rc.Name] {
			continue
		}
		msg := "no node offers " + rc.Name
		profile, isMIG := topology.ProfileFromResource(rc.Name)
		if isMIG && in.MIGParted != nil {
			var layouts []string
			for _, cfg := range in.MIGParted.ConfigNames() {
				for _, product := range sortedKeys(products) {
					profiles, err := in.MIGParted.Layout(in.Catalog, cfg, product)
					if err == nil && slices.Contains(profiles, profile) {
						layouts = append(layouts, fmt.Sprintf("%s (%s)", cfg, product))
					}
				}
			}
			if len(layouts) > 0 {
				msg += "; mig-parted layouts that do (label nvidia.com/mig.config): " + strings.Join(layouts, ", ")
			} else {
				msg += "; no mig-parted layout offers it on this cluster's GPU products"
			}
		}
		out = append(out, msg)
	}
	return out
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// otherChecks are a few of the other scheduler plugins' checks, so that a
// node gpuslice accepts is not called a fit when the pod cannot go there.
func otherChecks(pod *v1.Pod, node *v1.Node) []string {
	if node == nil {
		return []string{"no Node object"}
	}
	var out []string
	if node.Spec.Unschedulable {
		out = append(out, "node is cordoned (unschedulable)")
	}
	if t, bad := v1helper.FindMatchingUntoleratedTaint(klog.Background(), node.Spec.Taints, pod.Spec.Tolerations, func(t *v1.Taint) bool {
		return t.Effect == v1.TaintEffectNoSchedule || t.Effect == v1.TaintEffectNoExecute
	}, true); bad {
		out = append(out, fmt.Sprintf("taint %s not tolerated", t.ToString()))
	}
	for k, v := range pod.Spec.NodeSelector {
		if node.Labels[k] != v {
			out = append(out, fmt.Sprintf("nodeSelector %s=%s does not match", k, v))
		}
	}
	sort.Strings(out)
	return out
}
