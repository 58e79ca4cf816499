package controller

// Drains. Only an empty GPU can change, and on a busy cluster a GPU whose
// layout no longer suits the demand never empties: each device a pod frees
// is taken by the next pod that fits it. With Config.MaxDrainingGPUs > 0 the
// planner drains such GPUs (Plan.Drains): the controller lists them in the
// node's annotation assignment.DrainAnnotation (gpuslice.io/mig-drain,
// "3,5"), gpuslice's scheduler then places no new pod the kubelet could put
// on them, their running pods are left alone, and once a drained GPU is
// empty the planner changes it like any idle GPU.
//
// The annotation of every node the controller may touch (Options.Nodes)
// lists exactly the last plan's drains of that node, plus the GPUs its run
// in flight rebuilds (the run's fence, see below). It is written only when
// it differs (get and update, retried on conflict), a value that does not
// parse is read as no drain and overwritten, and nothing is written before
// this controller's first planning round: a new leader first adopts the
// drains that the annotations show (the planner takes them from
// NodeState.Draining), so that a crashed leader's drains carry on. A node
// that leaves the selector loses the GPUs this controller listed there.
//
// Fences, drains on or off (Config.MaxDrainingGPUs 0: the annotation then
// lists only fences). Between the planner's choice of an idle GPU and MIG
// manager's run (the propagation wait, Options.Propagation, 90 s by
// default in gpuslice-repartitioner, then until the node shows
// reconfiguring) the scheduler could place a new pod on that GPU, and a
// MIG instance in use fails the run (and the node backs off). So start
// lists every GPU a change rebuilds in the node's annotation before it
// writes the named config, by the same get and update (added to what the
// annotation lists), and the reconcile keeps them listed until the run
// ends (success, failure or timeout); then the next reconcile lists only
// the plan's drains again. gpuslice's Filter turns away a pod the kubelet
// could put on a fenced GPU as on a drained one: for that time the node
// takes no pod asking for a resource of which a fenced GPU has a free
// device, even if its other GPUs have some (the kubelet's pick among free
// instances is arbitrary). Fenced GPUs are not drains: NodeState.Draining
// leaves them out (the planner must not adopt a GPU it changes as a
// drain), they start no Draining event and lift none, and they count in
// Stats.Fenced (gpuslice_repartition_gpus_fenced), not in Draining. A
// pod bound between the snapshot the planner judged and the fence (the
// scheduler's informers lag the API a little) is not kept off by it: so
// before it sets the label the controller looks again (the exporter's
// read-back and gpuslice's assignment annotations) and cancels the run if
// a GPU it rebuilds holds a device (RepartitionCancelled, no back-off: MIG
// manager was never asked, and the node's device plugin stays up).
//
// When the controller stops (Run returns: its context ended or it lost
// the leadership), it lifts every drain and fence it holds (LiftDrains,
// best effort within liftTimeout): a repartitioner scaled to zero leaves
// no GPU drained or fenced (a run still in flight is fenced again if this
// replica leads again and plans). A repartitioner killed without that chance leaves its
// annotations; its successor adopts them, and gives each up after
// MaxDrainTime like its own.

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/klog/v2"

	"github.com/gpuslice/gpuslice/pkg/assignment"
	"github.com/gpuslice/gpuslice/pkg/repartition"
	"github.com/gpuslice/gpuslice/pkg/topology"
)

// liftTimeout bounds LiftDrains when Run ends.
const liftTimeout = 10 * time.Second

// drainState is the controller's view of its drains (under Controller.mu).
type drainState struct {
	// planned: a round has planned since the controller started (or last
	// lifted its drains); before that the annotations are left as they are.
	planned bool
	// drains are the last plan's drains, by drainKey.
	drains map[string]repartition.Drain
	// lifted says, by drainKey, why the last plan dropped a drain without a
	// change of its GPU (for the event when the annotation loses it).
	lifted map[string]string
	// fenced: per node, the GPUs its run in flight rebuilds (sorted);
	// listed from before the run's config is written until the run ends
	// and the annotation no longer shows them. Kept across LiftDrains
	// while the run is in flight.
	fenced map[string][]int
	// listed: per node, the GPUs its annotation lists as this controller
	// last wrote or found it.
	listed map[string][]int
}

