// Package autoscaler is an in-process model of Karpenter (v1.14) for
// simulations: a provisioner that launches nodes for pods the scheduler
// could not place, and WhenEmpty consolidation that removes nodes left
// without pods. It is written apart from the scheduler's model (pkg/sim,
// GPUSlice): like Karpenter, it sees only counts of resources (CPU, memory,
// pods and extended resources such as nvidia.com/mig-1g.5gb or time-sliced
// nvidia.com/gpu replicas), never which GPU a device is on.
//
// It is pure: no API, no goroutines, no wall clock. The caller owns the
// simulated clock, tells the model what the scheduler did (a pod found
// unschedulable, bound, deleted) and advances it to the next time it asks
// for (Next); the model answers with node events (launched, ready for pods,
// cordoned for deletion, deleted) that the caller applies to its scheduler.
//
// Modelled, after sigs.k8s.io/karpenter v1.14.1:
//   - Batching (pkg/controllers/provisioning/batcher.go): a pending pod
//     opens a batch window that closes BatchIdle after the last trigger or
//     BatchMax after the first; each pending pod triggers again every 10 s
//     (the pod controller's requeue) while it stays pending.
//   - The scheduling simulation (scheduling/scheduler.go): every pending pod,
//     CPU then memory descending, creation time, then name; each goes to the
//     first existing node it fits (initialized nodes first, then by name;
//     free = allocatable - requests of the pods bound there), which is then
//     nominated (no disruption for max(2 x BatchMax, 10 s)); else to the
//     in-flight new NodeClaim with the fewest pods that can take it; else to
//     a new NodeClaim of the first NodePool (weight descending, then name
//     descending) with an instance type it fits. A NodeClaim keeps the
//     instance types that fit all its pods; it is launched as the cheapest
//     of them (the KWOK provider's choice; first in the pool's order among
//     equal prices).
//   - Fitting is count-based over every resource name and the pod's node
//     selector against the NodePool's and the type's labels.
//   - A launched node is billed from launch and takes pods LaunchDelay later
//     (registration, initialization, the device plugin and exporter up).
//   - WhenEmpty (disruption/emptiness.go, validation.go): every PollPeriod
//     (10 s after the previous round ends) the nodes that are initialized,
//     have no pods, are not nominated and whose last pod event (or
//     initialization) is ConsolidateAfter old are candidates; after
//     ValidationWait (15 s) those still so are cordoned and deleted
//     TerminationDelay later. Budget 100 %.
//
// Not modelled: WhenEmptyOrUnderutilized (evicting pods to repack), drift
// and expiry, NodePool limits, disruption budgets other than 100 %,
// daemonset overhead, topology spread and pod (anti-)affinity in Karpenter's
// simulation, minValues, spot and capacity types, reserved capacity, DRA,
// launch failures, and the cluster-state sync delays of a live controller.
package autoscaler

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"
)

// Resources are integer quantities by resource name: cpu in millicores,
// memory in bytes, pods, extended resources in units.
type Resources map[string]int64

// Add adds o to r (r must not be nil).
func (r Resources) Add(o Resources) {
	for k, v := range o {
		r[k] += v
	}
}

// Sub subtracts o from r (r must not be nil).
func (r Resources) Sub(o Resources) {
	for k, v := range o {
		r[k] -= v
	}
}

// Clone copies r.
func (r Resources) Clone() Resources {
	out := make(Resources, len(r))
	for k, v := range r {
		out[k] = v
	}
	return out
}

// fitsIn reports whether used+r fits in capacity, every resource name
// compared (a name the capacity lacks has capacity 0).
func (r Resources) fitsIn(used, capacity Resources) bool {
	for k, v := range r {
		if v <= 0 {
			continue
		}
		if used[k]+v > capacity[k] {
			return false
		}
	}
	return true
}

// InstanceType is one type a NodePool can launch.
type InstanceType struct {
	Name string
	// Price is the on-demand price in USD per hour.
	Price float64
	// Allocatable is what a node of the type offers pods.
	Allocatable Resources
	// Labels are the type's well-known labels (instance type, GPU product).
	Labels map[string]string
}

// NodePool launches nodes of its types with its labels.
type NodePool struct {
	Name   string
	Weight int
	Labels map[string]string
	Types  []InstanceType
}

