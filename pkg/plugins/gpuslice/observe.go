package gpuslice

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/flowcontrol"
	"k8s.io/klog/v2"

	"github.com/gpuslice/gpuslice/pkg/allocator"
	"github.com/gpuslice/gpuslice/pkg/cache"
)

// What operators see of the scheduler beyond its decisions: the cluster's
// GPU state as metrics, refreshed by a scan every observeInterval (never
// per scheduling cycle), and events where a user has something to learn:
// a GPU node the scheduler keeps GPU pods away from (and its return), and a
// pod whose devices the kubelet chose differently from the prediction.

const (
	// observeInterval is how often the cluster's GPU state is scanned.
	observeInterval = 15 * time.Second
	// nodeEventInterval is the least time between two events on one node:
	// a node whose heartbeat flaps gets one event per interval at most,
	// saying its state at the time.
	nodeEventInterval = 5 * time.Minute
	// eventQPS and eventBurst bound all GPUSlice events together (a
	// restart or a failed rack must not flood the API server).
	eventQPS   = 1
	eventBurst = 25
)

// Event reasons.
const (
	reasonNodeExcluded        = "GPUNodeExcluded"
	reasonNodeUsable          = "GPUNodeUsable"
	reasonPredictionCorrected = "GPUPredictionCorrected"
)

// observer turns what the cache learns and what the scan finds into
// metrics and events.
type observer struct {
	metrics *Metrics
	now     func() time.Time

	// recorder is nil until a profile with an event recorder initialises
	// the shared state, and events are emitted only once this replica has
	// scheduled (active): a standby replica (leader election) is silent.
	mu       sync.Mutex
	recorder events.EventRecorder
	limiter  flowcontrol.RateLimiter
	active   atomic.Bool
	// nodes is what the last scans reported per node.
	nodes map[string]*nodeReport
	// published are the nodes with node_gpu_equivalents and node_slices
	// series, and the resources of the latter.
	published map[string][]string
}

// nodeReport is the state last reported on a node by an event.
type nodeReport struct {
	cause    cache.Cause // "" when usable
	lastSent time.Time
}

func newObserver(m *Metrics, now func() time.Time) *observer {
	if now == nil {
		now = time.Now
	}
	return &observer{
		metrics:   m,
		now:       now,
		limiter:   flowcontrol.NewTokenBucketRateLimiter(eventQPS, eventBurst),
		nodes:     map[string]*nodeReport{},
		published: map[string][]string{},
	}
}

// setRecorder sets where events go, once.
func (o *observer) setRecorder(r events.EventRecorder) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.recorder == nil {
		o.recorder = r
	}
}

// activate marks this replica as the one scheduling: from now on it emits
// events.
func (o *observer) activate() {
	if o != nil && !o.active.Load() {
		o.active.Store(true)
	}
}

// event emits one event if this replica is active and the rate limit
// allows. The caller holds o.mu.
func (o *observer) event(regarding *v1.ObjectReference, eventtype, reason, action, note string) bool {
	if o.recorder == nil || !o.active.Load() {
		return false
	}
	if !o.limiter.TryAccept() {
		if o.metrics != nil {
			o.metrics.eventsSuppressed.Inc()
		}
		return false
	}
	o.recorder.Eventf(regarding, nil, eventtype, reason, action, "%s", note)
	return true
}

// ReadBack implements cache.Observer.
func (o *observer) ReadBack(rb cache.ReadBack) {
	result, origin := "confirmed", "other"
	if rb.Corrected {
		result = "corrected"
	}
	if rb.Claimed {
		origin = "gpuslice"
	}
	if o.metrics != nil {
		o.metrics.readBacks.WithLabelValues(result, origin).Inc()
	}
	if !rb.Corrected || !rb.Claimed {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.event(&v1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: rb.Namespace, Name: rb.Name, UID: rb.UID},
		v1.EventTypeNormal, reasonPredictionCorrected, "ReadBack",
		fmt.Sprintf("on node %s the kubelet gave %s where gpuslice predicted %s; gpuslice now counts the kubelet's devices",
			rb.Node, devicesString(rb.Reported), devicesString(rb.Predicted)))
}

