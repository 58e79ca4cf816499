package gpuslice

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"

	gpusliceapi "github.com/gpuslice/gpuslice/pkg/apis/gpuslice/v1alpha1"
	"github.com/gpuslice/gpuslice/pkg/assignment"
	"github.com/gpuslice/gpuslice/pkg/cache"
	"github.com/gpuslice/gpuslice/pkg/topology"
	"github.com/gpuslice/gpuslice/pkg/topology/fixtures"
)

var (
	a100 = fixtures.Spec{Name: "a100", Product: "NVIDIA A100-SXM4-40GB", GPUs: 1, MIG: []string{"1g.5gb", "1g.5gb", "2g.10gb", "3g.20gb"}}
	h100 = fixtures.Spec{Name: "h100", Product: "NVIDIA H100 80GB HBM3", GPUs: 2, Replicas: 4, Policy: topology.PolicyPacked}
)

func TestPreFilter(t *testing.T) {
	args := testArgs("binpack")
	pl := newPlugin(t, testShared(newCache(t, a100), args), args, nil)
	cs := framework.NewCycleState()
	cpuOnly := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "cpu", UID: "cpu"}, Spec: v1.PodSpec{Containers: []v1.Container{{Name: "c"}}}}
	if _, st := pl.PreFilter(context.Background(), cs, cpuOnly, nil); !st.IsSkip() {
		t.Fatalf("CPU-only pod: %v, want Skip", st)
	}
	if st := pl.PreScore(context.Background(), cs, cpuOnly, nil); !st.IsSkip() {
		t.Fatalf("CPU-only pod PreScore: %v, want Skip", st)
	}
	bad := gpuPod("bad", nil)
	bad.Spec.Containers[0].Resources.Limits = v1.ResourceList{"nvidia.com/gpu": resource.MustParse("500m")}
	_, st := pl.PreFilter(context.Background(), cs, bad, nil)
	if st.Code() != fwk.UnschedulableAndUnresolvable || !strings.Contains(st.Message(), "not a whole number") {
		t.Fatalf("fractional GPU: %v", st)
	}
	unknown := gpuPod("unknown", map[string]int64{"nvidia.com/mig-3g.41gb": 1})
	if _, st := pl.PreFilter(context.Background(), cs, unknown, nil); st.Code() != fwk.UnschedulableAndUnresolvable || !strings.Contains(st.Message(), `unknown MIG profile "3g.41gb"`) {
		t.Fatalf("unknown profile: %v", st)
	}
	cs = cycle(t, pl, gpuPod("ok", map[string]int64{"nvidia.com/mig-1g.5gb": 1}))
	s, err := getState(cs)
	if err != nil || s.req.Count("nvidia.com/mig-1g.5gb") != 1 {
		t.Fatalf("state %+v %v", s, err)
	}
}

func TestFilter(t *testing.T) {
	args := testArgs("binpack")
	c := newCache(t, a100, h100)
	stale := fixtures.Spec{Name: "stale", Product: "NVIDIA H100 80GB HBM3", GPUs: 1, Replicas: 4}
	c.SetTopology("stale", &cache.Topology{Node: fixtures.MustBuild(topology.NewCatalog(), stale), State: "Ready"})
	c.SetHeartbeat("stale", now.Add(-5*time.Minute))
	pl := newPlugin(t, testShared(c, args), args, nil)
	// Fill both 1g slices of the A100.
	for i := 0; i < 2; i++ {
		pod := gpuPod(fmt.Sprint("fill", i), map[string]int64{"nvidia.com/mig-1g.5gb": 1})
		cs := cycle(t, pl, pod)
		if st := pl.Filter(context.Background(), cs, pod, nodeInfo("a100")); !st.IsSuccess() {
			t.Fatal(st)
		}
		if st := pl.Reserve(context.Background(), cs, pod, "a100"); !st.IsSuccess() {
			t.Fatal(st)
		}
	}
	tests := []struct {
		name, node string
		res        map[string]int64
		code       fwk.Code
		msg        string
	}{
		{"fits", "a100", map[string]int64{"nvidia.com/mig-3g.20gb": 1}, fwk.Success, ""},
		{"slices in use", "a100", map[string]int64{"nvidia.com/mig-1g.5gb": 1}, fwk.Unschedulable, "gpuslice: no free nvidia.com/mig-1g.5gb: 2 of 2 in use"},
		{"profile not on node", "h100", map[string]int64{"nvidia.com/mig-1g.5gb": 1}, fwk.UnschedulableAndUnresolvable, "node offers no nvidia.com/mig-1g.5gb"},
		{"too many replicas", "h100", map[string]int64{"nvidia.com/gpu": 9}, fwk.UnschedulableAndUnresolvable, "exceeds the node's 8 healthy devices"},
		{"stale topology", "stale", map[string]int64{"nvidia.com/gpu": 1}, fwk.UnschedulableAndUnresolvable, "GPU topology of node stale is stale"},
		{"no topology", "cpu-node", map[string]int64{"nvidia.com/gpu": 1}, fwk.UnschedulableAndUnresolvable, "no GPU topology published for node cpu-node"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pod := gpuPod("p", tc.res)
			cs := cycle(t, pl, pod)
			st := pl.Filter(context.Background(), cs, pod, nodeInfo(tc.node))
			if st.Code() != tc.code || !strings.Contains(st.Message(), tc.msg) {
				t.Fatalf("Filter = %v %q, want %v %q", st.Code(), st.Message(), tc.code, tc.msg)
			}
		})
	}
}