// Pod is what the provisioner knows of a pending pod.
type Pod struct {
	ID       string
	Requests Resources
	// NodeSelector requires, per label key, one of the values.
	NodeSelector map[string][]string
	// Created orders pods of equal CPU and memory.
	Created time.Duration
}

// Config configures the model. Zero durations take Karpenter's defaults
// where it has one.
type Config struct {
	NodePools []NodePool
	// BatchIdle and BatchMax are BATCH_IDLE_DURATION (1 s) and
	// BATCH_MAX_DURATION (10 s).
	BatchIdle, BatchMax time.Duration
	// LaunchDelay is from launch (billing starts) to the node taking pods.
	LaunchDelay time.Duration
	// ConsolidateAfter is the NodePools' consolidateAfter (0 is valid).
	ConsolidateAfter time.Duration
	// PollPeriod (10 s) and ValidationWait (15 s) are the disruption
	// controller's; TerminationDelay is from cordon to the node's deletion
	// (billing ends).
	PollPeriod, ValidationWait, TerminationDelay time.Duration
	// Requeue is how often a pending pod triggers provisioning again (10 s).
	Requeue time.Duration
}

func (c *Config) defaults() error {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.BatchIdle, time.Second)
	def(&c.BatchMax, 10*time.Second)
	def(&c.PollPeriod, 10*time.Second)
	def(&c.ValidationWait, 15*time.Second)
	def(&c.Requeue, 10*time.Second)
	for _, d := range []time.Duration{c.BatchIdle, c.BatchMax, c.LaunchDelay, c.ConsolidateAfter, c.PollPeriod, c.ValidationWait, c.TerminationDelay, c.Requeue} {
		if d < 0 {
			return fmt.Errorf("autoscaler: negative duration %s", d)
		}
	}
	if c.BatchIdle > c.BatchMax {
		return fmt.Errorf("autoscaler: batch idle %s longer than batch max %s", c.BatchIdle, c.BatchMax)
	}
	if len(c.NodePools) == 0 {
		return errors.New("autoscaler: no NodePool")
	}
	seen := map[string]bool{}
	for _, np := range c.NodePools {
		if np.Name == "" || seen[np.Name] {
			return fmt.Errorf("autoscaler: NodePool name %q empty or repeated", np.Name)
		}
		seen[np.Name] = true
		if len(np.Types) == 0 {
			return fmt.Errorf("autoscaler: NodePool %s has no instance type", np.Name)
		}
		for _, t := range np.Types {
			if t.Name == "" || !(t.Price >= 0) || math.IsInf(t.Price, 0) || len(t.Allocatable) == 0 {
				return fmt.Errorf("autoscaler: NodePool %s: instance type %q needs a name, a price and allocatable resources", np.Name, t.Name)
			}
		}
	}
	return nil
}

// EventKind says what happened to a node.
type EventKind string

const (
	// Launched: a NodeClaim was launched; the node is billed from now.
	Launched EventKind = "launched"
	// Ready: the node takes pods from now on.
	Ready EventKind = "ready"
	// Cordoned: consolidation chose the node; it takes no more pods.
	Cordoned EventKind = "cordoned"
	// Deleted: the node is gone; billing ends.
	Deleted EventKind = "deleted"
)

// Event is a change to a node, at a time.
type Event struct {
	At   time.Duration
	Kind EventKind
	Node string
	// Type and Pool are the node's instance type and NodePool.
	Type *InstanceType
	Pool string
}

// Node is the model's record of a node.
type Node struct {
	Name     string
	Pool     string
	Type     *InstanceType
	Launched time.Duration
	// ReadyAt is when it takes pods; Ready once that time has passed.
	ReadyAt time.Duration
	Ready   bool
	// Pods counts the pods bound there; Used sums their requests.
	Pods int
	Used Resources
	// LastPodEvent is the last bind or removal of a pod there.
	LastPodEvent   time.Duration
	hadPodEvent    bool
	nominatedUntil time.Duration
	Cordoned       bool
	deleteAt       time.Duration
}

// Stats count what the model did.
type Stats struct {
	Rounds, Launched, Deleted int
	// Nominations counts pods placed on an existing node by the simulation
	// (no launch for them).
	Nominations int
	// NoType counts pods (per round) that no NodePool's type can hold.
	NoType int
}

