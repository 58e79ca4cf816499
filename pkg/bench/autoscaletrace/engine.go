package autoscaletrace

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"time"

	v1 "k8s.io/api/core/v1"

	"github.com/gpuslice/gpuslice/pkg/bench/openb"
	"github.com/gpuslice/gpuslice/pkg/sim/autoscaler"
)

// PodSpec is one pod of a workload.
type PodSpec struct {
	ID string
	// Group is the pod's ReplicaSet: a scale-down picks its victims among
	// the group's pods ("" for pods no ReplicaSet owns).
	Group string
	// Kube is the pod for framework policies, Trace for ledger policies.
	Kube  *v1.Pod
	Trace *openb.Pod
	// Req is what the autoscaler model counts.
	Req     autoscaler.Resources
	Created time.Duration
	// RunFor > 0: the pod ends RunFor after it starts.
	RunFor time.Duration
	// Deadline > 0: a pod still pending then is withdrawn (fails).
	Deadline time.Duration
}

// Action is one change of the workload at a time.
type Action struct {
	At time.Duration
	// Create a pod.
	Create *PodSpec
	// ScaleDown deletes Count pods of the group, chosen as the ReplicaSet
	// controller does.
	ScaleDown string
	Count     int
	// DeleteGroup deletes every pod of the group.
	DeleteGroup string
}

// Outcome is a scheduling attempt's result.
type Outcome int

const (
	// Placed: bound and admitted.
	Placed Outcome = iota
	// Unschedulable: no node passed the scheduler's filters (PodScheduled
	// False, reason Unschedulable: what Karpenter provisions for).
	Unschedulable
	// Rejected: bound, then refused by the kubelet (the device plugin
	// cannot serve it there); its controller creates it again.
	Rejected
)

// Placer is a scheduling policy over a cluster whose nodes come and go.
type Placer interface {
	Name() string
	Place(ctx context.Context, p *PodSpec) (node string, out Outcome, err error)
	Remove(p *PodSpec) error
	AddNode(name string, t *autoscaler.InstanceType) error
	RemoveNode(name string) error
	// Fill is the used share of a node's GPU capacity (0..1).
	Fill(node string) float64
	// Check verifies the placer's books: no device counted twice, a node's
	// usage equal to what its pods hold.
	Check() error
	// Mispredicted counts reservations that differ from the kubelet's pick.
	Mispredicted() int
}

// Options configure one run.
type Options struct {
	Autoscaler autoscaler.Config
	// End stops the run (0: when the workload is done, plus Tail).
	End, Tail time.Duration
	// DeletionCost orders scale-down victims by their node's fill first
	// (gpuslice's deletionCost; only for pods the placer placed).
	DeletionCost bool
	// Scale multiplies simulated hours into reported hours (a compressed
	// day's 360; 1 for the trace in its own time).
	Scale float64
	// SampleEvery is the spacing of the node-count series (0: none).
	SampleEvery time.Duration
	// GPUWeight weighs resources in GPU-equivalents for the busy GPU-hours
	// (openb's nvidia.com/gpu share units: 0.001; a MIG 3g of 7: 3/7).
	GPUWeight map[string]float64
}

// Result is one policy's bill.
type Result struct {
	Policy    string  `json:"policy"`
	NodeHours float64 `json:"gpu_node_hours"`
	GPUHours  float64 `json:"gpu_hours_provisioned"`
	// BusyGPUHours is the GPU-hours the pods held.
	BusyGPUHours float64 `json:"gpu_hours_used"`
	Dollars      float64 `json:"dollars"`
	PeakNodes    int     `json:"peak_nodes"`
	Launched     int     `json:"nodes_launched"`
	Pods         int     `json:"pods"`
	Placed       int     `json:"pods_placed"`
	// Failed pods never ran: pending at their deadline (or at the end).
	Failed int `json:"pods_failed"`
	// FailedShort are the failed pods whose whole life (creation to
	// deadline) was shorter than a batch and a node launch.
	FailedShort int `json:"pods_failed_shorter_than_a_launch"`
	// Withdrawn pods were deleted by the workload before they ran (a
	// scale-down takes pending replicas first).
	Withdrawn int `json:"pods_withdrawn"`
	// Rejections counts kubelet rejections (each retried).
	Rejections   int     `json:"kubelet_rejections"`
	PendingP50   float64 `json:"pending_p50_s"`
	PendingP99   float64 `json:"pending_p99_s"`
	Mispredicted int     `json:"mispredicted"`
	// EndHours is the simulated time billed; NodesAtEnd the nodes still up.
	EndHours   float64 `json:"end_hours"`
	NodesAtEnd int     `json:"nodes_at_end"`
	// Series is the node count over time (hours, nodes).
	Series [][2]float64 `json:"-"`
}

