package gpuslice

import (
	"context"
	"fmt"
	"math"
	"math/rand"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"

	"github.com/gpuslice/gpuslice/pkg/allocator"
	"github.com/gpuslice/gpuslice/pkg/cache"
	"github.com/gpuslice/gpuslice/pkg/podrequest"
	"github.com/gpuslice/gpuslice/pkg/topology"
	"github.com/gpuslice/gpuslice/pkg/topology/fixtures"
)

// freshScore is what Score computes without the memo.
func freshScore(pl *Plugin, s *cycleState, st *allocator.State, ni fwk.NodeInfo) int64 {
	sc := pl.scorer
	sc.Mix = s.mix
	alloc, used := ni.GetAllocatable(), ni.GetRequested()
	h := allocator.HostFit{
		Pod:      s.host,
		NodeFree: allocator.Host{MilliCPU: alloc.GetMilliCPU() - used.GetMilliCPU(), MemBytes: alloc.GetMemory() - used.GetMemory()},
		Known:    true,
	}
	return int64(math.Round(sc.ScoreHost(st, s.req, h) * scoreScale))
}

// hostNodeInfo is a node with CPU and memory, some of it requested, so that
// scores could depend on them.
func hostNodeInfo(name string, usedMilliCPU int64) fwk.NodeInfo {
	ni := framework.NewNodeInfo()
	ni.SetNode(&v1.Node{})
	n := ni.Node().DeepCopy()
	n.Name = name
	n.Status.Allocatable = v1.ResourceList{v1.ResourceCPU: resource.MustParse("64"), v1.ResourceMemory: resource.MustParse("512Gi")}
	ni.SetNode(n)
	filler := &v1.Pod{Spec: v1.PodSpec{Containers: []v1.Container{{Resources: v1.ResourceRequirements{Requests: v1.ResourceList{
		v1.ResourceCPU: *resource.NewMilliQuantity(usedMilliCPU, resource.DecimalSI)}}}}}}
	pi, _ := framework.NewPodInfo(filler)
	ni.AddPodInfo(pi)
	return ni
}

// TestMemoIsExact schedules random pods on a mixed cluster, cycle after
// cycle, and checks every Filter verdict and every score against what Check
// and the scorer compute afresh, for each strategy.
func TestMemoIsExact(t *testing.T) {
	specs := []fixtures.Spec{
		a100,
		h100,
		{Name: "h200", Product: "NVIDIA H200", GPUs: 4},
		{Name: "h100-spread", Product: "NVIDIA H100 80GB HBM3", GPUs: 2, Replicas: 2},
	}
	requests := []map[string]int64{
		{"nvidia.com/gpu": 1},
		{"nvidia.com/gpu": 2},
		{"nvidia.com/mig-1g.5gb": 1},
		{"nvidia.com/mig-3g.20gb": 1},
	}
	for _, strategy := range []string{"binpack", "spread", "fragmentation-aware"} {
		t.Run(strategy, func(t *testing.T) {
			args := testArgs(strategy)
			pl := newPlugin(t, testShared(newCache(t, specs...), args), args, nil)
			rng := rand.New(rand.NewSource(1))
			ctx := context.Background()
			hits := 0
			for i := 0; i < 60; i++ {
				pod := gpuPod(fmt.Sprint("p", i), requests[rng.Intn(len(requests))])
				pod.Spec.Containers[0].Resources.Requests = v1.ResourceList{v1.ResourceCPU: *resource.NewMilliQuantity(int64(rng.Intn(8000)), resource.DecimalSI)}
				cs := cycle(t, pl, pod)
				s, err := getState(cs)
				if err != nil {
					t.Fatal(err)
				}
				var fits []string
				for _, spec := range specs {
					ni := hostNodeInfo(spec.Name, int64(rng.Intn(64000)))
					view := pl.shared.cache.View(spec.Name)
					_, hit := pl.memo.slot(pl.shared.cache, spec.Name).fits(view.State, s.reqKey).scoreOf()
					want := view.State.Check(s.req).OK()
					if got := pl.Filter(ctx, cs, pod, ni).IsSuccess(); got != want {
						t.Fatalf("cycle %d, %s: Filter says fits=%v, Check %v", i, spec.Name, got, want)
					}
					if !want {
						continue
					}
					fits = append(fits, spec.Name)
					score, st := pl.Score(ctx, cs, pod, ni)
					if !st.IsSuccess() {
						t.Fatal(st)
					}
					if w := freshScore(pl, s, view.State, ni); score != w {
						t.Fatalf("cycle %d, %s: Score %d (memo hit %v), computed afresh %d", i, spec.Name, score, hit, w)
					}
					if hit {
						hits++
					}
				}
				if len(fits) > 0 && rng.Intn(3) > 0 {
					node := fits[rng.Intn(len(fits))]
					if st := pl.Reserve(ctx, cs, pod, node); !st.IsSuccess() {
						t.Fatal(st)
					}
				}
			}
			if strategy != "fragmentation-aware" && hits == 0 {
				t.Error("no score was served from the memo")
			}
			if strategy == "fragmentation-aware" && hits > 0 {
				t.Errorf("%d fragmentation-aware scores served from the memo: they follow the mix", hits)
			}
		})
	}
}