func TestScoreAndNormalize(t *testing.T) {
	busy := fixtures.Spec{Name: "busy", Product: "NVIDIA H200", GPUs: 4}
	idle := fixtures.Spec{Name: "idle", Product: "NVIDIA H200", GPUs: 4}
	for _, strategy := range []string{"binpack", "spread"} {
		t.Run(strategy, func(t *testing.T) {
			args := testArgs(strategy)
			pl := newPlugin(t, testShared(newCache(t, busy, idle), args), args, nil)
			occupy := gpuPod("occupy", map[string]int64{"nvidia.com/gpu": 2})
			cs := cycle(t, pl, occupy)
			if st := pl.Filter(context.Background(), cs, occupy, nodeInfo("busy")); !st.IsSuccess() {
				t.Fatal(st)
			}
			if st := pl.Reserve(context.Background(), cs, occupy, "busy"); !st.IsSuccess() {
				t.Fatal(st)
			}
			pod := gpuPod("p", map[string]int64{"nvidia.com/gpu": 1})
			cs = cycle(t, pl, pod)
			var scores fwk.NodeScoreList
			for _, n := range []string{"busy", "idle"} {
				if st := pl.Filter(context.Background(), cs, pod, nodeInfo(n)); !st.IsSuccess() {
					t.Fatal(st)
				}
				s, st := pl.Score(context.Background(), cs, pod, nodeInfo(n))
				if !st.IsSuccess() {
					t.Fatal(st)
				}
				scores = append(scores, fwk.NodeScore{Name: n, Score: s})
			}
			if st := pl.NormalizeScore(context.Background(), cs, pod, scores); !st.IsSuccess() {
				t.Fatal(st)
			}
			want := map[string]int64{"busy": fwk.MaxNodeScore, "idle": 0}
			if strategy == "spread" {
				want = map[string]int64{"busy": 0, "idle": fwk.MaxNodeScore}
			}
			for _, s := range scores {
				if s.Score != want[s.Name] {
					t.Fatalf("%s scores %v, want %v", strategy, scores, want)
				}
			}
		})
	}
}