type podState struct {
	spec    *PodSpec
	node    string
	started time.Duration
	pending bool
	// provisionable: the model holds the pod as pending (it was found
	// unschedulable; a pod the kubelet rejected never was).
	provisionable bool
	done          bool
	seq           int
}

// timers is a min-heap of pod end times.
type timers []timer

type timer struct {
	at  time.Duration
	pod *podState
}

func (h timers) Len() int { return len(h) }
func (h timers) Less(i, j int) bool {
	if h[i].at != h[j].at {
		return h[i].at < h[j].at
	}
	return h[i].pod.seq < h[j].pod.seq
}
func (h timers) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *timers) Push(x any)   { *h = append(*h, x.(timer)) }
func (h *timers) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

type engine struct {
	ctx     context.Context
	o       Options
	pl      Placer
	as      *autoscaler.Autoscaler
	meter   *autoscaler.Meter
	gpus    *autoscaler.Meter // "price" = GPUs: GPU-hours provisioned
	pods    map[string]*podState
	pending []*podState
	ends    timers
	groups  map[string][]*podState
	seq     int
	res     Result
	waits   []float64
	busy    float64 // GPU-seconds held
	now     time.Duration
	dirty   bool
}

// Run replays the actions (sorted by time) with one placer on a cluster
// that starts empty and that the autoscaler model grows and shrinks.
func Run(ctx context.Context, pl Placer, actions []Action, o Options) (*Result, error) {
	if o.Scale <= 0 {
		o.Scale = 1
	}
	as, err := autoscaler.New(o.Autoscaler)
	if err != nil {
		return nil, err
	}
	for i := 1; i < len(actions); i++ {
		if actions[i].At < actions[i-1].At {
			return nil, fmt.Errorf("actions not sorted by time at %d", i)
		}
	}
	e := &engine{ctx: ctx, o: o, pl: pl, as: as, meter: autoscaler.NewMeter(), gpus: autoscaler.NewMeter(),
		pods: map[string]*podState{}, groups: map[string][]*podState{}}
	e.res.Policy = pl.Name()
	end := o.End
	next := 0
	sample := time.Duration(0)
	const never = time.Duration(math.MaxInt64)
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		t := e.as.Next()
		if next < len(actions) {
			t = min(t, actions[next].At)
		}
		if len(e.ends) > 0 {
			t = min(t, e.ends[0].at)
		}
		deadline, waiting := e.nextDeadline()
		if waiting {
			t = min(t, deadline)
		}
		if end == 0 && next >= len(actions) && len(e.ends) == 0 && !waiting {
			// The workload is done (pods still pending have no deadline
			// and nothing left can free room for them).
			end = e.now + o.Tail
		}
		if end > 0 && t > end {
			t = end
		}
		if t == never {
			return nil, errors.New("nothing left to happen and no end")
		}
		for o.SampleEvery > 0 && sample <= t {
			e.res.Series = append(e.res.Series, [2]float64{sample.Hours() * o.Scale, float64(e.meter.Running())})
			sample += o.SampleEvery
		}
		e.now = t
		if err := e.autoscale(t); err != nil {
			return nil, err
		}
		for len(e.ends) > 0 && e.ends[0].at <= t {
			tm := heap.Pop(&e.ends).(timer)
			if err := e.finish(tm.pod); err != nil {
				return nil, err
			}
		}
		for next < len(actions) && actions[next].At <= t {
			if err := e.apply(&actions[next]); err != nil {
				return nil, err
			}
			next++
		}
		// Scheduling may move the model (a pod event at an instant where a
		// node becomes ready): settle the instant before going on.
		for {
			if err := e.retry(); err != nil {
				return nil, err
			}
			if err := e.nodeEvents(); err != nil {
				return nil, err
			}
			if !e.dirty {
				break
			}
		}
		if err := e.withdraw(t); err != nil {
			return nil, err
		}
		if end > 0 && t >= end {
			break
		}
	}
	return e.finishRun(end)
}

func (e *engine) nextDeadline() (time.Duration, bool) {
	best, ok := time.Duration(0), false
	for _, p := range e.pending {
		if d := p.spec.Deadline; d > 0 && (!ok || d < best) {
			best, ok = d, true
		}
	}
	return best, ok
}

// autoscale advances the model to t and applies its node events.
func (e *engine) autoscale(t time.Duration) error {
	if err := e.as.Advance(t); err != nil {
		return err
	}
	return e.nodeEvents()
}