// Autoscaler is the model's state.
type Autoscaler struct {
	cfg   Config
	pools []*NodePool
	nodes map[string]*Node
	// pending are the provisionable pods by ID.
	pending map[string]*Pod
	// podNode is each bound pod's node and requests.
	podNode map[string]boundPod

	batchOpen             bool
	batchFirst, batchLast time.Duration
	requeueAt             time.Duration
	requeue               bool

	pollAt     time.Duration
	validating bool
	validateAt time.Duration
	candidates []string

	seq    int
	events []Event
	stats  Stats
	now    time.Duration
}

type boundPod struct {
	node string
	req  Resources
}

// New returns a model with no node; the first poll is at 0.
func New(cfg Config) (*Autoscaler, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	a := &Autoscaler{cfg: cfg, nodes: map[string]*Node{}, pending: map[string]*Pod{}, podNode: map[string]boundPod{}}
	for i := range cfg.NodePools {
		a.pools = append(a.pools, &cfg.NodePools[i])
	}
	// OrderByWeight: larger weight first, equal weights by name descending.
	sort.SliceStable(a.pools, func(i, j int) bool {
		if a.pools[i].Weight != a.pools[j].Weight {
			return a.pools[i].Weight > a.pools[j].Weight
		}
		return a.pools[i].Name > a.pools[j].Name
	})
	return a, nil
}

// Stats returns the counts so far.
func (a *Autoscaler) Stats() Stats { return a.stats }