// TestMemoFollowsSnapshotsAndFreshness: a reservation replaces the node's
// snapshot, so the next pod's verdict is computed again, and a node whose
// heartbeat goes stale is rejected although its fit is remembered.
func TestMemoFollowsSnapshotsAndFreshness(t *testing.T) {
	clock := now
	c := cache.New(cache.Options{StaleAfter: 40 * time.Second, Now: func() time.Time { return clock }})
	one := fixtures.Spec{Name: "one", Product: "NVIDIA H200", GPUs: 1}
	c.SetTopology("one", &cache.Topology{Node: fixtures.MustBuild(topology.NewCatalog(), one), State: "Ready"})
	c.SetHeartbeat("one", now)
	args := testArgs("binpack")
	pl := newPlugin(t, testShared(c, args), args, nil)
	ctx := context.Background()

	first := gpuPod("first", map[string]int64{"nvidia.com/gpu": 1})
	cs := cycle(t, pl, first)
	if st := pl.Filter(ctx, cs, first, nodeInfo("one")); !st.IsSuccess() {
		t.Fatal(st)
	}
	if st := pl.Reserve(ctx, cs, first, "one"); !st.IsSuccess() {
		t.Fatal(st)
	}
	second := gpuPod("second", map[string]int64{"nvidia.com/gpu": 1})
	if st := pl.Filter(ctx, cycle(t, pl, second), second, nodeInfo("one")); st.IsSuccess() {
		t.Fatal("the only GPU is reserved, yet Filter admits a second pod: a stale memo entry")
	}
	pl.Unreserve(ctx, cs, first, "one")
	if st := pl.Filter(ctx, cycle(t, pl, second), second, nodeInfo("one")); !st.IsSuccess() {
		t.Fatalf("GPU released, Filter: %v", st)
	}
	clock = now.Add(time.Minute)
	if st := pl.Filter(ctx, cycle(t, pl, second), second, nodeInfo("one")); st.IsSuccess() {
		t.Fatal("stale node admitted from the memo")
	}
}

// TestMemoSeparatesContainerLayouts: with failRequestsGreaterThanOne, two
// replicas in one container are rejected while one replica in each of two
// containers fit; the memo must not serve one for the other.
func TestMemoSeparatesContainerLayouts(t *testing.T) {
	spec := fixtures.Spec{Name: "ts", Product: "NVIDIA H100 80GB HBM3", GPUs: 1, Replicas: 4}
	node := fixtures.MustBuild(topology.NewCatalog(), spec)
	node.TimeSlicing.FailRequestsGreaterThanOne = true
	c := cache.New(cache.Options{StaleAfter: 40 * time.Second, Now: func() time.Time { return now }})
	c.SetTopology("ts", &cache.Topology{Node: node, State: "Ready"})
	c.SetHeartbeat("ts", now)
	args := testArgs("binpack")
	pl := newPlugin(t, testShared(c, args), args, nil)
	ctx := context.Background()

	two := gpuPod("two-containers", map[string]int64{"nvidia.com/gpu": 1})
	two.Spec.Containers = append(two.Spec.Containers, *two.Spec.Containers[0].DeepCopy())
	two.Spec.Containers[1].Name = "second"
	one := gpuPod("one-container", map[string]int64{"nvidia.com/gpu": 2})
	if st := pl.Filter(ctx, cycle(t, pl, two), two, nodeInfo("ts")); !st.IsSuccess() {
		t.Fatalf("one replica per container: %v", st)
	}
	if st := pl.Filter(ctx, cycle(t, pl, one), one, nodeInfo("ts")); st.IsSuccess() {
		t.Fatal("two replicas in one container admitted under failRequestsGreaterThanOne")
	}
	r1, _ := podrequest.Parse(two, podrequest.Options{})
	r2, _ := podrequest.Parse(one, podrequest.Options{})
	if r1.String() != r2.String() || requestKey(r1) == requestKey(r2) {
		t.Errorf("effective %q vs %q, keys %q vs %q: want equal effective requests, distinct keys", r1, r2, requestKey(r1), requestKey(r2))
	}
}

