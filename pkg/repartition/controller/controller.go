// Package controller applies the repartition planner's layouts through
// NVIDIA's stock MIG manager: it writes a named config that lists every GPU
// index of the node into the mig-parted ConfigMap MIG manager reads, waits
// for the update to propagate, sets nvidia.com/mig.config, follows
// nvidia.com/mig.config.state, and counts the node as reconfiguring until
// its allocatable shows the new layout. It garbage-collects the named
// configs it wrote that no node uses any more. It is off unless started;
// run it under leader election (RunWithLeaderElection), one per cluster.
//
// It reads only what the API shows: GPUNodes (topology and the exporter's
// PodResources read-back: the truth about allocated devices), Nodes
// (labels, allocatable), and pods (gpuslice's assignment annotation on
// bound pods the read-back has not reported yet; gpuslice.io/mig-demand on
// pending pods: the scheduler's word that they wait for want of a MIG
// profile). It writes the one ConfigMap, the MIG
// config label and the drain annotation (gpuslice.io/mig-drain, see
// drain.go) of the nodes it may touch, and events.
//
// Before it writes a node's named config it fences the GPUs the change
// rebuilds: it lists them in the node's gpuslice.io/mig-drain annotation,
// drains on or off, until the run ends (success, failure or timeout), so
// that gpuslice's scheduler places no new pod on an idle GPU chosen for a
// change during the propagation wait (a MIG instance in use would fail the
// run); a run whose GPU took a pod all the same (bound just before the
// fence) is cancelled before the label is set. See drain.go.
package controller

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	"github.com/gpuslice/gpuslice/pkg/allocator"
	gpusliceapi "github.com/gpuslice/gpuslice/pkg/apis/gpuslice/v1alpha1"
	"github.com/gpuslice/gpuslice/pkg/assignment"
	versioned "github.com/gpuslice/gpuslice/pkg/generated/clientset/versioned"
	"github.com/gpuslice/gpuslice/pkg/podrequest"
	"github.com/gpuslice/gpuslice/pkg/repartition"
	"github.com/gpuslice/gpuslice/pkg/topology"
)

// ConfigPrefix starts the names of the configs the controller writes.
const ConfigPrefix = "gpuslice-"

// Options configure a Controller.
type Options struct {
	// ConfigMapNamespace/ConfigMapName/ConfigKey: the mig-parted config
	// the GPU operator mounts into MIG manager (migManager.config.name).
	ConfigMapNamespace, ConfigMapName, ConfigKey string
	// Nodes selects the nodes the controller may reconfigure.
	Nodes labels.Selector
	// SchedulerNames are the schedulerName values of the pods whose demand
	// counts (gpuslice's profiles).
	SchedulerNames []string
	// Window is how often the planner runs (demand is batched over it).
	Window time.Duration
	// Propagation is how long to wait after writing the ConfigMap before
	// setting the label (kubelet's ConfigMap sync; up to about a minute).
	Propagation time.Duration
	// Timeout: a run that has not ended after this long counts as failed.
	Timeout time.Duration
	Planner repartition.Config
	Catalog *topology.Catalog
	// Recorder emits events on nodes and pods (nil: none).
	Recorder record.EventRecorder
	// Now is the clock (nil: time.Now).
	Now func() time.Time
	// Metrics records counters (nil: none).
	Metrics *Metrics
}

// Stats are the controller's counters.
type Stats struct {
	// Runs are MIG manager runs asked for; GPUs the GPUs they change.
	Runs, GPUs int
	// Succeeded and Failed count finished runs; Cancelled the runs ended
	// before MIG manager was asked, because a GPU they rebuild took a pod
	// (bound just before its fence).
	Succeeded, Failed, Cancelled int
	// PodsServed counts pending pods the asked-for layouts were verified to
	// serve.
	PodsServed int
	// DrainsStarted counts GPUs the controller began to drain;
	// DrainsLifted the drains it lifted without a change (given up, no
	// demand left, leadership ended); Draining is how many GPUs its drain
	// annotations list now as drains, Fenced how many they list because a
	// run in flight rebuilds them (see drain.go).
	DrainsStarted, DrainsLifted, Draining, Fenced int
}

// Controller is the repartition controller.
type Controller struct {
	kube    kubernetes.Interface
	gpu     versioned.Interface
	opts    Options
	planner *repartition.Planner
	learner *allocator.MixLearner

	mu       sync.Mutex
	inflight map[string]*run
	lastPlan time.Time
	stats    Stats
	seq      int
	drain    drainState
}

type run struct {
	plan      repartition.NodePlan
	config    string
	written   time.Time
	labelled  bool
	expect    map[string]int64
	startedAt time.Time
}

