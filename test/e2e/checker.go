// Package e2e runs the whole chain — exporter → GPUNode → scheduler →
// kubelet's pick → read-back — on a real control plane with simulated GPU
// nodes, under churn and failures.
package e2e

import (
	"fmt"
	"sort"
	"strings"

	"github.com/gpuslice/gpuslice/pkg/allocator"
	"github.com/gpuslice/gpuslice/pkg/podrequest"
	"github.com/gpuslice/gpuslice/pkg/topology"
)

// PodView is what the checker knows of one live pod.
type PodView struct {
	Name string
	Node string // "" while pending
	// Request is the parsed GPU request.
	Request *podrequest.Request
	// Assigned are the devices in the scheduler's annotation; Given those the
	// (fake) kubelet actually handed out; Reported those the node's exporter
	// published for the pod.
	Assigned, Given, Reported []allocator.ResourceDevices
	// AssignedHeld: the annotation says Assigned are the kubelet's devices
	// (source "kubelet"), not a prediction.
	AssignedHeld bool
	// Failed is the kubelet's admission error, if it rejected the pod.
	Failed string
	// OnlyNode restricts the pod to one node (a hostname node selector).
	OnlyNode string
}

// NodeView is a node's published topology and whether it may take GPU pods.
type NodeView struct {
	Topology *topology.Node
	Usable   bool
}

// Check returns every violated invariant:
//   - no device is held by two live pods, neither in what the kubelet gave
//     nor in the scheduler's view: a pod's annotation until the exporter
//     reports the kubelet's actual pick, which then replaces it (the pick
//     among equal devices is arbitrary, so an annotation may name a device
//     the kubelet gave to another pod's equal twin);
//   - the kubelet admitted every pod the scheduler bound (no admission error);
//   - every bound GPU pod has an assignment with exactly its request, of
//     devices its node advertises, and the kubelet's pick has the same
//     resources and counts (equal devices may differ: the pick among equals is
//     arbitrary); when the exporter reported the pod, it reported the
//     kubelet's pick;
//   - an annotation that claims the kubelet's devices (source "kubelet") names
//     exactly what the kubelet gave, so no device is in two live pods'
//     claimed holdings;
//   - no pending pod fits on a usable node, given what the kubelet holds.
func Check(nodes map[string]NodeView, pods []PodView) []string {
	var problems []string
	heldBy := map[string]string{}
	add := func(f string, a ...any) { problems = append(problems, fmt.Sprintf(f, a...)) }
	cat := topology.NewCatalog()
	assigned := map[string]*allocator.State{}
	given := map[string]*allocator.State{}
	for name, nv := range nodes {
		c, err := allocator.Compile(nv.Topology, cat, "")
		if err != nil {
			add("node %s: %v", name, err)
			continue
		}
		assigned[name], given[name] = allocator.NewState(c), allocator.NewState(c)
	}
	sort.Slice(pods, func(i, j int) bool { return pods[i].Name < pods[j].Name })
	var pending []PodView
	for _, p := range pods {
		if p.Failed != "" {
			add("pod %s rejected by the kubelet on %s: %s", p.Name, p.Node, p.Failed)
			continue
		}
		if p.Node == "" {
			pending = append(pending, p)
			continue
		}
		if p.Request.Empty() {
			continue
		}
		st, ok := assigned[p.Node]
		if !ok {
			add("pod %s bound to %s, which has no usable topology", p.Name, p.Node)
			continue
		}
		if len(p.Assigned) == 0 {
			add("pod %s on %s has no assignment", p.Name, p.Node)
		}
		view := p.Assigned
		if p.Reported != nil {
			view = p.Reported
		}
		if err := st.Apply(view); err != nil {
			add("pod %s: scheduler's view (annotation or read-back): %v", p.Name, err)
		}
		if got, want := counts(p.Assigned), p.Request.String(); got != want {
			add("pod %s: assigned %s for a request of %s", p.Name, got, want)
		}
		if p.Given == nil {
			continue // the kubelet has not admitted it yet
		}
		if err := given[p.Node].Apply(p.Given); err != nil {
			add("pod %s: kubelet's devices: %v", p.Name, err)
		}
		if p.AssignedHeld {
			if fmt.Sprint(sorted(p.Assigned)) != fmt.Sprint(sorted(p.Given)) {
				add("pod %s: annotation claims the kubelet gave %v, it gave %v", p.Name, p.Assigned, p.Given)
			}
			for _, id := range sorted(p.Assigned) {
				if other, dup := heldBy[p.Node+"/"+id]; dup {
					add("device %s on %s claimed as held by live pods %s and %s", id, p.Node, other, p.Name)
				}
				heldBy[p.Node+"/"+id] = p.Name
			}
		}
		if counts(p.Given) != counts(p.Assigned) {
			add("pod %s: kubelet gave %s, scheduler assigned %s", p.Name, counts(p.Given), counts(p.Assigned))
		}
		if p.Reported != nil && fmt.Sprint(sorted(p.Reported)) != fmt.Sprint(sorted(p.Given)) {
			add("pod %s: exporter reported %v, kubelet gave %v", p.Name, p.Reported, p.Given)
		}
	}
	for _, p := range pending {
		for name, st := range given {
			if p.OnlyNode != "" && name != p.OnlyNode {
				continue
			}
			if nodes[name].Usable && st.Check(p.Request).OK() {
				add("pending pod %s (%s) fits on %s", p.Name, p.Request, name)
				break
			}
		}
	}
	return problems
}

func counts(devs []allocator.ResourceDevices) string {
	m := map[string]int{}
	for _, rd := range devs {
		m[rd.Resource] += len(rd.DeviceIDs)
	}
	var parts []string
	for k, v := range m {
		parts = append(parts, fmt.Sprintf("%s=%d", k, v))
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

func sorted(devs []allocator.ResourceDevices) []string {
	var out []string
	for _, rd := range devs {
		for _, id := range rd.DeviceIDs {
			out = append(out, rd.Resource+"/"+id)
		}
	}
	sort.Strings(out)
	return out
}
