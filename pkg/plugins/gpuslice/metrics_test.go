package gpuslice

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/testutil"

	"github.com/gpuslice/gpuslice/pkg/allocator"
	"github.com/gpuslice/gpuslice/pkg/cache"
	"github.com/gpuslice/gpuslice/pkg/podrequest"
	"github.com/gpuslice/gpuslice/pkg/topology"
	"github.com/gpuslice/gpuslice/pkg/topology/fixtures"
)

// registered returns metrics registered in a registry of their own (they
// count nothing unregistered).
func registered(t *testing.T) (*Metrics, metrics.KubeRegistry) {
	t.Helper()
	m := NewMetrics()
	reg := metrics.NewKubeRegistry()
	m.Register(reg.MustRegister)
	return m, reg
}

func counter(t *testing.T, c metrics.CounterMetric) float64 {
	t.Helper()
	v, err := testutil.GetCounterMetricValue(c)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func gauge(t *testing.T, g metrics.GaugeMetric) float64 {
	t.Helper()
	v, err := testutil.GetGaugeMetricValue(g)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestReservationMetrics(t *testing.T) {
	args := testArgs("binpack")
	m, _ := registered(t)
	shared := testShared(newCache(t, a100), args)
	shared.metrics = m
	client := fake.NewSimpleClientset()
	pl := newPlugin(t, shared, args, client)
	ctx := context.Background()

	// Two pods take both 1g slices; a third, whose cycle filtered before
	// they did, finds none left at Reserve.
	late := gpuPod("late", map[string]int64{"nvidia.com/mig-1g.5gb": 1})
	lateCS := cycle(t, pl, late)
	if st := pl.Filter(ctx, lateCS, late, nodeInfo("a100")); !st.IsSuccess() {
		t.Fatal(st)
	}
	for _, name := range []string{"p0", "p1"} {
		pod := gpuPod(name, map[string]int64{"nvidia.com/mig-1g.5gb": 1})
		if _, err := client.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		cs := cycle(t, pl, pod)
		if st := pl.Filter(ctx, cs, pod, nodeInfo("a100")); !st.IsSuccess() {
			t.Fatal(st)
		}
		if st := pl.Reserve(ctx, cs, pod, "a100"); !st.IsSuccess() {
			t.Fatal(st)
		}
		if name == "p0" {
			if st := pl.PreBind(ctx, cs, pod, "a100"); !st.IsSuccess() {
				t.Fatal(st)
			}
		} else {
			pl.Unreserve(ctx, cs, pod, "a100")
			pl.Unreserve(ctx, cs, pod, "a100") // idempotent: counted once
		}
	}
	// p1 was released: take its slice back with another pod, then late
	// fails at Reserve.
	p2 := gpuPod("p2", map[string]int64{"nvidia.com/mig-1g.5gb": 1})
	cs := cycle(t, pl, p2)
	if st := pl.Filter(ctx, cs, p2, nodeInfo("a100")); !st.IsSuccess() {
		t.Fatal(st)
	}
	if st := pl.Reserve(ctx, cs, p2, "a100"); !st.IsSuccess() {
		t.Fatal(st)
	}
	if st := pl.Reserve(ctx, lateCS, late, "a100"); st.IsSuccess() {
		t.Fatal("late pod reserved a slice that is gone")
	}
	pl.Unreserve(ctx, lateCS, late, "a100") // nothing reserved: not counted
	// PreBind of a pod the API server does not know fails.
	if st := pl.PreBind(ctx, cs, p2, "a100"); st.IsSuccess() {
		t.Fatal("PreBind of a missing pod succeeded")
	}
	want := map[string]float64{outcomeReserved: 3, outcomeRejected: 1, outcomeReleased: 1, outcomeRecorded: 1, outcomeRecordFailed: 1}
	for outcome, n := range want {
		if got := counter(t, m.reservations.WithLabelValues(outcome)); got != n {
			t.Errorf("reservations_total{outcome=%q} = %v, want %v", outcome, got, n)
		}
	}
}

// fakeRecorder collects events.
type fakeRecorder struct{ *events.FakeRecorder }

func newRecorder() fakeRecorder { return fakeRecorder{events.NewFakeRecorder(100)} }

func (r fakeRecorder) drain() []string {
	var out []string
	for {
		select {
		case e := <-r.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

func TestReadBackMetricsAndEvent(t *testing.T) {
	m, reg := registered(t)
	rec := newRecorder()
	obs := newObserver(m, nil)
	obs.setRecorder(rec)
	cat := topology.NewCatalog()
	c := cache.New(cache.Options{DefaultPolicy: topology.PolicyPacked, Observer: obs})
	c.SetTopology("h100", &cache.Topology{Node: fixtures.MustBuild(cat, h100), State: "Ready"})
	c.SetHeartbeat("h100", time.Now())
	r := &podrequest.Request{Effective: []podrequest.ResourceCount{{Name: "nvidia.com/gpu", Count: 1}}}
	r.Containers = []podrequest.Container{{Name: "main", Resources: r.Effective}}

	report := map[types.UID][]allocator.ResourceDevices{}
	for i, name := range []string{"right", "wrong"} {
		p, v := c.View("h100").State.Place(r)
		if !v.OK() {
			t.Fatal(v.Reason())
		}
		uid := types.UID(name)
		if err := c.Assume(uid, "ns", name, r, p); err != nil {
			t.Fatal(err)
		}
		c.UpsertPod(cache.PodUpdate{UID: uid, Namespace: "ns", Name: name, Node: "h100", Request: r, Assignment: p})
		report[uid] = p.Devices()
		if i == 1 {
			// The kubelet gave the second pod a replica of the other GPU.
			gpu, _, _ := topology.SplitReplicaID(p.Devices()[0].DeviceIDs[0])
			for _, g := range c.View("h100").State.GPUs() {
				if g.UUID != gpu {
					report[uid] = []allocator.ResourceDevices{{Resource: "nvidia.com/gpu", DeviceIDs: []string{topology.ReplicaID(g.UUID, 0)}}}
				}
			}
		}
	}
	// Before this replica schedules, it emits no event; metrics count.
	c.SetTopology("h100", &cache.Topology{Node: fixtures.MustBuild(cat, h100), State: "Ready", Allocations: report})
	if got := counter(t, m.readBacks.WithLabelValues("corrected", "gpuslice")); got != 1 {
		t.Errorf("corrected = %v, want 1", got)
	}
	if got := counter(t, m.readBacks.WithLabelValues("confirmed", "gpuslice")); got != 1 {
		t.Errorf("confirmed = %v, want 1", got)
	}
	if ev := rec.drain(); len(ev) != 0 {
		t.Fatalf("standby replica emitted %q", ev)
	}
	if h, err := testutil.GetHistogramVecFromGatherer(reg, "gpuslice_scheduler_node_rebuild_duration_seconds", nil); err != nil || h.GetAggregatedSampleCount() == 0 {
		t.Errorf("node rebuilds observed: %v, %v", h, err)
	}

	// An active replica tells the pod.
	obs.activate()
	obs.ReadBack(cache.ReadBack{UID: "x", Namespace: "ns", Name: "x", Node: "h100", Claimed: true, Corrected: true,
		Predicted: []allocator.ResourceDevices{{Resource: "nvidia.com/gpu", DeviceIDs: []string{"GPU-a::0"}}},
		Reported:  []allocator.ResourceDevices{{Resource: "nvidia.com/gpu", DeviceIDs: []string{"GPU-b::0"}}}})
	ev := rec.drain()
	if len(ev) != 1 || !strings.Contains(ev[0], "Normal "+reasonPredictionCorrected) ||
		!strings.Contains(ev[0], "kubelet gave nvidia.com/gpu GPU-b::0 where gpuslice predicted nvidia.com/gpu GPU-a::0") {
		t.Fatalf("events %q", ev)
	}
	// A confirmed prediction, or another scheduler's pod, is no news.
	obs.ReadBack(cache.ReadBack{UID: "y", Claimed: true})
	obs.ReadBack(cache.ReadBack{UID: "z", Corrected: true})
	if ev := rec.drain(); len(ev) != 0 {
		t.Fatalf("events %q", ev)
	}
	if got := counter(t, m.readBacks.WithLabelValues("corrected", "other")); got != 1 {
		t.Errorf("corrected other = %v, want 1", got)
	}
}

type testClock struct{ t time.Time }

func (c *testClock) Now() time.Time { return c.t }

func gpuNodeObject(name string, gpus int64) *v1.Node {
	n := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	n.Status.Capacity = v1.ResourceList{v1.ResourceCPU: resource.MustParse("64")}
	if gpus > 0 {
		n.Status.Capacity["nvidia.com/gpu"] = *resource.NewQuantity(gpus, resource.DecimalSI)
	}
	return n
}

func nodeLister(t *testing.T, nodes ...*v1.Node) corelisters.NodeLister {
	t.Helper()
	f := informers.NewSharedInformerFactory(fake.NewSimpleClientset(), 0)
	inf := f.Core().V1().Nodes()
	for _, n := range nodes {
		if err := inf.Informer().GetIndexer().Add(n); err != nil {
			t.Fatal(err)
		}
	}
	return inf.Lister()
}

func TestScanMetricsAndNodeEvents(t *testing.T) {
	m, reg := registered(t)
	rec := newRecorder()
	clk := &testClock{t: now}
	obs := newObserver(m, clk.Now)
	obs.setRecorder(rec)
	obs.activate()
	cat := topology.NewCatalog()
	c := cache.New(cache.Options{StaleAfter: 40 * time.Second, Now: clk.Now, Observer: obs})
	ready := func(s fixtures.Spec, state, msg string) {
		c.SetTopology(s.Name, &cache.Topology{Node: fixtures.MustBuild(cat, s), State: state, Message: msg})
		c.SetHeartbeat(s.Name, clk.t)
	}
	// Usable: an idle A100 (MIG 1g,1g,2g,3g: 1 GPU-equivalent) and an
	// H100 pair with one replica of four taken.
	ready(a100, "Ready", "")
	ready(h100, "Ready", "")
	r := &podrequest.Request{Effective: []podrequest.ResourceCount{{Name: "nvidia.com/gpu", Count: 1}}}
	r.Containers = []podrequest.Container{{Name: "main", Resources: r.Effective}}
	p, _ := c.View("h100").State.Place(r)
	if err := c.Assume("pod", "ns", "pod", r, p); err != nil {
		t.Fatal(err)
	}
	// Excluded.
	c.SetTopology("stale", &cache.Topology{Node: fixtures.MustBuild(cat, fixtures.Spec{Name: "stale", Product: h100.Product, GPUs: 1}), State: "Ready"})
	c.SetHeartbeat("stale", clk.t.Add(-time.Minute))
	ready(fixtures.Spec{Name: "degraded", Product: h100.Product, GPUs: 1}, "Degraded", "NVML: driver not loaded")
	ready(fixtures.Spec{Name: "reconf", Product: h100.Product, GPUs: 1}, "Reconfiguring", "mig.config.state=pending")
	// Deleted from the cluster: the cache still knows it, the scan does not
	// count it.
	ready(fixtures.Spec{Name: "gone", Product: h100.Product, GPUs: 1}, "Ready", "")
	nodes := nodeLister(t,
		gpuNodeObject("a100", 0), // MIG resources only in the GPUNode: counted through its topology
		gpuNodeObject("h100", 8), gpuNodeObject("stale", 1), gpuNodeObject("degraded", 1), gpuNodeObject("reconf", 1),
		gpuNodeObject("noexporter", 4), // advertises GPUs, no GPUNode
		gpuNodeObject("cpu", 0),        // not a GPU node
	)
	mix := &allocator.Mix{Classes: []allocator.MixClass{
		{Resources: []podrequest.ResourceCount{{Name: "nvidia.com/mig-3g.20gb", Count: 1}}, Weight: 1},
	}}
	if _, err := obs.scan(c, nodes, mix); err != nil {
		t.Fatal(err)
	}
	if got := gauge(t, m.usableNodes); got != 2 {
		t.Errorf("usable_gpu_nodes = %v, want 2", got)
	}
	for cause, n := range map[cache.Cause]float64{cache.CauseStale: 1, cache.CauseDegraded: 1, cache.CauseReconfiguring: 1,
		cache.CauseNoTopology: 1, cache.CauseNoHeartbeat: 0, cache.CauseInvalid: 0} {
		if got := gauge(t, m.excludedNodes.WithLabelValues(string(cause))); got != n {
			t.Errorf("excluded_nodes{reason=%q} = %v, want %v", cause, got, n)
		}
	}
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
	// Used: a quarter of one H100. Free: the A100's 1 + the H100s' 1.75.
	if got := gauge(t, m.gpuEquivalents.WithLabelValues("used")); !near(got, 0.25) {
		t.Errorf("used = %v, want 0.25", got)
	}
	if got := gauge(t, m.gpuEquivalents.WithLabelValues("free")); !near(got, 2.75) {
		t.Errorf("free = %v, want 2.75", got)
	}
	// Stranded: the free three quarters of the H100 with a replica taken.
	if got := gauge(t, m.stranded); !near(got, 0.75) {
		t.Errorf("stranded = %v, want 0.75", got)
	}
	// The mix asks only for 3g slices: of 2.75 free, it can use the A100's
	// 3/7.
	if got := gauge(t, m.expectedStranded); !near(got, 2.75-3.0/7) {
		t.Errorf("expected_stranded = %v, want %v", got, 2.75-3.0/7)
	}
	if got := gauge(t, m.emptyNodes); got != 1 {
		t.Errorf("empty_gpu_nodes = %v, want 1 (the A100)", got)
	}
	if got := gauge(t, m.emptyGPUs); got != 2 {
		t.Errorf("empty_gpus = %v, want 2", got)
	}
	if got := gauge(t, m.nodeEquivalents.WithLabelValues("h100", "free")); !near(got, 1.75) {
		t.Errorf("node_gpu_equivalents{h100,free} = %v", got)
	}
	for state, want := range map[string]float64{"used": 1, "free": 7, "unhealthy": 0} {
		if got := gauge(t, m.nodeSlices.WithLabelValues("h100", "nvidia.com/gpu", state)); got != want {
			t.Errorf("node_slices{h100,nvidia.com/gpu,%s} = %v, want %v", state, got, want)
		}
	}
	if got := gauge(t, m.nodeSlices.WithLabelValues("a100", "nvidia.com/mig-1g.5gb", "free")); got != 2 {
		t.Errorf("node_slices{a100,mig-1g.5gb,free} = %v, want 2", got)
	}
	ev := rec.drain()
	if len(ev) != 4 {
		t.Fatalf("events %q, want one per excluded node", ev)
	}
	for _, want := range []string{"(stale)", "(degraded): GPU topology of node degraded is degraded: NVML: driver not loaded",
		"(reconfiguring)", "(topology_missing)"} {
		found := false
		for _, e := range ev {
			found = found || strings.HasPrefix(e, "Warning "+reasonNodeExcluded) && strings.Contains(e, want)
		}
		if !found {
			t.Errorf("no %s event with %q in %q", reasonNodeExcluded, want, ev)
		}
	}

	// The next scans see the same: no events. The stale node recovers
	// within the event interval: no event yet; after it, one.
	if _, err := obs.scan(c, nodes, mix); err != nil {
		t.Fatal(err)
	}
	clk.t = clk.t.Add(time.Minute)
	c.SetHeartbeat("stale", clk.t)
	for _, n := range []string{"a100", "h100", "degraded", "reconf"} {
		c.SetHeartbeat(n, clk.t)
	}
	if _, err := obs.scan(c, nodes, mix); err != nil {
		t.Fatal(err)
	}
	if ev := rec.drain(); len(ev) != 0 {
		t.Fatalf("events within the interval: %q", ev)
	}
	if got := gauge(t, m.usableNodes); got != 3 {
		t.Errorf("usable_gpu_nodes = %v, want 3", got)
	}
	clk.t = clk.t.Add(nodeEventInterval)
	for _, n := range []string{"a100", "h100", "stale", "degraded", "reconf"} {
		c.SetHeartbeat(n, clk.t)
	}
	if _, err := obs.scan(c, nodes, mix); err != nil {
		t.Fatal(err)
	}
	ev = rec.drain()
	if len(ev) != 1 || !strings.HasPrefix(ev[0], "Normal "+reasonNodeUsable) {
		t.Fatalf("events %q, want one %s", ev, reasonNodeUsable)
	}

	// A node removed from the cluster loses its per-node series.
	if _, err := obs.scan(c, nodeLister(t, gpuNodeObject("a100", 0)), mix); err != nil {
		t.Fatal(err)
	}
	if got := gauge(t, m.usableNodes); got != 1 {
		t.Errorf("usable_gpu_nodes = %v, want 1", got)
	}
	if _, ok := obs.published["h100"]; ok {
		t.Error("h100's per-node series kept after the node left")
	}
	if mf, err := reg.Gather(); err != nil {
		t.Fatal(err)
	} else {
		for _, f := range mf {
			for _, s := range f.GetMetric() {
				for _, l := range s.GetLabel() {
					if l.GetName() == "node" && l.GetValue() != "a100" {
						t.Errorf("%s has a series of node %s, which left", f.GetName(), l.GetValue())
					}
				}
			}
		}
	}
}

// TestEventRateLimit: a burst of corrections is cut at the burst size and
// counted.
func TestEventRateLimit(t *testing.T) {
	m, _ := registered(t)
	rec := fakeRecorder{events.NewFakeRecorder(200)}
	obs := newObserver(m, nil)
	obs.setRecorder(rec)
	obs.activate()
	for i := range 2 * eventBurst {
		obs.ReadBack(cache.ReadBack{UID: types.UID(rune('a' + i)), Claimed: true, Corrected: true})
	}
	got := len(rec.drain())
	if got < eventBurst || got >= 2*eventBurst {
		t.Fatalf("%d events of %d, want about the burst (%d)", got, 2*eventBurst, eventBurst)
	}
	if s := counter(t, m.eventsSuppressed); int(s) != 2*eventBurst-got {
		t.Fatalf("suppressed %v, want %d", s, 2*eventBurst-got)
	}
}

// TestNilMetrics: offline shared state has no metrics; nothing panics.
func TestNilMetrics(t *testing.T) {
	var m *Metrics
	m.reservation(outcomeReserved)
	var o *observer
	o.activate()
}
