// Package whatif answers "what would gpuslice save on my cluster?": it
// reads a cluster (live or from a snapshot), infers every node's GPU
// topology where gpuslice has not published one, and replays the cluster's
// current GPU pods, in creation order, under kube-scheduler's default
// profile and under each of gpuslice's profiles with the in-process
// simulator (pkg/sim), then reports GPU nodes and GPUs used and freed, pods
// left unplaced and what the GPU nodes cost.
package whatif

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	v1 "k8s.io/api/core/v1"
	schedconfig "k8s.io/kubernetes/pkg/scheduler/apis/config"

	gpusliceapi "github.com/gpuslice/gpuslice/pkg/apis/gpuslice/v1alpha1"
	"github.com/gpuslice/gpuslice/pkg/podrequest"
	"github.com/gpuslice/gpuslice/pkg/sim"
	"github.com/gpuslice/gpuslice/pkg/topology"
)

// HoursPerMonth turns hourly prices into monthly ones (365 × 24 / 12).
const HoursPerMonth = 730

// Cluster is what whatif reads from a cluster.
type Cluster struct {
	Nodes []*v1.Node
	Pods  []*v1.Pod
	// GPUNodes are gpuslice's published topologies by node name; empty
	// before gpuslice is installed.
	GPUNodes map[string]*gpusliceapi.GPUNode
}

// Options configure an analysis.
type Options struct {
	Inferrer *Inferrer
	// Profiles are replayed side by side, in this order.
	Profiles []*schedconfig.KubeSchedulerProfile
	// Baseline is the profile that replays today's placements (pods held to
	// their nodes); kube-scheduler's default profile.
	Baseline *schedconfig.KubeSchedulerProfile
	// Prices are $/hour by instance type; nil for no dollar figures.
	Prices Prices
	Seed   uint64
}

// Report is the result of an analysis. Its JSON form is the contract of
// `kubectl gpuslice whatif -o json`.
type Report struct {
	Current  Current         `json:"current"`
	Profiles []ProfileReport `json:"profiles"`
	Nodes    []NodeReport    `json:"nodes"`
	// SkippedPods are GPU pods not replayed, with the reason.
	SkippedPods []PodNote `json:"skippedPods,omitempty"`
}

// Current is the cluster as it is.
type Current struct {
	GPUNodes int `json:"gpuNodes"`
	GPUs     int `json:"gpus"`
	// GPUPods are the GPU pods replayed: bound ones and pending ones.
	GPUPods        int `json:"gpuPods"`
	PendingGPUPods int `json:"pendingGPUPods"`
	// GPUNodesWithPods are the GPU nodes running GPU pods today.
	GPUNodesWithPods int `json:"gpuNodesWithPods"`
	// GPUsUsed are the GPUs the bound GPU pods hold, as the device plugin
	// would assign them on their nodes, in creation order.
	GPUsUsed int `json:"gpusUsed"`
	// DollarsPerMonth prices the GPU nodes running GPU pods; null without
	// prices.
	DollarsPerMonth *float64 `json:"dollarsPerMonth"`
	// NotHeld are bound GPU pods that do not fit their own node as modelled
	// (a topology inferred wrong, or a node the device plugin overcommits):
	// a sign to read the per-node notes.
	NotHeld []PodNote `json:"notHeld,omitempty"`
}

// ProfileReport is one profile's replay.
type ProfileReport struct {
	// Name is the profile's schedulerName.
	Name         string `json:"name"`
	GPUNodesUsed int    `json:"gpuNodesUsed"`
	// GPUNodesFreed is Current.GPUNodesWithPods minus GPUNodesUsed
	// (negative when the profile spreads over more nodes than today).
	GPUNodesFreed int `json:"gpuNodesFreed"`
	GPUsUsed      int `json:"gpusUsed"`
	// GPUsFreed is Current.GPUsUsed minus GPUsUsed.
	GPUsFreed          int     `json:"gpusFreed"`
	UsedGPUEquivalents float64 `json:"usedGPUEquivalents"`
	PodsPlaced         int     `json:"podsPlaced"`
	PodsUnplaced       int     `json:"podsUnplaced"`
	// DollarsPerMonth prices the GPU nodes used; null without prices.
	DollarsPerMonth *float64 `json:"dollarsPerMonth"`
	// UnpricedNodes counts GPU nodes used whose instance type has no price.
	UnpricedNodes int `json:"unpricedNodes,omitempty"`
	// Unplaced lists the pods not placed and why.
	Unplaced []PodNote `json:"unplaced,omitempty"`
	// Result is the full replay (placements, per-GPU usage).
	Result *sim.ReplayResult `json:"-"`
}

