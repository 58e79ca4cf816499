package cache

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/gpuslice/gpuslice/pkg/allocator"
	"github.com/gpuslice/gpuslice/pkg/podrequest"
	"github.com/gpuslice/gpuslice/pkg/topology"
	"github.com/gpuslice/gpuslice/pkg/topology/fixtures"
)

type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

func newCache(t *testing.T, specs ...fixtures.Spec) (*Cache, *clock) {
	t.Helper()
	clk := &clock{now: time.Unix(1_800_000_000, 0)}
	c := New(Options{DefaultPolicy: topology.PolicyPacked, StaleAfter: 40 * time.Second, Now: clk.Now})
	cat := topology.NewCatalog()
	for _, s := range specs {
		c.SetTopology(s.Name, &Topology{Node: fixtures.MustBuild(cat, s), State: "Ready"})
		c.SetHeartbeat(s.Name, clk.now)
	}
	return c, clk
}

func req(name string, n int) *podrequest.Request {
	rc := []podrequest.ResourceCount{{Name: name, Count: n}}
	return &podrequest.Request{Containers: []podrequest.Container{{Name: "main", Resources: rc}}, Effective: rc}
}

var ts4 = fixtures.Spec{Name: "ts", Product: "NVIDIA H100 80GB HBM3", GPUs: 2, Replicas: 4, Policy: topology.PolicyPacked}

func placeOn(t *testing.T, c *Cache, node string, r *podrequest.Request) *allocator.Placement {
	t.Helper()
	v := c.View(node)
	if !v.Freshness.Usable {
		t.Fatal(v.Freshness.Reason)
	}
	p, verdict := v.State.Place(r)
	if !verdict.OK() {
		t.Fatal(verdict.Reason())
	}
	return p
}

func used(c *Cache, node string) int {
	n := 0
	for _, u := range c.View(node).State.Usage() {
		n += u.Used
	}
	return n
}

func TestAssumeBindConfirm(t *testing.T) {
	c, _ := newCache(t, ts4)
	r := req("nvidia.com/gpu", 1)
	p := placeOn(t, c, "ts", r)
	if err := c.Assume("a", "ns", "a", r, p); err != nil {
		t.Fatal(err)
	}
	// The same placement again would double-book: refused.
	if err := c.Assume("b", "ns", "b", r, p); err == nil || !strings.Contains(err.Error(), "already allocated") {
		t.Fatalf("second assume of the same device: %v", err)
	}
	if err := c.Assume("a", "ns", "a", r, p); err == nil {
		t.Fatal("assumed the same pod twice")
	}
	c.UpsertPod(PodUpdate{UID: "a", Namespace: "ns", Name: "a", Node: "ts", Request: r, Assignment: p})
	info, _ := c.Pod("a")
	if info.Phase != Bound || !info.Predicted {
		t.Fatalf("after bind %+v", info)
	}
	// The kubelet picked another replica on the other GPU: the report wins.
	predicted := p.Devices()[0].DeviceIDs[0]
	base, _, _ := topology.SplitReplicaID(predicted)
	other := ""
	for _, g := range c.View("ts").State.GPUs() {
		if g.UUID != base {
			other = topology.ReplicaID(g.UUID, 3)
		}
	}
	actual := []allocator.ResourceDevices{{Resource: "nvidia.com/gpu", DeviceIDs: []string{other}}}
	cat := topology.NewCatalog()
	c.SetTopology("ts", &Topology{Node: fixtures.MustBuild(cat, ts4), State: "Ready", Allocations: map[types.UID][]allocator.ResourceDevices{"a": actual}})
	info, _ = c.Pod("a")
	if info.Phase != Confirmed || info.Predicted || info.Devices[0].DeviceIDs[0] != other {
		t.Fatalf("after confirmation %+v", info)
	}
	if got := used(c, "ts"); got != 1 {
		t.Fatalf("used %d, want 1 (the prediction must not linger)", got)
	}
	// The predicted device is free again.
	if err := c.Assume("b", "ns", "b", r, p); err != nil {
		t.Fatalf("predicted device not released after confirmation: %v", err)
	}
}