// TestMemoIgnoresPreemptionOverlays: a nominated pod added by preemption's
// dry run makes the cycle's view of the node a private copy, which is
// checked, not looked up.
func TestMemoIgnoresPreemptionOverlays(t *testing.T) {
	one := fixtures.Spec{Name: "one", Product: "NVIDIA H200", GPUs: 1}
	args := testArgs("binpack")
	pl := newPlugin(t, testShared(newCache(t, one), args), args, nil)
	ctx := context.Background()
	pod := gpuPod("p", map[string]int64{"nvidia.com/gpu": 1})
	if st := pl.Filter(ctx, cycle(t, pl, pod), pod, nodeInfo("one")); !st.IsSuccess() {
		t.Fatal(st)
	}
	cs := cycle(t, pl, pod)
	nominated := gpuPod("nominated", map[string]int64{"nvidia.com/gpu": 1})
	pi, err := framework.NewPodInfo(nominated)
	if err != nil {
		t.Fatal(err)
	}
	if st := pl.AddPod(ctx, cs, pod, pi, nodeInfo("one")); !st.IsSuccess() {
		t.Fatal(st)
	}
	if st := pl.Filter(ctx, cs, pod, nodeInfo("one")); st.IsSuccess() {
		t.Fatal("the nominated pod holds the only GPU in this cycle's view, yet Filter admits the pod")
	}
}

func TestMemoForgetsDeletedNodes(t *testing.T) {
	args := testArgs("binpack")
	s := testShared(newCache(t, h100), args)
	pl := newPlugin(t, s, args, nil)
	pod := gpuPod("p", map[string]int64{"nvidia.com/gpu": 1})
	if st := pl.Filter(context.Background(), cycle(t, pl, pod), pod, nodeInfo("h100")); !st.IsSuccess() {
		t.Fatal(st)
	}
	entry := func() *memoEntry {
		pl.memo.mu.RLock()
		defer pl.memo.mu.RUnlock()
		if sl := pl.memo.nodes["h100"]; sl != nil {
			return sl.entry.Load()
		}
		return nil
	}
	if entry() == nil {
		t.Fatal("no memo entry after a fitting Filter")
	}
	s.forgetNode("h100")
	if entry() != nil {
		t.Fatal("memo entry kept after the node's GPUNode was deleted")
	}
}

// What Filter judged is the judging cycle's: Score and Reserve of a cycle
// whose Filter did not judge the node (a later cycle's or a preemption
// clone's did) do not use it.
func TestJudgedRecordIsPerCycle(t *testing.T) {
	args := testArgs("binpack")
	c := newCache(t, h100)
	pl := newPlugin(t, testShared(c, args), args, nil)
	ctx := context.Background()
	pod := gpuPod("p", map[string]int64{"nvidia.com/gpu": 1})
	first := cycle(t, pl, pod)
	if st := pl.Filter(ctx, first, pod, nodeInfo("h100")); !st.IsSuccess() {
		t.Fatal(st)
	}
	if _, st := pl.Score(ctx, first, pod, nodeInfo("h100")); !st.IsSuccess() {
		t.Fatalf("Score after this cycle's Filter: %v", st)
	}
	clone := first.Clone()
	if st := pl.Filter(ctx, clone, pod, nodeInfo("h100")); !st.IsSuccess() {
		t.Fatal(st)
	}
	if _, st := pl.Score(ctx, first, pod, nodeInfo("h100")); st.IsSuccess() || !strings.Contains(st.Message(), "not filtered in this cycle") {
		t.Fatalf("Score of a cycle whose record a clone's Filter replaced: %v", st)
	}
	// Filter runs again with the cycle's own state last (as the framework
	// does after a pass with nominated pods): its record is back.
	if st := pl.Filter(ctx, first, pod, nodeInfo("h100")); !st.IsSuccess() {
		t.Fatal(st)
	}
	if _, st := pl.Score(ctx, first, pod, nodeInfo("h100")); !st.IsSuccess() {
		t.Fatalf("Score after the cycle's own Filter ran last: %v", st)
	}
	// Reserve without a record of its own checks the node's current snapshot.
	other := cycle(t, pl, pod)
	if st := pl.Filter(ctx, other, pod, nodeInfo("h100")); !st.IsSuccess() {
		t.Fatal(st)
	}
	if st := pl.Reserve(ctx, first, pod, "h100"); !st.IsSuccess() {
		t.Fatalf("Reserve with the record taken by another cycle: %v", st)
	}
	if info, ok := c.Pod(pod.UID); !ok || len(info.Devices) != 1 {
		t.Fatalf("reserved %+v", info)
	}
}