func newDrainState() drainState {
	return drainState{drains: map[string]repartition.Drain{}, lifted: map[string]string{}, fenced: map[string][]int{}, listed: map[string][]int{}}
}

func drainKey(node string, gpu int) string { return node + "/" + strconv.Itoa(gpu) }

// draining is NodeState.Draining: the GPUs the node's annotation lists,
// less those fenced for its run (the planner must not adopt a GPU it
// changes as a drain). A value that does not parse is no drain (the next
// reconcile overwrites it). c.mu is held.
func (c *Controller) draining(logger klog.Logger, n *corev1.Node) []int {
	if n == nil {
		return nil
	}
	gpus, err := assignment.ParseDrain(n.Annotations[assignment.DrainAnnotation])
	if err != nil {
		logger.V(2).Info("Ignoring a malformed drain annotation (it will be overwritten)", "node", klog.KObj(n), "err", err)
		return nil
	}
	return without(gpus, c.drain.fenced[n.Name])
}

// fenceGPUs are the GPUs the node plan rebuilds (sorted, distinct).
func fenceGPUs(np *repartition.NodePlan) []int {
	gpus := make([]int, 0, len(np.Changes))
	for _, ch := range np.Changes {
		gpus = append(gpus, ch.GPU)
	}
	return normalize(gpus)
}

// fence adds the GPUs a run is about to rebuild to the node's annotation
// (get and update, only when they are not all listed yet) and records them
// as the run's fence: start calls it before it writes the run's config.
func (c *Controller) fence(ctx context.Context, node string, gpus []int) error {
	c.mu.Lock()
	c.drain.fenced[node] = gpus
	c.mu.Unlock()
	prev, _, err := c.setDrain(ctx, node, func(cur []int) []int { return append(cur, gpus...) })
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.drain.listed[node] = normalize(append(slices.Clone(c.drain.listed[node]), gpus...))
	c.mu.Unlock()
	klog.FromContext(ctx).V(2).Info("Fenced GPUs for a MIG layout change", "node", node, "gpus", gpus, "listedBefore", prev)
	return nil
}

