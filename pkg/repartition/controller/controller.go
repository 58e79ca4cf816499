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
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/retry"
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

// start fences the GPUs the node plan rebuilds (see drain.go), then writes
// the node's named config and records the run; the label is set once the
// write has propagated.
func (c *Controller) start(ctx context.Context, snap *snapshot, np *repartition.NodePlan, now time.Time) error {
	c.mu.Lock()
	c.seq++
	name := fmt.Sprintf("%s%s-%d-%d", ConfigPrefix, np.Node, now.Unix(), c.seq)
	c.mu.Unlock()
	var disabled []int
	for _, g := range np.Proposed.GPUs {
		if !g.MIGEnabled {
			disabled = append(disabled, g.Index)
		}
	}
	entries := topology.PerGPUConfig(np.Layout, disabled)
	caps, err := np.Proposed.Capacity()
	if err != nil {
		return err
	}
	// The fence first: no pod may land on these GPUs from here on. Should
	// the config not be written, the next reconcile lifts it (no run).
	if err := c.fence(ctx, np.Node, fenceGPUs(np)); err != nil {
		return err
	}
	if err := c.updateConfigs(ctx, func(f *topology.MIGParted) { f.Configs[name] = entries }); err != nil {
		return err
	}
	c.mu.Lock()
	c.inflight[np.Node] = &run{plan: *np, config: name, written: now, expect: caps, startedAt: now}
	c.stats.Runs++
	c.stats.GPUs += len(np.Changes)
	c.stats.PodsServed += len(np.Serves)
	flying := len(c.inflight)
	c.mu.Unlock()
	c.updateDrainGauge()
	if m := c.opts.Metrics; m != nil {
		m.runs.Inc()
		m.gpus.Add(float64(len(np.Changes)))
		m.podsServed.Add(float64(len(np.Serves)))
		m.inFlight.Set(float64(flying))
	}
	if c.opts.Recorder != nil {
		if n := snap.nodes[np.Node]; n != nil {
			for _, ch := range np.Changes {
				c.opts.Recorder.Eventf(n, corev1.EventTypeNormal, "Repartitioning", "repartitioning %s of node %s: %s → %s for %s (MIG config %s)",
					fmt.Sprintf("GPU %d", ch.GPU), np.Node, topology.FormatCounts(ch.From), topology.FormatCounts(ch.To), pendingPods(len(np.Serves)), name)
			}
		}
		for _, key := range np.Serves {
			for i := range snap.pods {
				p := &snap.pods[i]
				if p.Namespace+"/"+p.Name == key {
					c.opts.Recorder.Eventf(p, corev1.EventTypeNormal, "WaitingForRepartition", "node %s is being repartitioned for this pod (MIG config %s)", np.Node, name)
				}
			}
		}
	}
	return nil
}

// advance moves runs on: sets the label once the config has propagated,
// ends runs on success (with allocatable showing the layout) or failure,
// and garbage-collects configs.
func (c *Controller) advance(ctx context.Context, snap *snapshot, now time.Time) error {
	c.mu.Lock()
	runs := make(map[string]*run, len(c.inflight))
	for k, v := range c.inflight {
		runs[k] = v
	}
	c.mu.Unlock()
	ended := false
	for node, r := range runs {
		n := snap.nodes[node]
		if n == nil {
			c.finish(node, false, "node gone or no longer selected", nil)
			ended = true
			continue
		}
		if !r.labelled {
			if now.Sub(r.written) < c.opts.Propagation {
				continue
			}
			// The fence keeps new pods off, but a pod bound in the instant
			// between the planner's read and the fence would fail the run
			// (and take the node's device plugin down for it): look again
			// before MIG manager is asked.
			if why := c.tookPods(snap, node, &r.plan); why != "" {
				c.cancel(node, why, n)
				ended = true
				continue
			}
			if err := c.setLabel(ctx, node, r.config); err != nil {
				return err
			}
			c.mu.Lock()
			r.labelled = true
			c.mu.Unlock()
			continue
		}
		state := n.Labels[topology.MIGConfigStateLabel]
		switch {
		case n.Labels[topology.MIGConfigLabel] != r.config:
			// Someone else changed the label: not ours to follow.
			c.finish(node, false, "nvidia.com/mig.config changed by someone else", n)
			ended = true
		case state == "failed":
			c.finish(node, false, "MIG manager reported failed", n)
			ended = true
		case state == "success" && allocatableShows(n, r.expect):
			c.finish(node, true, "", n)
			ended = true
		case now.Sub(r.startedAt) > c.opts.Timeout:
			c.finish(node, false, fmt.Sprintf("no success within %v", c.opts.Timeout), n)
			ended = true
		}
	}
	if ended {
		return c.gc(ctx, snap)
	}
	return nil
}

func (c *Controller) finish(node string, ok bool, why string, n *corev1.Node) {
	c.mu.Lock()
	r := c.inflight[node]
	delete(c.inflight, node)
	if ok {
		c.stats.Succeeded++
	} else {
		c.stats.Failed++
	}
	flying := len(c.inflight)
	c.mu.Unlock()
	if m := c.opts.Metrics; m != nil {
		result := "success"
		if !ok {
			result = "failed"
		}
		m.results.WithLabelValues(result).Inc()
		m.inFlight.Set(float64(flying))
	}
	now := c.opts.Now()
	if ok {
		c.planner.Succeeded(node)
	} else {
		backoff := c.planner.Failed(node, now)
		why = fmt.Sprintf("%s; node left alone for %v", why, backoff)
	}
	if c.opts.Recorder != nil && n != nil && r != nil {
		if ok {
			c.opts.Recorder.Eventf(n, corev1.EventTypeNormal, "Repartitioned", "MIG config %s applied; allocatable shows the new layout", r.config)
		} else {
			c.opts.Recorder.Eventf(n, corev1.EventTypeWarning, "RepartitionFailed", "MIG config %s: %s", r.config, why)
		}
	}
}