// Opportunistic batching filters the previous pick with the cycle's own
// state and rescores it with a clone (the framework's rescoreHintedNode):
// the clone reads its origin's record and scores what Filter judged. A clone
// with a preemption overlay does not.
func TestCloneScoresWhatItsOriginFiltered(t *testing.T) {
	for _, strategy := range []string{"binpack", "fragmentation-aware"} {
		t.Run(strategy, func(t *testing.T) {
			args := testArgs(strategy)
			pl := newPlugin(t, testShared(newCache(t, h100), args), args, nil)
			ctx := context.Background()
			pod := gpuPod("p", map[string]int64{"nvidia.com/gpu": 1})
			cs := cycle(t, pl, pod)
			if st := pl.Filter(ctx, cs, pod, nodeInfo("h100")); !st.IsSuccess() {
				t.Fatal(st)
			}
			want, st := pl.Score(ctx, cs, pod, nodeInfo("h100"))
			if !st.IsSuccess() {
				t.Fatal(st)
			}
			rescore := cs.Clone()
			if st := pl.PreScore(ctx, rescore, pod, []fwk.NodeInfo{nodeInfo("h100")}); !st.IsSuccess() && !st.IsSkip() {
				t.Fatal(st)
			}
			got, st := pl.Score(ctx, rescore, pod, nodeInfo("h100"))
			if !st.IsSuccess() {
				t.Fatalf("Score with a clone of the cycle that filtered the node: %v", st)
			}
			if got != want {
				t.Errorf("clone scored %d, the cycle's own state %d", got, want)
			}
			// A clone of the clone still reads the cycle's record.
			if _, st := pl.Score(ctx, rescore.Clone(), pod, nodeInfo("h100")); !st.IsSuccess() {
				t.Fatalf("Score with a clone of a clone: %v", st)
			}

			overlaid := cs.Clone()
			pi, err := framework.NewPodInfo(gpuPod("nominated", map[string]int64{"nvidia.com/gpu": 1}))
			if err != nil {
				t.Fatal(err)
			}
			if st := pl.AddPod(ctx, overlaid, pod, pi, nodeInfo("h100")); !st.IsSuccess() {
				t.Fatal(st)
			}
			if _, st := pl.Score(ctx, overlaid, pod, nodeInfo("h100")); st.IsSuccess() || !strings.Contains(st.Message(), "not filtered in this cycle") {
				t.Fatalf("Score with an overlaid clone used the unoverlaid record: %v", st)
			}
		})
	}
}

// Nodes the cache knows nothing of (CPU-only nodes, nodes without an
// exporter) are rejected with the cache's reason and leave no slot behind.
func TestUnknownNodesGetNoSlot(t *testing.T) {
	args := testArgs("fragmentation-aware")
	c := newCache(t, h100)
	pl := newPlugin(t, testShared(c, args), args, nil)
	ctx := context.Background()
	pod := gpuPod("p", map[string]int64{"nvidia.com/gpu": 1})
	st := pl.Filter(ctx, cycle(t, pl, pod), pod, nodeInfo("cpu-only"))
	if st.Code() != fwk.UnschedulableAndUnresolvable || !strings.Contains(st.Message(), "no GPU topology published for node cpu-only") {
		t.Fatalf("Filter on an unknown node: %v", st)
	}
	cpuPod := gpuPod("web", nil)
	cs := framework.NewCycleState()
	if _, st := pl.PreFilter(ctx, cs, cpuPod, nil); !st.IsSkip() {
		t.Fatalf("PreFilter of a CPU-only pod: %v", st)
	}
	if score, st := pl.Score(ctx, cs, cpuPod, nodeInfo("cpu-only")); !st.IsSuccess() || score != 0 {
		t.Fatalf("Score of a CPU-only pod on an unknown node: %d, %v", score, st)
	}
	pl.memo.mu.RLock()
	_, kept := pl.memo.nodes["cpu-only"]
	pl.memo.mu.RUnlock()
	if kept {
		t.Error("a slot was made for a node the cache does not know")
	}
	if got := c.Nodes(); len(got) != 1 {
		t.Errorf("cache nodes %v, want only h100", got)
	}
}