// recordDrains takes the plan's drains as the ones to apply, and notes
// why each drain it drops without a change was dropped.
func (c *Controller) recordDrains(plan *repartition.Plan, now time.Time) {
	changed := map[string]bool{}
	for _, np := range plan.Nodes {
		for _, ch := range np.Changes {
			changed[drainKey(np.Node, ch.GPU)] = true
		}
	}
	next := make(map[string]repartition.Drain, len(plan.Drains))
	for _, d := range plan.Drains {
		next[drainKey(d.Node, d.GPU)] = d
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	lifted := map[string]string{}
	for k, d := range c.drain.drains {
		if _, kept := next[k]; kept || changed[k] {
			continue
		}
		if max := c.opts.Planner.MaxDrainTime; max > 0 && now.Sub(d.Since) >= max {
			lifted[k] = fmt.Sprintf("given up after %v: its pods did not end", max)
		} else {
			lifted[k] = "no pending pod waits for its new layout any more"
		}
	}
	c.drain.drains, c.drain.lifted, c.drain.planned = next, lifted, true
}

// reconcileDrains makes each node's drain annotation list the last plan's
// drains of the node and the GPUs fenced for its run in flight, writing only what
// differs; it emits an event for each drain started or lifted.
func (c *Controller) reconcileDrains(ctx context.Context, snap *snapshot) error {
	c.mu.Lock()
	if !c.drain.planned {
		c.mu.Unlock()
		return nil
	}
	want := map[string][]int{}
	for _, d := range c.drain.drains {
		want[d.Node] = append(want[d.Node], d.GPU)
	}
	for node, gpus := range c.drain.fenced {
		if _, flying := c.inflight[node]; flying {
			want[node] = append(want[node], gpus...)
		}
	}
	gone := map[string][]int{} // nodes no longer selected: their GPUs we listed
	for node, gpus := range c.drain.listed {
		if snap.nodes[node] == nil {
			gone[node] = gpus
		}
	}
	c.mu.Unlock()

	var errs []error
	for _, node := range slices.Sorted(maps.Keys(gone)) {
		ours := gone[node]
		if _, _, err := c.setDrain(ctx, node, func(cur []int) []int { return without(cur, ours) }); err != nil {
			errs = append(errs, err)
			continue
		}
		c.mu.Lock()
		delete(c.drain.listed, node)
		c.mu.Unlock()
	}
	for _, node := range slices.Sorted(maps.Keys(snap.nodes)) {
		n := snap.nodes[node]
		w := normalize(want[node])
		if listsExactly(n, w) {
			c.settleDrain(node, w)
			continue
		}
		prev, wrote, err := c.setDrain(ctx, node, func([]int) []int { return w })
		if err != nil {
			errs = append(errs, err)
			continue
		}
		c.settleDrain(node, w)
		if wrote {
			c.drainEvents(klog.FromContext(ctx), snap, n, prev, w)
		}
	}
	c.updateDrainGauge()
	return errors.Join(errs...)
}

// settleDrain records that the node's annotation lists w, and forgets the
// fence of a run that has ended.
func (c *Controller) settleDrain(node string, w []int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(w) > 0 {
		c.drain.listed[node] = w
	} else {
		delete(c.drain.listed, node)
	}
	if _, flying := c.inflight[node]; !flying {
		delete(c.drain.fenced, node)
	}
}

// drainEvents reports the drains the write started and those it lifted
// without a change.
func (c *Controller) drainEvents(logger klog.Logger, snap *snapshot, n *corev1.Node, prev, now []int) {
	var started []repartition.Drain
	var lifted []string
	c.mu.Lock()
	for _, g := range now {
		if slices.Contains(prev, g) {
			continue
		}
		if d, ok := c.drain.drains[drainKey(n.Name, g)]; ok {
			started = append(started, d)
			c.stats.DrainsStarted++
		}
	}
	for _, g := range prev {
		if slices.Contains(now, g) {
			continue
		}
		k := drainKey(n.Name, g)
		if why, ok := c.drain.lifted[k]; ok {
			lifted = append(lifted, liftedMessage(n.Name, g, why))
			delete(c.drain.lifted, k)
			c.stats.DrainsLifted++
		}
	}
	c.mu.Unlock()
	if m := c.opts.Metrics; m != nil {
		m.drainsStarted.Add(float64(len(started)))
		m.drainsLifted.Add(float64(len(lifted)))
	}
	for i := range started {
		d := &started[i]
		logger.Info("Draining a GPU for a MIG layout change", "node", n.Name, "drain", d.String(), "pods", len(d.Serves))
	}
	for _, msg := range lifted {
		logger.Info("Lifted a drain", "node", n.Name, "message", msg)
	}
	rec := c.opts.Recorder
	if rec == nil {
		return
	}
	for i := range started {
		d := &started[i]
		rec.Eventf(n, corev1.EventTypeNormal, "Draining", "draining GPU %d of node %s for a MIG layout change: %s → %s for %s (its running pods are left alone; no new pod is placed on it)",
			d.GPU, d.Node, topology.FormatCounts(d.From), topology.FormatCounts(d.To), pendingPods(len(d.Serves)))
		for _, key := range d.Serves {
			for j := range snap.pods {
				p := &snap.pods[j]
				if p.Namespace+"/"+p.Name == key {
					rec.Eventf(p, corev1.EventTypeNormal, "WaitingForRepartition", "GPU %d of node %s is being drained for this pod: its MIG layout changes once its running pods end", d.GPU, d.Node)
				}
			}
		}
	}
	for _, msg := range lifted {
		rec.Event(n, corev1.EventTypeNormal, "DrainLifted", msg)
	}
}

// updateDrainGauge counts the GPUs the annotations list as drains
// (Stats.Draining) and as fences of runs in flight (Stats.Fenced).
func (c *Controller) updateDrainGauge() {
	c.mu.Lock()
	draining, fenced := 0, 0
	for node, gpus := range c.drain.listed {
		_, flying := c.inflight[node]
		for _, g := range gpus {
			if flying && slices.Contains(c.drain.fenced[node], g) {
				fenced++
			} else {
				draining++
			}
		}
	}
	c.stats.Draining, c.stats.Fenced = draining, fenced
	c.mu.Unlock()
	if m := c.opts.Metrics; m != nil {
		m.draining.Set(float64(draining))
		m.fenced.Set(float64(fenced))
	}
}

// LiftDrains removes from the nodes' drain annotations every GPU this
// controller lists there, drains and fences alike, and forgets its drains
// until it plans again (the fences of runs still in flight are kept, to be
// listed again once it plans). Run calls it when it ends; why goes into
// the events.
func (c *Controller) LiftDrains(ctx context.Context, why string) error {
	c.mu.Lock()
	listed := c.drain.listed
	fenced := c.drain.fenced
	fences := map[string][]int{}
	for node, gpus := range fenced {
		listed[node] = normalize(append(slices.Clone(listed[node]), gpus...))
		if _, flying := c.inflight[node]; flying {
			fences[node] = gpus
		}
	}
	c.drain = newDrainState()
	c.drain.fenced = fences
	c.mu.Unlock()
	var errs []error
	for _, node := range slices.Sorted(maps.Keys(listed)) {
		ours := listed[node]
		prev, wrote, err := c.setDrain(ctx, node, func(cur []int) []int { return without(cur, ours) })
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !wrote {
			continue
		}
		// A fence lifted is no drain lifted: no event, not counted.
		var lifted, unfenced []int
		for _, g := range prev {
			switch {
			case slices.Contains(fenced[node], g):
				unfenced = append(unfenced, g)
			case slices.Contains(ours, g):
				lifted = append(lifted, g)
			}
		}
		c.mu.Lock()
		c.stats.DrainsLifted += len(lifted)
		c.mu.Unlock()
		if m := c.opts.Metrics; m != nil {
			m.drainsLifted.Add(float64(len(lifted)))
		}
		klog.FromContext(ctx).Info("Lifted drains", "node", node, "gpus", lifted, "fences", unfenced, "reason", why)
		if c.opts.Recorder != nil {
			ref := &corev1.ObjectReference{Kind: "Node", Name: node, APIVersion: "v1"}
			for _, g := range lifted {
				c.opts.Recorder.Event(ref, corev1.EventTypeNormal, "DrainLifted", liftedMessage(node, g, why))
			}
		}
	}
	c.updateDrainGauge()
	return errors.Join(errs...)
}

// setDrain sets the node's drain annotation to change(what it lists now),
// removing it when empty; get and update, retried on conflict (the
// controller may update nodes, not patch them). It returns what the
// annotation listed before and whether it wrote; a node that is gone is no
// error.
func (c *Controller) setDrain(ctx context.Context, node string, change func(cur []int) []int) (prev []int, wrote bool, err error) {
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := c.kube.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		cur, perr := assignment.ParseDrain(n.Annotations[assignment.DrainAnnotation])
		if perr != nil {
			cur = nil
		}
		prev = slices.Clone(cur)
		w := normalize(change(cur))
		if listsExactly(n, w) {
			return nil
		}
		if len(w) == 0 {
			delete(n.Annotations, assignment.DrainAnnotation)
		} else {
			if n.Annotations == nil {
				n.Annotations = map[string]string{}
			}
			n.Annotations[assignment.DrainAnnotation] = assignment.FormatDrain(w)
		}
		if _, err := c.kube.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
			return err
		}
		wrote = true
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("drain annotation of node %s: %w", node, err)
	}
	return prev, wrote, nil
}

// normalize sorts and deduplicates GPU indexes (nil when none).
func normalize(gpus []int) []int {
	if len(gpus) == 0 {
		return nil
	}
	out := slices.Clone(gpus)
	slices.Sort(out)
	return slices.Compact(out)
}

// listsExactly reports whether the node's drain annotation is what
// writing w leaves: absent for none, else w's formatted value.
func listsExactly(n *corev1.Node, w []int) bool {
	raw, has := n.Annotations[assignment.DrainAnnotation]
	if len(w) == 0 {
		return !has
	}
	return raw == assignment.FormatDrain(w)
}

// without is gpus less those in drop.
func without(gpus, drop []int) []int {
	return slices.DeleteFunc(gpus, func(g int) bool { return slices.Contains(drop, g) })
}

// liftedMessage is the DrainLifted event of a drain that ends without a
// change of its GPU.
func liftedMessage(node string, gpu int, why string) string {
	return fmt.Sprintf("lifted the drain of GPU %d of node %s (MIG layout unchanged): %s", gpu, node, why)
}