// New validates the options and returns a controller.
func New(kube kubernetes.Interface, gpu versioned.Interface, o Options) (*Controller, error) {
	if o.ConfigMapNamespace == "" || o.ConfigMapName == "" {
		return nil, fmt.Errorf("repartition controller: the mig-parted ConfigMap's namespace and name are required")
	}
	if o.ConfigKey == "" {
		o.ConfigKey = "config.yaml"
	}
	if o.Nodes == nil {
		return nil, fmt.Errorf("repartition controller: a node selector is required (which nodes it may reconfigure)")
	}
	if len(o.SchedulerNames) == 0 {
		return nil, fmt.Errorf("repartition controller: no scheduler names")
	}
	if o.Window <= 0 || o.Propagation < 0 || o.Timeout <= 0 {
		return nil, fmt.Errorf("repartition controller: window %v and timeout %v must be positive, propagation %v not negative", o.Window, o.Timeout, o.Propagation)
	}
	if o.Catalog == nil {
		o.Catalog = topology.NewCatalog()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	p, err := repartition.New(o.Planner, o.Catalog)
	if err != nil {
		return nil, err
	}
	return &Controller{kube: kube, gpu: gpu, opts: o, planner: p, learner: allocator.NewMixLearner(200, 32), inflight: map[string]*run{}, drain: newDrainState()}, nil
}

// Stats returns the counters.
func (c *Controller) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// InFlight lists the nodes being reconfigured.
func (c *Controller) InFlight() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for n := range c.inflight {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Run syncs every tick until ctx ends, then lifts the drains it holds
// (LiftDrains, with a short timeout of its own), so that a controller that
// stops leading or is scaled to zero leaves no GPU drained.
func (c *Controller) Run(ctx context.Context, tick time.Duration) {
	logger := klog.FromContext(ctx)
	if ctx.Err() != nil {
		return
	}
	defer func() {
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), liftTimeout)
		defer cancel()
		if err := c.LiftDrains(lctx, "gpuslice-repartitioner stopped"); err != nil {
			logger.Error(err, "Lifting drains on stop")
		}
	}()
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		if err := c.Sync(ctx); err != nil {
			logger.Error(err, "repartition sync")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// snapshot is what one sync reads from the API.
type snapshot struct {
	nodes    map[string]*corev1.Node
	gpuNodes map[string]*gpusliceapi.GPUNode
	pods     []corev1.Pod
}

func (c *Controller) read(ctx context.Context) (*snapshot, error) {
	s := &snapshot{nodes: map[string]*corev1.Node{}, gpuNodes: map[string]*gpusliceapi.GPUNode{}}
	nl, err := c.kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: c.opts.Nodes.String()})
	if err != nil {
		return nil, err
	}
	for i := range nl.Items {
		s.nodes[nl.Items[i].Name] = &nl.Items[i]
	}
	gl, err := c.gpu.GpusliceV1alpha1().GPUNodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for i := range gl.Items {
		s.gpuNodes[gl.Items[i].Name] = &gl.Items[i]
	}
	pl, err := c.kube.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	s.pods = pl.Items
	return s, nil
}

// Sync advances the runs in flight, once per window plans (and starts the
// plan's runs), and makes the drain annotations of the nodes follow the
// last plan (see drain.go).
func (c *Controller) Sync(ctx context.Context) error {
	logger := klog.FromContext(ctx)
	snap, err := c.read(ctx)
	if err != nil {
		return err
	}
	now := c.opts.Now()
	if err := c.advance(ctx, snap, now); err != nil {
		return err
	}
	c.mu.Lock()
	due := now.Sub(c.lastPlan) >= c.opts.Window
	if due {
		c.lastPlan = now
	}
	c.mu.Unlock()
	if due {
		in := c.input(logger, snap, now)
		plan := c.planner.Plan(in)
		for _, r := range plan.Rejected {
			logger.V(2).Info("repartition proposal rejected", "reason", r)
		}
		if len(plan.Nodes) > 0 {
			c.planner.Commit(plan, now)
		}
		c.recordDrains(plan, now)
		for i := range plan.Nodes {
			if err := c.start(ctx, snap, &plan.Nodes[i], now); err != nil {
				return err
			}
		}
	}
	return c.reconcileDrains(ctx, snap)
}