// tookPods says which GPUs the run rebuilds hold a device now, and of
// which pods ("" when none): the exporter's read-back, and the
// assignments of pods bound or being bound to the node (gpuslice's
// annotation, whatever their scheduler).
func (c *Controller) tookPods(snap *snapshot, node string, np *repartition.NodePlan) string {
	gn := snap.gpuNodes[node]
	if gn == nil {
		return ""
	}
	topo := gn.Spec.Topology()
	changed := fenceGPUs(np)
	var pods []string
	check := func(who string, devs []allocator.ResourceDevices) {
		for _, g := range allocator.GPUsHolding(topo, devs) {
			if slices.Contains(changed, g) {
				pods = append(pods, fmt.Sprintf("%s on GPU %d", who, g))
				return
			}
		}
	}
	for i := range gn.Spec.Allocations {
		pa := &gn.Spec.Allocations[i]
		check(pa.Namespace+"/"+pa.Name, readBack(pa))
	}
	for i := range snap.pods {
		p := &snap.pods[i]
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		a, err := assignment.FromPod(p)
		if err != nil || a == nil || (p.Spec.NodeName != node && a.Node != node) {
			continue
		}
		check(p.Namespace+"/"+p.Name, a.Placement().Devices())
	}
	if len(pods) == 0 {
		return ""
	}
	sort.Strings(pods)
	return strings.Join(slices.Compact(pods), ", ")
}

// readBack is the devices the exporter read back for one pod, all its
// containers together.
func readBack(pa *gpusliceapi.PodAllocation) []allocator.ResourceDevices {
	var out []allocator.ResourceDevices
	for _, ca := range pa.Containers {
		for _, d := range ca.Devices {
			out = append(out, allocator.ResourceDevices{Resource: d.Resource, DeviceIDs: slices.Clone(d.DeviceIDs)})
		}
	}
	return out
}

// cancel ends a run before its label is set: a GPU it rebuilds took a pod.
// Nothing was asked of MIG manager, so the node is not backed off (the
// planner does not change a busy GPU, and not this one again before
// MinGPUInterval); the next reconcile lifts the fence.
func (c *Controller) cancel(node, pods string, n *corev1.Node) {
	c.mu.Lock()
	r := c.inflight[node]
	delete(c.inflight, node)
	c.stats.Cancelled++
	flying := len(c.inflight)
	c.mu.Unlock()
	if m := c.opts.Metrics; m != nil {
		m.results.WithLabelValues("cancelled").Inc()
		m.inFlight.Set(float64(flying))
	}
	if c.opts.Recorder != nil && n != nil && r != nil {
		c.opts.Recorder.Eventf(n, corev1.EventTypeWarning, "RepartitionCancelled", "MIG config %s not applied: a GPU it rebuilds took a pod before MIG manager was asked (%s); nothing changed", r.config, pods)
	}
}

func (c *Controller) setLabel(ctx context.Context, node, config string) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := c.kube.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if n.Labels == nil {
			n.Labels = map[string]string{}
		}
		n.Labels[topology.MIGConfigLabel] = config
		_, err = c.kube.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{})
		return err
	})
}

// updateConfigs applies change to the mig-parted file in the ConfigMap,
// creating the ConfigMap when missing.
func (c *Controller) updateConfigs(ctx context.Context, change func(*topology.MIGParted)) error {
	cms := c.kube.CoreV1().ConfigMaps(c.opts.ConfigMapNamespace)
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cm, err := cms.Get(ctx, c.opts.ConfigMapName, metav1.GetOptions{})
		create := apierrors.IsNotFound(err)
		if err != nil && !create {
			return err
		}
		f := &topology.MIGParted{Version: "v1", Configs: map[string][]topology.MIGPartedEntry{}}
		if !create && cm.Data[c.opts.ConfigKey] != "" {
			if f, err = topology.ParseMIGParted([]byte(cm.Data[c.opts.ConfigKey])); err != nil {
				return fmt.Errorf("ConfigMap %s/%s: %w", c.opts.ConfigMapNamespace, c.opts.ConfigMapName, err)
			}
		}
		change(f)
		data, err := f.Marshal()
		if err != nil {
			return err
		}
		if create {
			cm = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: c.opts.ConfigMapNamespace, Name: c.opts.ConfigMapName}}
		}
		if cm.Data == nil {
			cm.Data = map[string]string{}
		}
		cm.Data[c.opts.ConfigKey] = string(data)
		if create {
			_, err = cms.Create(ctx, cm, metav1.CreateOptions{})
		} else {
			_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
		}
		return err
	})
}

// gc deletes the configs the controller wrote that no node's label names
// and no run in flight uses.
func (c *Controller) gc(ctx context.Context, snap *snapshot) error {
	keep := map[string]bool{}
	for _, n := range snap.nodes {
		keep[n.Labels[topology.MIGConfigLabel]] = true
	}
	nl, err := c.kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err == nil {
		for _, n := range nl.Items {
			keep[n.Labels[topology.MIGConfigLabel]] = true
		}
	}
	c.mu.Lock()
	for _, r := range c.inflight {
		keep[r.config] = true
	}
	c.mu.Unlock()
	return c.updateConfigs(ctx, func(f *topology.MIGParted) {
		for name := range f.Configs {
			if strings.HasPrefix(name, ConfigPrefix) && !keep[name] {
				delete(f.Configs, name)
			}
		}
	})
}

// pendingPods is "1 pending pod" or "n pending pods".
func pendingPods(n int) string {
	if n == 1 {
		return "1 pending pod"
	}
	return fmt.Sprintf("%d pending pods", n)
}