// Nodes lists the nodes not yet deleted, by name.
func (a *Autoscaler) Nodes() []*Node {
	out := make([]*Node, 0, len(a.nodes))
	for _, n := range a.nodes {
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Pending reports how many pods the model holds as provisionable.
func (a *Autoscaler) Pending() int { return len(a.pending) }

func (a *Autoscaler) at(now time.Duration) error {
	if now < a.now {
		return fmt.Errorf("autoscaler: time went back from %s to %s", a.now, now)
	}
	if err := a.Advance(now); err != nil {
		return err
	}
	return nil
}

// PodUnschedulable tells the model the scheduler found no node for the pod:
// it becomes provisionable and triggers a batch. Calling it again for a pod
// already pending only triggers.
func (a *Autoscaler) PodUnschedulable(now time.Duration, p Pod) error {
	if p.ID == "" {
		return errors.New("autoscaler: pod without ID")
	}
	if _, bound := a.podNode[p.ID]; bound {
		return fmt.Errorf("autoscaler: pod %s is bound", p.ID)
	}
	if err := a.at(now); err != nil {
		return err
	}
	if _, ok := a.pending[p.ID]; !ok {
		cp := p
		cp.Requests = p.Requests.Clone()
		a.pending[p.ID] = &cp
	}
	a.trigger(now)
	return nil
}

// PodBound tells the model a pod was bound to a node (it leaves pending, if
// it was).
func (a *Autoscaler) PodBound(now time.Duration, id, node string, req Resources) error {
	if err := a.at(now); err != nil {
		return err
	}
	n, ok := a.nodes[node]
	if !ok || !n.Ready || n.Cordoned {
		return fmt.Errorf("autoscaler: pod %s bound to node %s, which does not take pods", id, node)
	}
	if _, dup := a.podNode[id]; dup {
		return fmt.Errorf("autoscaler: pod %s bound twice", id)
	}
	delete(a.pending, id)
	r := req.Clone()
	a.podNode[id] = boundPod{node: node, req: r}
	n.Used.Add(r)
	n.Pods++
	n.LastPodEvent, n.hadPodEvent = now, true
	return nil
}

// PodDeleted tells the model a pod is gone: bound (its node frees its
// requests) or pending (it stops being provisionable).
func (a *Autoscaler) PodDeleted(now time.Duration, id string) error {
	if err := a.at(now); err != nil {
		return err
	}
	if _, ok := a.pending[id]; ok {
		delete(a.pending, id)
		return nil
	}
	b, ok := a.podNode[id]
	if !ok {
		return fmt.Errorf("autoscaler: pod %s is neither pending nor bound", id)
	}
	delete(a.podNode, id)
	n := a.nodes[b.node]
	n.Used.Sub(b.req)
	n.Pods--
	n.LastPodEvent, n.hadPodEvent = now, true
	return nil
}

func (a *Autoscaler) trigger(now time.Duration) {
	if !a.batchOpen {
		a.batchOpen, a.batchFirst = true, now
	}
	a.batchLast = now
}

func (a *Autoscaler) batchEnd() time.Duration {
	return min(a.batchLast+a.cfg.BatchIdle, a.batchFirst+a.cfg.BatchMax)
}

// Next is the next time the model has something to do.
func (a *Autoscaler) Next() time.Duration {
	t := a.pollAt
	if a.validating {
		t = a.validateAt
	}
	if a.batchOpen {
		t = min(t, a.batchEnd())
	}
	if a.requeue {
		t = min(t, a.requeueAt)
	}
	for _, n := range a.nodes {
		if !n.Ready {
			t = min(t, n.ReadyAt)
		}
		if n.Cordoned {
			t = min(t, n.deleteAt)
		}
	}
	return max(t, a.now)
}

// Advance runs everything due up to and including now, in time order.
func (a *Autoscaler) Advance(now time.Duration) error {
	if now < a.now {
		return fmt.Errorf("autoscaler: time went back from %s to %s", a.now, now)
	}
	for {
		t := a.Next()
		if t > now {
			break
		}
		a.now = t
		a.step(t)
	}
	a.now = now
	return nil
}

// Events returns the node events since the last call, in time order.
func (a *Autoscaler) Events() []Event {
	out := a.events
	a.events = nil
	return out
}

func (a *Autoscaler) emit(t time.Duration, kind EventKind, n *Node) {
	a.events = append(a.events, Event{At: t, Kind: kind, Node: n.Name, Type: n.Type, Pool: n.Pool})
}

// step does what is due at t (one kind of thing per call; Advance loops).
func (a *Autoscaler) step(t time.Duration) {
	// Node lifecycle first: a node ready or gone at t is seen by the rest.
	for _, n := range a.Nodes() {
		if !n.Ready && n.ReadyAt <= t {
			n.Ready = true
			a.emit(n.ReadyAt, Ready, n)
		}
		if n.Cordoned && n.deleteAt <= t {
			delete(a.nodes, n.Name)
			a.stats.Deleted++
			a.emit(n.deleteAt, Deleted, n)
		}
	}
	if a.requeue && a.requeueAt <= t {
		a.requeue = false
		if len(a.pending) > 0 {
			a.trigger(t)
		}
	}
	if a.batchOpen && a.batchEnd() <= t {
		a.batchOpen = false
		a.provision(t)
		if len(a.pending) > 0 {
			a.requeue, a.requeueAt = true, t+a.cfg.Requeue
		}
	}
	if a.validating && a.validateAt <= t {
		a.validating = false
		for _, name := range a.candidates {
			n, ok := a.nodes[name]
			if ok && a.emptyCandidate(n, t) {
				n.Cordoned, n.deleteAt = true, t+a.cfg.TerminationDelay
				a.emit(t, Cordoned, n)
			}
		}
		a.candidates = nil
		a.pollAt = t + a.cfg.PollPeriod
	} else if !a.validating && a.pollAt <= t {
		a.poll(t)
	}
}

// emptyCandidate is Emptiness.ShouldDisrupt with the Consolidatable
// condition: initialized, empty, consolidateAfter elapsed, not nominated.
func (a *Autoscaler) emptyCandidate(n *Node, t time.Duration) bool {
	if !n.Ready || n.Cordoned || n.Pods > 0 || n.nominatedUntil > t {
		return false
	}
	since := n.ReadyAt
	if n.hadPodEvent {
		since = n.LastPodEvent
	}
	return t-since >= a.cfg.ConsolidateAfter
}

func (a *Autoscaler) poll(t time.Duration) {
	a.candidates = a.candidates[:0]
	for _, n := range a.Nodes() {
		if a.emptyCandidate(n, t) {
			a.candidates = append(a.candidates, n.Name)
		}
	}
	if len(a.candidates) == 0 {
		a.pollAt = t + a.cfg.PollPeriod
		return
	}
	a.validating, a.validateAt = true, t+a.cfg.ValidationWait
}

// claim is a NodeClaim being built by one provisioning round.
type claim struct {
	pool  *NodePool
	types []*InstanceType
	used  Resources
	pods  int
}

func selects(sel map[string][]string, labels ...map[string]string) bool {
	for key, values := range sel {
		v, found := "", false
		for _, l := range labels {
			if x, ok := l[key]; ok {
				v, found = x, true
			}
		}
		if !found {
			return false
		}
		ok := false
		for _, want := range values {
			if want == v {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

func (a *Autoscaler) sortedPending() []*Pod {
	pods := make([]*Pod, 0, len(a.pending))
	for _, p := range a.pending {
		pods = append(pods, p)
	}
	sort.Slice(pods, func(i, j int) bool {
		x, y := pods[i], pods[j]
		if x.Requests["cpu"] != y.Requests["cpu"] {
			return x.Requests["cpu"] > y.Requests["cpu"]
		}
		if x.Requests["memory"] != y.Requests["memory"] {
			return x.Requests["memory"] > y.Requests["memory"]
		}
		if x.Created != y.Created {
			return x.Created < y.Created
		}
		return x.ID < y.ID
	})
	return pods
}

// provision is one run of Karpenter's scheduling simulation over every
// pending pod, launching the NodeClaims it creates.
func (a *Autoscaler) provision(t time.Duration) {
	a.stats.Rounds++
	// Existing nodes: initialized first, then by name; cordoned ones are
	// marked for deletion and not counted.
	var existing []*Node
	for _, n := range a.Nodes() {
		if !n.Cordoned {
			existing = append(existing, n)
		}
	}
	sort.SliceStable(existing, func(i, j int) bool { return existing[i].Ready && !existing[j].Ready })
	simUsed := make([]Resources, len(existing))
	for i, n := range existing {
		simUsed[i] = n.Used.Clone()
	}
	var claims []*claim
	nominated := map[string]bool{}
pods:
	for _, p := range a.sortedPending() {
		for i, n := range existing {
			if selects(p.NodeSelector, a.poolLabels(n.Pool), n.Type.Labels) && p.Requests.fitsIn(simUsed[i], n.Type.Allocatable) {
				simUsed[i].Add(p.Requests)
				nominated[n.Name] = true
				a.stats.Nominations++
				continue pods
			}
		}
		sort.SliceStable(claims, func(i, j int) bool { return claims[i].pods < claims[j].pods })
		for _, c := range claims {
			if !selects(p.NodeSelector, c.pool.Labels) {
				continue
			}
			var keep []*InstanceType
			for _, it := range c.types {
				if selects(p.NodeSelector, c.pool.Labels, it.Labels) && p.Requests.fitsIn(c.used, it.Allocatable) {
					keep = append(keep, it)
				}
			}
			if len(keep) > 0 {
				c.types = keep
				c.used.Add(p.Requests)
				c.pods++
				continue pods
			}
		}
		for _, np := range a.pools {
			var fit []*InstanceType
			for i := range np.Types {
				it := &np.Types[i]
				if selects(p.NodeSelector, np.Labels, it.Labels) && p.Requests.fitsIn(nil, it.Allocatable) {
					fit = append(fit, it)
				}
			}
			if len(fit) > 0 {
				claims = append(claims, &claim{pool: np, types: fit, used: p.Requests.Clone(), pods: 1})
				continue pods
			}
		}
		a.stats.NoType++
	}
	window := max(2*a.cfg.BatchMax, 10*time.Second)
	for name := range nominated {
		a.nodes[name].nominatedUntil = t + window
	}
	for _, c := range claims {
		best := c.types[0]
		for _, it := range c.types[1:] {
			if it.Price < best.Price {
				best = it
			}
		}
		a.seq++
		n := &Node{
			Name: fmt.Sprintf("%s-%d", strings.ToLower(c.pool.Name), a.seq), Pool: c.pool.Name, Type: best,
			Launched: t, ReadyAt: t + a.cfg.LaunchDelay, Used: Resources{},
		}
		a.nodes[n.Name] = n
		a.stats.Launched++
		a.emit(t, Launched, n)
	}
}

func (a *Autoscaler) poolLabels(name string) map[string]string {
	for _, np := range a.pools {
		if np.Name == name {
			return np.Labels
		}
	}
	return nil
}