func (e *engine) nodeEvents() error {
	for _, ev := range e.as.Events() {
		switch ev.Kind {
		case autoscaler.Launched:
			e.res.Launched++
			if err := e.meter.Launch(ev.At, ev.Node, ev.Type.Price); err != nil {
				return err
			}
			if err := e.gpus.Launch(ev.At, ev.Node, float64(gpuCount(ev.Type))); err != nil {
				return err
			}
		case autoscaler.Ready:
			if err := e.pl.AddNode(ev.Node, ev.Type); err != nil {
				return err
			}
			e.dirty = true
		case autoscaler.Cordoned:
			if err := e.pl.RemoveNode(ev.Node); err != nil {
				return fmt.Errorf("%s: consolidation: %w", e.pl.Name(), err)
			}
		case autoscaler.Deleted:
			if err := e.meter.Delete(ev.At, ev.Node); err != nil {
				return err
			}
			if err := e.gpus.Delete(ev.At, ev.Node); err != nil {
				return err
			}
		}
	}
	return nil
}

func (e *engine) apply(a *Action) error {
	switch {
	case a.Create != nil:
		if _, dup := e.pods[a.Create.ID]; dup {
			return fmt.Errorf("pod %s created twice", a.Create.ID)
		}
		e.seq++
		ps := &podState{spec: a.Create, pending: true, seq: e.seq}
		e.pods[ps.spec.ID] = ps
		e.res.Pods++
		if ps.spec.Group != "" {
			e.groups[ps.spec.Group] = append(e.groups[ps.spec.Group], ps)
		}
		e.pending = append(e.pending, ps)
		return e.try(ps)
	case a.ScaleDown != "":
		victims := e.victims(a.ScaleDown, a.Count)
		for _, v := range victims {
			if err := e.delete(v); err != nil {
				return err
			}
		}
		return nil
	case a.DeleteGroup != "":
		for _, v := range append([]*podState(nil), e.groups[a.DeleteGroup]...) {
			if err := e.delete(v); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("empty action at %s", a.At)
}

// victims ranks a ReplicaSet's pods for deletion as kube-controller-
// manager does (ActivePodsWithRanks): not yet on a node first, then (all
// bound pods run and are ready here) lower pod-deletion-cost, more of the
// set's replicas on the same node, newer.
func (e *engine) victims(group string, n int) []*podState {
	live := e.groups[group]
	onNode := map[string]int{}
	for _, p := range live {
		if p.node != "" {
			onNode[p.node]++
		}
	}
	cost := func(p *podState) int {
		if !e.o.DeletionCost || p.node == "" {
			return 0
		}
		// pkg/deletioncost: round(fill x 1000) in steps of 50.
		return int(math.Round(e.pl.Fill(p.node)*1000/50)) * 50
	}
	ranked := append([]*podState(nil), live...)
	sort.SliceStable(ranked, func(i, j int) bool {
		a, b := ranked[i], ranked[j]
		if (a.node == "") != (b.node == "") {
			return a.node == ""
		}
		if ca, cb := cost(a), cost(b); ca != cb {
			return ca < cb
		}
		if onNode[a.node] != onNode[b.node] {
			return onNode[a.node] > onNode[b.node]
		}
		if a.started != b.started {
			return a.started > b.started
		}
		return a.seq > b.seq
	})
	return ranked[:min(n, len(ranked))]
}

// delete removes a pod the workload deletes (pending or running).
func (e *engine) delete(p *podState) error {
	if p.done {
		return nil
	}
	if p.pending {
		p.pending, p.done = false, true
		e.dropPending(p)
		e.dropGroup(p)
		if d := p.spec.Deadline; d > 0 && d <= e.now {
			e.res.Failed++
			if d-p.spec.Created < e.o.Autoscaler.LaunchDelay+e.o.Autoscaler.BatchMax {
				e.res.FailedShort++
			}
		} else {
			e.res.Withdrawn++
		}
		if !p.provisionable {
			return nil
		}
		return e.as.PodDeleted(e.now, p.spec.ID)
	}
	return e.finish(p)
}

func (e *engine) dropPending(p *podState) {
	for i, q := range e.pending {
		if q == p {
			e.pending = append(e.pending[:i], e.pending[i+1:]...)
			return
		}
	}
}

func (e *engine) dropGroup(p *podState) {
	g := e.groups[p.spec.Group]
	for i, q := range g {
		if q == p {
			e.groups[p.spec.Group] = append(g[:i], g[i+1:]...)
			return
		}
	}
}

// finish ends a running pod (its run is over or it was deleted).
func (e *engine) finish(p *podState) error {
	if p.done {
		return nil
	}
	p.done = true
	if p.spec.Group != "" {
		e.dropGroup(p)
	}
	if err := e.pl.Remove(p.spec); err != nil {
		return fmt.Errorf("%s: pod %s: %w", e.pl.Name(), p.spec.ID, err)
	}
	e.busy += (e.now - p.started).Seconds() * gpuShare(e.o.GPUWeight, p.spec.Req)
	e.dirty = true
	return e.as.PodDeleted(e.now, p.spec.ID)
}

// try gives a pending pod one scheduling cycle.
func (e *engine) try(p *podState) error {
	node, out, err := e.pl.Place(e.ctx, p.spec)
	if err != nil {
		return fmt.Errorf("%s: pod %s: %w", e.pl.Name(), p.spec.ID, err)
	}
	switch out {
	case Placed:
		p.pending, p.provisionable, p.node, p.started = false, false, node, e.now
		e.dropPending(p)
		e.res.Placed++
		e.waits = append(e.waits, (e.now - p.spec.Created).Seconds())
		if err := e.as.PodBound(e.now, p.spec.ID, node, p.spec.Req); err != nil {
			return err
		}
		if p.spec.RunFor > 0 {
			heap.Push(&e.ends, timer{at: e.now + p.spec.RunFor, pod: p})
		}
		return nil
	case Unschedulable:
		p.provisionable = true
		return e.as.PodUnschedulable(e.now, autoscaler.Pod{ID: p.spec.ID, Requests: p.spec.Req, Created: p.spec.Created, NodeSelector: selector(p.spec)})
	case Rejected:
		e.res.Rejections++
		return nil
	}
	return fmt.Errorf("unknown outcome %d", out)
}

// retry gives every pending pod a cycle once the cluster changed (a node
// became ready, a pod left), in arrival order, as kube-scheduler's queueing
// hints move them back to the active queue.
func (e *engine) retry() error {
	if !e.dirty {
		return nil
	}
	e.dirty = false
	for _, p := range append([]*podState(nil), e.pending...) {
		if err := e.try(p); err != nil {
			return err
		}
	}
	return nil
}

// withdraw fails the pending pods whose deadline has come.
func (e *engine) withdraw(t time.Duration) error {
	for _, p := range append([]*podState(nil), e.pending...) {
		if d := p.spec.Deadline; d > 0 && d <= t {
			if err := e.delete(p); err != nil {
				return err
			}
		}
	}
	return nil
}

func (e *engine) finishRun(end time.Duration) (*Result, error) {
	e.now = end
	// Pods still running at the end are billed until then.
	for _, p := range e.pods {
		if !p.done && !p.pending {
			e.busy += (end - p.started).Seconds() * gpuShare(e.o.GPUWeight, p.spec.Req)
		}
	}
	r := &e.res
	r.NodeHours = e.meter.NodeHours(end) * e.o.Scale
	r.GPUHours = e.gpus.Dollars(end) * e.o.Scale
	r.BusyGPUHours = e.busy / 3600 * e.o.Scale
	r.Dollars = e.meter.Dollars(end) * e.o.Scale
	r.PeakNodes = e.meter.Peak()
	r.NodesAtEnd = e.meter.Running()
	r.EndHours = end.Hours() * e.o.Scale
	r.Mispredicted = e.pl.Mispredicted()
	sort.Float64s(e.waits)
	r.PendingP50, r.PendingP99 = quantile(e.waits, 0.5), quantile(e.waits, 0.99)
	if err := e.pl.Check(); err != nil {
		return nil, fmt.Errorf("%s: %w", e.pl.Name(), err)
	}
	// Every pod is placed (and ran or runs) or failed; none counted twice.
	still := 0
	for _, p := range e.pods {
		if p.pending {
			still++
		}
	}
	if r.Placed+r.Failed+r.Withdrawn+still != r.Pods {
		return nil, fmt.Errorf("%s: %d pods, %d placed + %d failed + %d withdrawn + %d pending", e.pl.Name(), r.Pods, r.Placed, r.Failed, r.Withdrawn, still)
	}
	r.Failed += still
	return r, nil
}

func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	return sorted[min(len(sorted)-1, max(0, int(math.Ceil(q*float64(len(sorted))))-1))]
}

func gpuCount(t *autoscaler.InstanceType) int {
	if n, ok := t.Labels[LabelGPUs]; ok {
		var c int
		if _, err := fmt.Sscan(n, &c); err == nil {
			return c
		}
	}
	return 0
}

// LabelGPUs is the instance-type label carrying its GPU count.
const LabelGPUs = "nvidia.com/gpu.count"

// gpuShare is the GPU-equivalents a pod's requests hold.
func gpuShare(weight map[string]float64, r autoscaler.Resources) float64 {
	s := 0.0
	for k, v := range r {
		s += float64(v) * weight[k]
	}
	return s
}

func selector(p *PodSpec) map[string][]string {
	if p.Trace != nil && len(p.Trace.Models) > 0 && p.Trace.NumGPU > 0 {
		return map[string][]string{openb.ModelLabel: p.Trace.Models}
	}
	return nil
}