func TestReserveCommitsFilteredPlacementAndUnreserveReleases(t *testing.T) {
	args := testArgs("binpack")
	c := newCache(t, h100)
	pl := newPlugin(t, testShared(c, args), args, nil)
	// Opted in to several replicas of one GPU (the default refuses them).
	anyGPU := map[string]string{assignment.SharingAnnotation: "Any"}
	pod := gpuPod("p", map[string]int64{"nvidia.com/gpu": 3})
	pod.Annotations = anyGPU
	cs := cycle(t, pl, pod)
	if st := pl.Filter(context.Background(), cs, pod, nodeInfo("h100")); !st.IsSuccess() {
		t.Fatal(st)
	}
	s, _ := getState(cs)
	j, _ := pl.memo.slot(pl.shared.cache, "h100").judgedIn(s)
	snap := j.st
	want, _ := snap.Place(s.req)
	if st := pl.Reserve(context.Background(), cs, pod, "h100"); !st.IsSuccess() {
		t.Fatal(st)
	}
	info, ok := c.Pod(pod.UID)
	if !ok || info.Phase != cache.Assumed || fmt.Sprint(info.Devices) != fmt.Sprint(want.Devices()) {
		t.Fatalf("reserved %+v, Filter's placement %v", info, want.Devices())
	}
	// Packed policy: all three replicas on one GPU.
	base := map[string]bool{}
	for _, id := range info.Devices[0].DeviceIDs {
		b, _, _ := topology.SplitReplicaID(id)
		base[b] = true
	}
	if len(base) != 1 {
		t.Fatalf("packed prediction spans %d GPUs: %v", len(base), info.Devices)
	}
	pl.Unreserve(context.Background(), cs, pod, "h100")
	pl.Unreserve(context.Background(), cs, pod, "h100") // idempotent
	if _, ok := c.Pod(pod.UID); ok {
		t.Fatal("Unreserve kept the reservation")
	}
	// A device taken between Filter and Reserve (here by another profile
	// sharing the cache) makes Reserve fail.
	cs = cycle(t, pl, pod)
	if st := pl.Filter(context.Background(), cs, pod, nodeInfo("h100")); !st.IsSuccess() {
		t.Fatal(st)
	}
	other := newPlugin(t, pl.shared, args, nil)
	thief := gpuPod("thief", map[string]int64{"nvidia.com/gpu": 3})
	thief.Annotations = anyGPU
	tcs := cycle(t, other, thief)
	if st := other.Filter(context.Background(), tcs, thief, nodeInfo("h100")); !st.IsSuccess() {
		t.Fatal(st)
	}
	if st := other.Reserve(context.Background(), tcs, thief, "h100"); !st.IsSuccess() {
		t.Fatal(st)
	}
	if st := pl.Reserve(context.Background(), cs, pod, "h100"); st.Code() != fwk.Unschedulable || !strings.Contains(st.Message(), "already allocated") {
		t.Fatalf("Reserve after the devices were taken: %v", st)
	}
}

// TestConcurrentReserve races Reserve of many pods that all filtered the
// same node snapshot; run under -race. No device is reserved twice.
func TestConcurrentReserve(t *testing.T) {
	args := testArgs("binpack")
	const pods = 40
	race := func(t *testing.T, pls []*Plugin) (ok int) {
		t.Helper()
		states := make([]*framework.CycleState, pods)
		podObjs := make([]*v1.Pod, pods)
		for i := range states {
			pl := pls[i%len(pls)]
			podObjs[i] = gpuPod(fmt.Sprint("p", i), map[string]int64{"nvidia.com/gpu": 1})
			states[i] = cycle(t, pl, podObjs[i])
			if st := pl.Filter(context.Background(), states[i], podObjs[i], nodeInfo("n")); !st.IsSuccess() {
				t.Fatal(st)
			}
		}
		var wg sync.WaitGroup
		results := make([]bool, pods)
		for i := range states {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				results[i] = pls[i%len(pls)].Reserve(context.Background(), states[i], podObjs[i], "n").IsSuccess()
			}(i)
		}
		wg.Wait()
		seen := map[string]types.UID{}
		for i, r := range results {
			if !r {
				continue
			}
			ok++
			info, _ := pls[0].shared.cache.Pod(podObjs[i].UID)
			for _, id := range info.Devices[0].DeviceIDs {
				if other, dup := seen[id]; dup {
					t.Fatalf("device %s reserved for %s and %s", id, other, podObjs[i].UID)
				}
				seen[id] = podObjs[i].UID
			}
		}
		return ok
	}
	node := fixtures.Spec{Name: "n", Product: "NVIDIA H100 80GB HBM3", GPUs: 4, Replicas: 4}
	t.Run("one snapshot", func(t *testing.T) {
		// Every cycle (one per profile, all sharing the cache) keeps the
		// empty snapshot its Filter judged and predicts the same device, so
		// only the first Reserve can commit it.
		shared := testShared(newCache(t, node), args)
		pls := make([]*Plugin, pods)
		for i := range pls {
			pls[i] = newPlugin(t, shared, args, nil)
		}
		if ok := race(t, pls); ok != 1 {
			t.Fatalf("%d of %d racing reservations of the same predicted device succeeded", ok, pods)
		}
	})
	t.Run("one profile", func(t *testing.T) {
		// Interleaved cycles of one profile (the scheduler runs them one at
		// a time; this is a stress test): a cycle whose record a later
		// cycle's Filter replaced places on the node's current snapshot.
		shared := testShared(newCache(t, node), args)
		ok := race(t, []*Plugin{newPlugin(t, shared, args, nil)})
		if ok < 1 || ok > 16 {
			t.Fatalf("%d of %d racing reservations succeeded on a node of 16 replicas", ok, pods)
		}
	})
}