func TestConfirmedPickDisplacesAClaim(t *testing.T) {
	whole := fixtures.Spec{Name: "w", Product: "NVIDIA H200", GPUs: 2}
	c, _ := newCache(t, whole)
	r := req("nvidia.com/gpu", 1)
	gpus := c.View("w").State.GPUs()
	claim := func(uid types.UID, gpu string) {
		p := &allocator.Placement{Node: "w", Containers: []allocator.ContainerDevices{{Name: "main", Devices: []allocator.ResourceDevices{{Resource: "nvidia.com/gpu", DeviceIDs: []string{gpu}}}}}}
		c.UpsertPod(PodUpdate{UID: uid, Name: string(uid), Node: "w", Request: r, Assignment: p})
	}
	claim("a", gpus[0].UUID)
	claim("b", gpus[1].UUID)
	// The kubelet gave b GPU 0 (equal GPUs: arbitrary). a's claim collides
	// and is re-predicted onto GPU 1.
	c.SetTopology("w", &Topology{Node: fixtures.MustBuild(topology.NewCatalog(), whole), State: "Ready",
		Allocations: map[types.UID][]allocator.ResourceDevices{"b": {{Resource: "nvidia.com/gpu", DeviceIDs: []string{gpus[0].UUID}}}}})
	a, _ := c.Pod("a")
	b, _ := c.Pod("b")
	if b.Devices[0].DeviceIDs[0] != gpus[0].UUID || a.Devices[0].DeviceIDs[0] != gpus[1].UUID {
		t.Fatalf("a %+v b %+v", a.Devices, b.Devices)
	}
	if used(c, "w") != 2 || c.Unplaced("w") != 0 {
		t.Fatalf("used %d unplaced %d", used(c, "w"), c.Unplaced("w"))
	}
}

func TestForeignPodsAndUnknownReportsCount(t *testing.T) {
	c, _ := newCache(t, ts4)
	r := req("nvidia.com/gpu", 3)
	// A pod of another scheduler: no annotation, devices predicted.
	c.UpsertPod(PodUpdate{UID: "other", Name: "other", Node: "ts", Request: r})
	if info, _ := c.Pod("other"); len(info.Devices) != 1 || len(info.Devices[0].DeviceIDs) != 3 {
		t.Fatalf("foreign pod %+v", info)
	}
	// A report for a pod the cache never saw (e.g. a static pod).
	v := c.View("ts")
	free := ""
	for _, g := range v.State.GPUs() {
		if g.Used == 0 {
			free = topology.ReplicaID(g.UUID, 0)
		}
	}
	c.SetTopology("ts", &Topology{Node: fixtures.MustBuild(topology.NewCatalog(), ts4), State: "Ready",
		Allocations: map[types.UID][]allocator.ResourceDevices{"static": {{Resource: "nvidia.com/gpu", DeviceIDs: []string{free}}}}})
	if got := used(c, "ts"); got != 4 {
		t.Fatalf("used %d, want 4", got)
	}
	c.UpsertPod(PodUpdate{UID: "other", Name: "other", Node: "ts", Request: r, Terminated: true})
	if got := used(c, "ts"); got != 1 {
		t.Fatalf("after termination used %d, want 1", got)
	}
}

func TestFreshness(t *testing.T) {
	c, clk := newCache(t, ts4)
	if v := c.View("ts"); !v.Freshness.Usable {
		t.Fatal(v.Freshness.Reason)
	}
	clk.now = clk.now.Add(2 * time.Minute)
	if v := c.View("ts"); v.Freshness.Usable || !strings.Contains(v.Freshness.Reason, "stale: last exporter heartbeat 2m0s ago (limit 40s)") || v.Freshness.Cause != CauseStale {
		t.Fatalf("stale: %+v", v.Freshness)
	}
	c.SetHeartbeat("ts", clk.now)
	c.SetTopology("ts", &Topology{Node: fixtures.MustBuild(topology.NewCatalog(), ts4), State: "Reconfiguring", Message: "mig.config.state=pending"})
	if v := c.View("ts"); v.Freshness.Usable || !strings.Contains(v.Freshness.Reason, "reconfiguring MIG: mig.config.state=pending") || v.Freshness.Cause != CauseReconfiguring {
		t.Fatalf("reconfiguring: %+v", v.Freshness)
	}
	bad := fixtures.MustBuild(topology.NewCatalog(), ts4)
	bad.GPUs[1].UUID = bad.GPUs[0].UUID
	c.SetTopology("ts", &Topology{Node: bad, State: "Ready"})
	if v := c.View("ts"); v.Freshness.Usable || !strings.Contains(v.Freshness.Reason, "invalid") || v.State != nil || v.Freshness.Cause != CauseInvalid {
		t.Fatalf("corrupted: %+v", v.Freshness)
	}
	if v := c.View("nope"); v.Freshness.Usable || !strings.Contains(v.Freshness.Reason, "no GPU topology published for node nope") || v.Freshness.Cause != CauseNoTopology {
		t.Fatalf("unknown node: %+v", v.Freshness)
	}
	c.SetTopology("ts", &Topology{Node: fixtures.MustBuild(topology.NewCatalog(), ts4), State: "Ready"})
	c.RemoveHeartbeat("ts")
	if v := c.View("ts"); v.Freshness.Usable || !strings.Contains(v.Freshness.Reason, "no heartbeat") || v.Freshness.Cause != CauseNoHeartbeat {
		t.Fatalf("no lease: %+v", v.Freshness)
	}
}