// Rebuilt implements cache.Observer.
func (o *observer) Rebuilt(_ string, took time.Duration) {
	if o.metrics != nil {
		o.metrics.nodeRebuild.Observe(took.Seconds())
	}
}

func devicesString(devs []allocator.ResourceDevices) string {
	parts := make([]string, 0, len(devs))
	for _, d := range devs {
		parts = append(parts, d.Resource+" "+strings.Join(d.DeviceIDs, ","))
	}
	return strings.Join(parts, "; ")
}

// clusterStats is what one scan found.
type clusterStats struct {
	usable     int
	excluded   map[cache.Cause]int
	used, free float64
	stranded   float64
	expected   float64
	emptyNodes int
	emptyGPUs  int
	perNode    map[string][2]float64 // used, free
	slices     map[string][]allocator.Usage
}

// scan reads every node's view from the cache, updates the metrics and
// emits node events. GPU nodes are the Nodes that advertise an nvidia.com/
// resource or whose exporter published a topology; nodes that no longer
// exist are not counted (the cache keeps their entries).
func (o *observer) scan(c *cache.Cache, nodes corelisters.NodeLister, mix *allocator.Mix) (clusterStats, error) {
	list, err := nodes.List(labels.Everything())
	if err != nil {
		return clusterStats{}, err
	}
	if mix == nil {
		mix = &allocator.Mix{}
	}
	st := clusterStats{excluded: map[cache.Cause]int{}, perNode: map[string][2]float64{}, slices: map[string][]allocator.Usage{}}
	cluster := allocator.NewSupply(mix)
	now := o.now()
	// The views are read without o.mu (ReadBack, called by the cache's
	// informer handlers, takes it); events and gauges are written under it.
	type report struct {
		node *v1.Node
		f    cache.Freshness
	}
	reports := make([]report, 0, len(list))
	for _, n := range list {
		view := c.View(n.Name)
		if !view.Freshness.Usable && view.Freshness.Cause == cache.CauseNoTopology && !advertisesGPU(n) {
			continue // not a GPU node
		}
		reports = append(reports, report{node: n, f: view.Freshness})
		if !view.Freshness.Usable || view.State == nil {
			st.excluded[view.Freshness.Cause]++
			continue
		}
		st.usable++
		view.State.AddSupply(cluster, mix, allocator.HostFit{})
		// As kubectl gpuslice top counts them (pkg/gpuview): healthy GPUs
		// only; the free capacity of a partly used GPU is stranded.
		tot := view.State.Totals()
		st.used += tot.Used
		st.free += tot.Free
		st.stranded += tot.Stranded
		st.perNode[n.Name] = [2]float64{tot.Used, tot.Free}
		st.slices[n.Name] = view.State.Usage()
		empty := view.State.EmptyGPUs()
		st.emptyGPUs += empty
		if gpus := view.State.Node().GPUCount(); gpus > 0 && empty == gpus {
			st.emptyNodes++
		}
	}
	for i := range mix.Classes {
		st.expected += mix.Classes[i].Weight * max(cluster.Free-cluster.Capacity[i], 0)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	seen := make(map[string]bool, len(reports))
	for _, r := range reports {
		seen[r.node.Name] = true
		o.reportNode(r.node, r.f, now)
	}
	for name := range o.nodes {
		if !seen[name] {
			delete(o.nodes, name)
		}
	}
	o.publish(&st)
	return st, nil
}

// reportNode emits an event when a node's state differs from the last one
// reported on it, at most once per nodeEventInterval. A node first seen
// usable gets no event. The caller holds o.mu.
func (o *observer) reportNode(n *v1.Node, f cache.Freshness, now time.Time) {
	cause := f.Cause
	if f.Usable {
		cause = ""
	}
	r := o.nodes[n.Name]
	if r == nil {
		r = &nodeReport{}
		o.nodes[n.Name] = r
	}
	if r.cause == cause || now.Sub(r.lastSent) < nodeEventInterval {
		return
	}
	ref := &v1.ObjectReference{Kind: "Node", APIVersion: "v1", Name: n.Name, UID: types.UID(n.Name)}
	sent := false
	if cause == "" {
		sent = o.event(ref, v1.EventTypeNormal, reasonNodeUsable, "Observe", "gpuslice schedules GPU pods on this node again")
	} else {
		sent = o.event(ref, v1.EventTypeWarning, reasonNodeExcluded, "Observe",
			fmt.Sprintf("gpuslice keeps GPU pods off this node (%s): %s", cause, f.Reason))
	}
	if sent {
		r.cause, r.lastSent = cause, now
	}
}

// publish sets the gauges to st. The caller holds o.mu.
func (o *observer) publish(st *clusterStats) {
	m := o.metrics
	if m == nil {
		return
	}
	m.usableNodes.Set(float64(st.usable))
	for _, c := range cache.Causes {
		m.excludedNodes.WithLabelValues(string(c)).Set(float64(st.excluded[c]))
	}
	m.gpuEquivalents.WithLabelValues("used").Set(st.used)
	m.gpuEquivalents.WithLabelValues("free").Set(st.free)
	m.stranded.Set(st.stranded)
	m.expectedStranded.Set(st.expected)
	m.emptyNodes.Set(float64(st.emptyNodes))
	m.emptyGPUs.Set(float64(st.emptyGPUs))
	for name, v := range st.perNode {
		m.nodeEquivalents.WithLabelValues(name, "used").Set(v[0])
		m.nodeEquivalents.WithLabelValues(name, "free").Set(v[1])
		resources := make([]string, 0, len(st.slices[name]))
		for _, u := range st.slices[name] {
			m.nodeSlices.WithLabelValues(name, u.Resource, "used").Set(float64(u.Used))
			m.nodeSlices.WithLabelValues(name, u.Resource, "free").Set(float64(u.Free))
			m.nodeSlices.WithLabelValues(name, u.Resource, "unhealthy").Set(float64(u.Unhealthy))
			resources = append(resources, u.Resource)
		}
		for _, r := range o.published[name] {
			if !slices.Contains(resources, r) {
				m.deleteSlices(name, r)
			}
		}
		o.published[name] = resources
	}
	for name, resources := range o.published {
		if _, ok := st.perNode[name]; !ok {
			m.nodeEquivalents.DeleteLabelValues(name, "used")
			m.nodeEquivalents.DeleteLabelValues(name, "free")
			for _, r := range resources {
				m.deleteSlices(name, r)
			}
			delete(o.published, name)
		}
	}
}

// advertisesGPU reports whether the node's capacity names an NVIDIA
// resource (the device plugin runs there).
func advertisesGPU(n *v1.Node) bool {
	for name, q := range n.Status.Capacity {
		if strings.HasPrefix(string(name), "nvidia.com/") && !q.IsZero() {
			return true
		}
	}
	return false
}

// runObserver scans every observeInterval until ctx ends, once the cache
// is synced (recording how long that took since start).
func (s *Shared) runObserver(ctx context.Context, start time.Time, nodes corelisters.NodeLister) {
	logger := klog.FromContext(ctx).WithName(Name)
	if err := s.waitSynced(ctx); err != nil {
		// waitSynced gives up after syncTimeout; keep waiting as PreFilter
		// does, then scan.
		if !waitForever(ctx, s) {
			return
		}
	}
	if m := s.obs.metrics; m != nil {
		m.cacheSync.Set(time.Since(start).Seconds())
	}
	logger.V(2).Info("GPU allocation cache synced", "took", time.Since(start))
	t := time.NewTicker(observeInterval)
	defer t.Stop()
	for {
		if _, err := s.obs.scan(s.cache, nodes, s.mix.Snapshot(mixMinShare)); err != nil {
			logger.Error(err, "Scanning GPU nodes for metrics")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// waitForever retries waitSynced until it succeeds or ctx ends.
func waitForever(ctx context.Context, s *Shared) bool {
	for ctx.Err() == nil {
		if s.waitSynced(ctx) == nil {
			return true
		}
	}
	return false
}