func TestPreBindPatchesAssignmentOnce(t *testing.T) {
	args := testArgs("binpack")
	pod := gpuPod("p", map[string]int64{"nvidia.com/mig-3g.20gb": 1})
	client := fake.NewSimpleClientset(pod)
	pl := newPlugin(t, testShared(newCache(t, a100), args), args, client)
	cs := cycle(t, pl, pod)
	if _, st := pl.PreBindPreFlight(context.Background(), cs, pod, "a100"); !st.IsSkip() {
		t.Fatalf("PreBindPreFlight before Reserve: %v", st)
	}
	if st := pl.Filter(context.Background(), cs, pod, nodeInfo("a100")); !st.IsSuccess() {
		t.Fatal(st)
	}
	if st := pl.Reserve(context.Background(), cs, pod, "a100"); !st.IsSuccess() {
		t.Fatal(st)
	}
	if r, st := pl.PreBindPreFlight(context.Background(), cs, pod, "a100"); !st.IsSuccess() || r == nil || !r.AllowParallel {
		t.Fatalf("PreBindPreFlight: %v %v", r, st)
	}
	for i := 0; i < 2; i++ {
		if st := pl.PreBind(context.Background(), cs, pod, "a100"); !st.IsSuccess() {
			t.Fatal(st)
		}
	}
	got, err := client.CoreV1().Pods("default").Get(context.Background(), "p", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	a, err := assignment.FromPod(got)
	if err != nil || a == nil || a.Node != "a100" || len(a.Containers) != 1 || a.Containers[0].Devices[0].Resource != "nvidia.com/mig-3g.20gb" {
		t.Fatalf("assignment %+v %v", a, err)
	}
	info, _ := pl.shared.cache.Pod(pod.UID)
	if a.Containers[0].Devices[0].DeviceIDs[0] != info.Devices[0].DeviceIDs[0] {
		t.Fatalf("annotation %v differs from reservation %v", a.Containers[0].Devices, info.Devices)
	}
	if len(got.Annotations) != 1 {
		t.Fatalf("annotations %v: gpuslice writes exactly one", got.Annotations)
	}
}

func TestSignPod(t *testing.T) {
	args := testArgs("binpack")
	pl := newPlugin(t, testShared(newCache(t), args), args, nil)
	a, _ := pl.SignPod(context.Background(), gpuPod("a", map[string]int64{"nvidia.com/gpu": 1}))
	b, _ := pl.SignPod(context.Background(), gpuPod("b", map[string]int64{"nvidia.com/gpu": 1}))
	c, _ := pl.SignPod(context.Background(), gpuPod("c", map[string]int64{"nvidia.com/gpu": 2}))
	if fmt.Sprint(a) != fmt.Sprint(b) || fmt.Sprint(a) == fmt.Sprint(c) {
		t.Fatalf("signatures a=%v b=%v c=%v", a, b, c)
	}
}

func TestNewRejectsInvalidArgsAndMismatchedProfiles(t *testing.T) {
	args := testArgs("binpack")
	shared := testShared(newCache(t), args)
	bad := testArgs("most-allocated")
	if _, err := shared.New(context.Background(), bad, nil); err == nil || !strings.Contains(err.Error(), "scoringStrategy.type") {
		t.Fatalf("invalid strategy: %v", err)
	}
	other := testArgs("spread")
	other.LeaseNamespace = "elsewhere"
	if _, err := shared.New(context.Background(), other, nil); err == nil || !strings.Contains(err.Error(), "leaseNamespace") {
		t.Fatalf("mismatched profile: %v", err)
	}
}

func TestInformerHandlersUnwrapTombstones(t *testing.T) {
	args := testArgs("binpack")
	c := newCache(t, h100)
	s := testShared(c, args)
	pod := gpuPod("p", map[string]int64{"nvidia.com/gpu": 1})
	pod.Spec.NodeName = "h100"
	s.onPod(klog.Background(), pod)
	if _, ok := c.Pod(pod.UID); !ok {
		t.Fatal("bound pod not tracked")
	}
	s.onPodDelete(toolscache.DeletedFinalStateUnknown{Key: "default/p", Obj: pod})
	if _, ok := c.Pod(pod.UID); ok {
		t.Fatal("tombstoned pod still tracked")
	}
	s.onPodDelete("not a pod") // ignored, no panic
	gn := &gpusliceapi.GPUNode{ObjectMeta: metav1.ObjectMeta{Name: "h100"}}
	s.onGPUNodeDelete(toolscache.DeletedFinalStateUnknown{Key: "h100", Obj: gn})
	if v := c.View("h100"); v.Freshness.Usable {
		t.Fatal("deleted GPUNode still usable")
	}
}