// NodeReport is one GPU node and how its topology was obtained.
type NodeReport struct {
	Name         string     `json:"name"`
	InstanceType string     `json:"instanceType,omitempty"`
	GPUs         int        `json:"gpus"`
	Confidence   Confidence `json:"confidence"`
	Source       string     `json:"source"`
	Notes        []string   `json:"notes,omitempty"`
	GPUPodsToday int        `json:"gpuPodsToday"`
	// PricePerHour is the instance type's price; null when unknown.
	PricePerHour *float64 `json:"pricePerHour"`
}

// PodNote names a pod and says something about it.
type PodNote struct {
	Pod    string `json:"pod"`
	Reason string `json:"reason"`
}

// Analyze infers the topologies and replays the GPU pods under each
// profile.
func Analyze(ctx context.Context, c *Cluster, o Options) (*Report, error) {
	if o.Inferrer == nil || o.Inferrer.Catalog == nil {
		return nil, fmt.Errorf("whatif: no inferrer")
	}
	if o.Baseline == nil || len(o.Profiles) == 0 {
		return nil, fmt.Errorf("whatif: no scheduler profiles")
	}
	r := &Report{}
	in := sim.ReplayInput{Seed: o.Seed, DefaultPolicy: topology.PolicyDistributed}
	nodeByName := map[string]*v1.Node{}
	gpuNode := map[string]bool{}
	nodes := slices.Clone(c.Nodes)
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Name < nodes[j].Name })
	for _, n := range nodes {
		if _, dup := nodeByName[n.Name]; dup {
			return nil, fmt.Errorf("node %s listed twice", n.Name)
		}
		nodeByName[n.Name] = n
		inf := o.Inferrer.Infer(n, c.GPUNodes[n.Name])
		in.Nodes = append(in.Nodes, sim.Node{Node: n, Topology: inf.Topology})
		if inf.Confidence == "" {
			continue
		}
		gpuNode[n.Name] = inf.Topology != nil
		nr := NodeReport{
			Name: n.Name, InstanceType: n.Labels[LabelInstanceType], GPUs: inf.GPUs(),
			Confidence: inf.Confidence, Source: inf.Source, Notes: inf.Notes,
		}
		if p, ok := o.Prices.Lookup(nr.InstanceType); ok {
			nr.PricePerHour = &p
		}
		r.Nodes = append(r.Nodes, nr)
		if inf.Topology != nil {
			r.Current.GPUNodes++
			r.Current.GPUs += inf.GPUs()
		}
	}

	// The GPU pods in creation order; pods without GPUs that run on a node
	// keep their place.
	cat := o.Inferrer.Catalog
	var bound []*v1.Pod
	podsToday := map[string]int{}
	pods := slices.Clone(c.Pods)
	sort.SliceStable(pods, func(i, j int) bool {
		a, b := pods[i], pods[j]
		if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
			return a.CreationTimestamp.Before(&b.CreationTimestamp)
		}
		return a.Namespace+"/"+a.Name < b.Namespace+"/"+b.Name
	})
	for _, p := range pods {
		if p.Status.Phase == v1.PodSucceeded || p.Status.Phase == v1.PodFailed || p.DeletionTimestamp != nil {
			continue
		}
		req, err := podrequest.Parse(p, podrequest.Options{Catalog: cat})
		if err != nil {
			r.SkippedPods = append(r.SkippedPods, PodNote{Pod: p.Namespace + "/" + p.Name, Reason: err.Error()})
			continue
		}
		if req.Empty() {
			if p.Spec.NodeName != "" {
				if _, ok := nodeByName[p.Spec.NodeName]; ok {
					in.Fixed = append(in.Fixed, p)
				}
			}
			continue
		}
		in.Pods = append(in.Pods, p)
		if p.Spec.NodeName == "" {
			r.Current.PendingGPUPods++
			continue
		}
		bound = append(bound, p)
		podsToday[p.Spec.NodeName]++
	}
	r.Current.GPUPods = len(in.Pods)
	for i := range r.Nodes {
		r.Nodes[i].GPUPodsToday = podsToday[r.Nodes[i].Name]
	}

	// Today: the bound pods on their nodes, their devices as the device
	// plugin would give them there (no scheduling cycle: a pod runs where it
	// runs, cordoned or tainted node or not).
	today := in
	today.Fixed, today.Pods = append(slices.Clone(in.Fixed), bound...), nil
	cur, err := sim.Replay(ctx, o.Baseline, today)
	if err != nil {
		return nil, fmt.Errorf("replaying today's placements: %w", err)
	}
	r.Current.GPUsUsed = cur.GPUsUsed
	for _, pl := range cur.FixedRejected {
		r.Current.NotHeld = append(r.Current.NotHeld, PodNote{Pod: pl.Namespace + "/" + pl.Name, Reason: pl.Reason})
	}
	var usedToday []string
	for name, n := range podsToday {
		if n > 0 && gpuNode[name] {
			usedToday = append(usedToday, name)
		}
	}
	r.Current.GPUNodesWithPods = len(usedToday)
	if o.Prices != nil {
		d, _ := o.Prices.monthly(nodeByName, usedToday)
		r.Current.DollarsPerMonth = &d
	}

	results, err := sim.ReplayProfiles(ctx, o.Profiles, in)
	if err != nil {
		return nil, err
	}
	for _, res := range results {
		pr := ProfileReport{
			Name: res.Profile, GPUNodesUsed: res.GPUNodesUsed, GPUsUsed: res.GPUsUsed,
			GPUNodesFreed: r.Current.GPUNodesWithPods - res.GPUNodesUsed, GPUsFreed: r.Current.GPUsUsed - res.GPUsUsed,
			UsedGPUEquivalents: res.UsedGPUEquivalents, PodsPlaced: res.Placed, PodsUnplaced: res.Unplaced, Result: res,
		}
		var used []string
		for _, n := range res.Nodes {
			if n.InUse() {
				used = append(used, n.Name)
			}
		}
		if o.Prices != nil {
			d, unpriced := o.Prices.monthly(nodeByName, used)
			pr.DollarsPerMonth, pr.UnpricedNodes = &d, unpriced
		}
		for _, pl := range res.Placements {
			if pl.Node == "" {
				pr.Unplaced = append(pr.Unplaced, PodNote{Pod: pl.Namespace + "/" + pl.Name, Reason: pl.Reason})
			}
		}
		r.Profiles = append(r.Profiles, pr)
	}
	return r, nil
}

// ProfileNames lists the report's profiles.
func (r *Report) ProfileNames() []string {
	out := make([]string, len(r.Profiles))
	for i, p := range r.Profiles {
		out[i] = p.Name
	}
	return out
}

// Profile returns the named profile's report.
func (r *Report) Profile(name string) (*ProfileReport, bool) {
	for i := range r.Profiles {
		if r.Profiles[i].Name == name {
			return &r.Profiles[i], true
		}
	}
	return nil, false
}

// confidenceCounts summarises the nodes' confidence: "2 exact, 3 guess".
func (r *Report) confidenceCounts() string {
	counts := map[Confidence]int{}
	for _, n := range r.Nodes {
		counts[n.Confidence]++
	}
	var parts []string
	for _, c := range []Confidence{Exact, Labels, Guess, Unknown} {
		if counts[c] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[c], c))
		}
	}
	return strings.Join(parts, ", ")
}
