package controller

// A run: start fences the GPUs a node plan rebuilds and writes its named
// config, advance sets the label once the config has propagated (after a
// last look for pods on those GPUs) and follows MIG manager's state,
// finish ends it, gc drops the named configs no node uses any more.

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	"github.com/gpuslice/gpuslice/pkg/allocator"
	gpusliceapi "github.com/gpuslice/gpuslice/pkg/apis/gpuslice/v1alpha1"
	"github.com/gpuslice/gpuslice/pkg/assignment"
	"github.com/gpuslice/gpuslice/pkg/repartition"
	"github.com/gpuslice/gpuslice/pkg/topology"
)

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