func TestForgetOnlyDropsAssumptions(t *testing.T) {
	c, _ := newCache(t, ts4)
	r := req("nvidia.com/gpu", 2)
	p := placeOn(t, c, "ts", r)
	if err := c.Assume("a", "ns", "a", r, p); err != nil {
		t.Fatal(err)
	}
	// The informer still shows the pod pending: the assumption stays.
	c.UpsertPod(PodUpdate{UID: "a", Name: "a", Request: r})
	if used(c, "ts") != 2 {
		t.Fatal("pending update dropped an assumption")
	}
	if !c.Forget("a") {
		t.Fatal("Forget of an assumption reported none")
	}
	if used(c, "ts") != 0 {
		t.Fatal("Forget kept the devices")
	}
	p = placeOn(t, c, "ts", r)
	if err := c.Assume("b", "ns", "b", r, p); err != nil {
		t.Fatal(err)
	}
	c.UpsertPod(PodUpdate{UID: "b", Name: "b", Node: "ts", Request: r, Assignment: p})
	if c.Forget("b") {
		t.Fatal("Forget of a bound pod reported an assumption")
	}
	if used(c, "ts") != 2 {
		t.Fatal("Forget dropped a bound pod")
	}
	c.RemovePod("b")
	if used(c, "ts") != 0 {
		t.Fatal("RemovePod kept the devices")
	}
}

// TestConcurrentAssumeNeverDoubleBooks races many cycles that all filtered
// against the same snapshot; run with -race.
func TestConcurrentAssumeNeverDoubleBooks(t *testing.T) {
	c, _ := newCache(t, fixtures.Spec{Name: "ts", Product: "NVIDIA H100 80GB HBM3", GPUs: 4, Replicas: 4, Policy: topology.PolicyDistributed})
	r := req("nvidia.com/gpu", 1)
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for i := 0; i < 64; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for attempt := 0; attempt < 100; attempt++ {
				v := c.View("ts")
				p, verdict := v.State.Place(r)
				if !verdict.OK() {
					return
				}
				if err := c.Assume(types.UID(fmt.Sprint(i)), "ns", fmt.Sprint(i), r, p); err == nil {
					mu.Lock()
					ok++
					mu.Unlock()
					return
				}
			}
		}(i)
	}
	wg.Wait()
	if ok != 16 {
		t.Fatalf("%d reservations succeeded on 16 replicas", ok)
	}
	seen := map[string]bool{}
	for i := 0; i < 64; i++ {
		info, found := c.Pod(types.UID(fmt.Sprint(i)))
		if !found {
			continue
		}
		for _, id := range info.Devices[0].DeviceIDs {
			if seen[id] {
				t.Fatalf("device %s reserved twice", id)
			}
			seen[id] = true
		}
	}
	if len(seen) != 16 || used(c, "ts") != 16 {
		t.Fatalf("%d distinct devices, used %d", len(seen), used(c, "ts"))
	}
}

// TestRestartRebuildsFromAnnotations feeds a fresh cache what a restarted
// scheduler's informers would deliver and expects the same allocations.
func TestRestartRebuildsFromAnnotations(t *testing.T) {
	spec := fixtures.Spec{Name: "a100", Product: "NVIDIA A100-SXM4-40GB", GPUs: 2, MIG: []string{"1g.5gb", "1g.5gb", "2g.10gb", "3g.20gb"}}
	c, _ := newCache(t, spec)
	var updates []PodUpdate
	for i, name := range []string{"nvidia.com/mig-1g.5gb", "nvidia.com/mig-3g.20gb", "nvidia.com/mig-1g.5gb", "nvidia.com/mig-2g.10gb"} {
		r := req(name, 1)
		p := placeOn(t, c, "a100", r)
		uid := types.UID(fmt.Sprint("p", i))
		if err := c.Assume(uid, "ns", string(uid), r, p); err != nil {
			t.Fatal(err)
		}
		u := PodUpdate{UID: uid, Name: string(uid), Node: "a100", Request: r, Assignment: p}
		c.UpsertPod(u)
		updates = append(updates, u)
	}
	before := c.View("a100").State.Usage()
	fresh, _ := newCache(t)
	for i := len(updates) - 1; i >= 0; i-- { // informer order is arbitrary
		fresh.UpsertPod(updates[i])
	}
	fresh.SetTopology("a100", &Topology{Node: fixtures.MustBuild(topology.NewCatalog(), spec), State: "Ready"})
	after := fresh.View("a100").State.Usage()
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Fatalf("rebuilt usage %v, before restart %v", after, before)
	}
	for _, u := range updates {
		a, _ := c.Pod(u.UID)
		b, _ := fresh.Pod(u.UID)
		if fmt.Sprint(a.Devices) != fmt.Sprint(b.Devices) {
			t.Fatalf("pod %s: %v before, %v after restart", u.UID, a.Devices, b.Devices)
		}
	}
}