// input builds the planner's input from the snapshot.
func (c *Controller) input(logger klog.Logger, snap *snapshot, now time.Time) repartition.Input {
	in := repartition.Input{Now: now}
	sched := map[string]bool{}
	for _, n := range c.opts.SchedulerNames {
		sched[n] = true
	}
	// Devices of bound pods the read-back may not show yet, per node.
	assigned := map[string][]allocator.ResourceDevices{}
	for i := range snap.pods {
		p := &snap.pods[i]
		if !sched[p.Spec.SchedulerName] {
			continue
		}
		req, err := podrequest.Parse(p, podrequest.Options{Catalog: c.opts.Catalog})
		if err != nil || req.Empty() {
			continue
		}
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		c.learner.ObserveOnce(string(p.UID), req, allocator.Host{})
		if p.Spec.NodeName != "" {
			if a, err := assignment.FromPod(p); err == nil && a != nil {
				assigned[p.Spec.NodeName] = append(assigned[p.Spec.NodeName], a.Placement().Devices()...)
			}
			continue
		}
		d, ok := migDemand(logger, p, req)
		if !ok {
			continue
		}
		prio := int32(0)
		if p.Spec.Priority != nil {
			prio = *p.Spec.Priority
		}
		in.Pending = append(in.Pending, repartition.Demand{Pod: p.Namespace + "/" + p.Name, Request: req, Since: d.Since, Priority: prio})
	}
	in.Mix = c.learner.Snapshot(0.01)
	names := make([]string, 0, len(snap.nodes))
	for n := range snap.nodes {
		names = append(names, n)
	}
	sort.Strings(names)
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, name := range names {
		gn, ok := snap.gpuNodes[name]
		if !ok {
			continue
		}
		topo := gn.Spec.Topology()
		ns := repartition.NodeState{Topology: topo}
		for i := range gn.Spec.Allocations {
			ns.Allocated = append(ns.Allocated, readBack(&gn.Spec.Allocations[i])...)
		}
		// Devices the read-back already shows are not listed twice.
		ns.BusyGPUs = allocator.GPUsHolding(topo, assigned[name])
		_, flying := c.inflight[name]
		ns.Reconfiguring = flying || gn.Spec.State != gpusliceapi.StateReady || !settled(snap.nodes[name], topo)
		ns.Draining = c.draining(logger, snap.nodes[name])
		in.Nodes = append(in.Nodes, ns)
	}
	return in
}

// migDemand returns the pending pod's MIG demand: the scheduler's
// gpuslice.io/mig-demand annotation (see assignment.Demand), which says that
// its last failed scheduling cycle found a node that would take it but for
// too few free instances of the named profiles. A pending pod without it
// (refused for CPU, a taint, an affinity, a whole GPU, a stale node) is not
// demand, whatever its PodScheduled condition says; nor is one the
// scheduler nominated to a node (preemption is making room for it), nor one
// whose annotation names a profile the pod does not ask for (stale or
// foreign). The planner is given the pod's whole request, so that a layout
// it picks serves all of it, and the annotation's since as the demand's age.
func migDemand(logger klog.Logger, p *corev1.Pod, req *podrequest.Request) (*assignment.Demand, bool) {
	if p.Status.NominatedNodeName != "" {
		return nil, false
	}
	d, err := assignment.DemandFromPod(p)
	if err != nil {
		logger.V(2).Info("Ignoring a malformed MIG demand annotation", "pod", klog.KObj(p), "err", err)
		return nil, false
	}
	if d == nil {
		return nil, false
	}
	for profile := range d.Profiles {
		if req.Count(topology.MIGResourceName(profile)) == 0 {
			logger.V(2).Info("Ignoring a MIG demand annotation naming a profile the pod does not ask for", "pod", klog.KObj(p), "profile", profile)
			return nil, false
		}
	}
	return d, true
}

// settled reports whether MIG manager is idle on the node and its
// allocatable shows what the topology advertises.
func settled(n *corev1.Node, t *topology.Node) bool {
	if n == nil {
		return false
	}
	if st, ok := n.Labels[topology.MIGConfigStateLabel]; ok && st != "success" {
		return false
	}
	caps, err := t.Capacity()
	if err != nil {
		return false
	}
	return allocatableShows(n, caps)
}

func allocatableShows(n *corev1.Node, caps map[string]int64) bool {
	for r, want := range caps {
		q, ok := n.Status.Allocatable[corev1.ResourceName(r)]
		if !ok || q.Value() != want {
			return false
		}
	}
	for r, q := range n.Status.Allocatable {
		if strings.HasPrefix(string(r), topology.MIGResourcePrefix) && q.Value() != 0 {
			if _, ok := caps[string(r)]; !ok {
				return false
			}
		}
	}
	return true
}

// pendingPods is "1 pending pod" or "n pending pods".
func pendingPods(n int) string {
	if n == 1 {
		return "1 pending pod"
	}
	return fmt.Sprintf("%d pending pods", n)
}