// TestBindKeepsSnapshotUnlessDevicesDiffer: binding a pod with the devices
// it was assumed with leaves the snapshot as it is; an annotation naming
// other devices rebuilds it with them.
func TestBindKeepsSnapshotUnlessDevicesDiffer(t *testing.T) {
	c, _ := newCache(t, ts4)
	r := req("nvidia.com/gpu", 1)
	p := placeOn(t, c, "ts", r)
	if err := c.Assume("a", "ns", "a", r, p); err != nil {
		t.Fatal(err)
	}
	gen := c.View("ts").Generation
	c.UpsertPod(PodUpdate{UID: "a", Namespace: "ns", Name: "a", Node: "ts", Request: r, Assignment: p})
	if info, _ := c.Pod("a"); info.Phase != Bound || c.View("ts").Generation != gen || used(c, "ts") != 1 {
		t.Fatalf("bind with the assumed devices: %+v, generation %d→%d", info, gen, c.View("ts").Generation)
	}
	c2, _ := newCache(t, ts4)
	if err := c2.Assume("a", "ns", "a", r, p); err != nil {
		t.Fatal(err)
	}
	id := p.Devices()[0].DeviceIDs[0]
	base, replica, _ := topology.SplitReplicaID(id)
	other := &allocator.Placement{Node: "ts", Containers: []allocator.ContainerDevices{{Name: "main", Devices: []allocator.ResourceDevices{{Resource: "nvidia.com/gpu", DeviceIDs: []string{topology.ReplicaID(base, (replica+1)%4)}}}}}}
	c2.UpsertPod(PodUpdate{UID: "a", Namespace: "ns", Name: "a", Node: "ts", Request: r, Assignment: other})
	info, _ := c2.Pod("a")
	if info.Phase != Bound || info.Devices[0].DeviceIDs[0] != other.Containers[0].Devices[0].DeviceIDs[0] {
		t.Fatalf("bind with other devices: %+v", info)
	}
}

// A handle taken once sees every later change of its node, as View does:
// topology, heartbeat and reservations.
func TestHandleFollowsTheNode(t *testing.T) {
	c, clk := newCache(t)
	if _, ok := c.Handle("ts"); ok {
		t.Fatal("handle for a node the cache has never seen")
	}
	if got := len(c.Nodes()); got != 0 {
		t.Fatalf("looking up an unknown node added %d entries", got)
	}
	c.SetHeartbeat("ts", clk.now)
	h, ok := c.Handle("ts")
	if !ok {
		t.Fatal("no handle for a node with a heartbeat")
	}
	if v := h.View(); v.Freshness.Usable || !strings.Contains(v.Freshness.Reason, "no GPU topology published for node ts") {
		t.Fatalf("before its topology: %+v", v.Freshness)
	}
	c.SetTopology("ts", &Topology{Node: fixtures.MustBuild(topology.NewCatalog(), ts4), State: "Ready"})
	same := func(when string) {
		t.Helper()
		hv, cv := h.View(), c.View("ts")
		if hv.State != cv.State || hv.Generation != cv.Generation || hv.Freshness != cv.Freshness {
			t.Fatalf("%s: handle sees %+v, View %+v", when, hv, cv)
		}
	}
	same("after its topology")
	if !h.View().Freshness.Usable {
		t.Fatal(h.View().Freshness.Reason)
	}
	gen := h.View().Generation
	r := req("nvidia.com/gpu", 1)
	if err := c.Assume("uid-1", "default", "p", r, placeOn(t, c, "ts", r)); err != nil {
		t.Fatal(err)
	}
	same("after a reservation")
	if h.View().Generation == gen {
		t.Fatal("the handle's view kept the snapshot from before the reservation")
	}
	clk.now = clk.now.Add(time.Hour)
	same("stale")
	c.RemoveTopology("ts")
	same("topology removed")
	if again, _ := c.Handle("ts"); again.e != h.e {
		t.Fatal("a second handle names another entry")
	}
}

func TestHasTopology(t *testing.T) {
	c, clk := newCache(t, ts4)
	if !c.HasTopology("ts") || c.HasTopology("nope") {
		t.Fatalf("HasTopology ts=%v nope=%v, want true false", c.HasTopology("ts"), c.HasTopology("nope"))
	}
	// A heartbeat alone is no topology; a stale one keeps the topology.
	c.SetHeartbeat("hb-only", clk.now)
	clk.now = clk.now.Add(time.Hour)
	if c.HasTopology("hb-only") || !c.HasTopology("ts") {
		t.Fatal("heartbeat-only node has a topology, or a stale node lost its own")
	}
	c.RemoveTopology("ts")
	if c.HasTopology("ts") {
		t.Fatal("topology still held after RemoveTopology")
	}
}
