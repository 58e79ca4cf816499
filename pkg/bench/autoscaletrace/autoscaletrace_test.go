package autoscaletrace

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/gpuslice/gpuslice/pkg/autoscale/workload"
	"github.com/gpuslice/gpuslice/pkg/bench/openb"
	"github.com/gpuslice/gpuslice/pkg/sim/autoscaler"
	"github.com/gpuslice/gpuslice/pkg/topology"
)

// smallTrace is a seeded trace of n pods over a few hours: sharing pods,
// whole GPUs, a few 4- and 8-GPU pods and CPU-only pods, lives of seconds
// to hours, some never started in production.
func smallTrace(n int, seed uint64) []openb.TimedPod {
	rng := rand.New(rand.NewPCG(seed, 1))
	shares := []int64{810, 470, 320, 650, 230, 460}
	var out []openb.TimedPod
	for i := 0; i < n; i++ {
		p := openb.Pod{Name: fmt.Sprintf("pod-%03d", i), CPUMilli: int64(1+rng.IntN(16)) * 1000, MemMiB: int64(1+rng.IntN(32)) * 1024}
		switch r := rng.IntN(10); {
		case r < 4:
			p.NumGPU, p.GPUMilli = 1, shares[rng.IntN(len(shares))]
		case r < 7:
			p.NumGPU, p.GPUMilli = 1, 1000
		case r < 8:
			p.NumGPU, p.GPUMilli = []int{2, 4, 8}[rng.IntN(3)], 1000
		}
		created := int64(rng.IntN(4 * 3600))
		life := int64(rng.ExpFloat64() * 1800)
		tp := openb.TimedPod{Pod: p, Created: created, Deleted: created + life, Scheduled: created}
		if rng.IntN(10) == 0 {
			tp.Scheduled = -1
		}
		out = append(out, tp)
	}
	return out
}

func smallNodes() []openb.Node {
	return []openb.Node{
		{Name: "n0", CPUMilli: 96000, MemMiB: 393216, GPUs: 8, Model: "G2"},
		{Name: "n1", CPUMilli: 104000, MemMiB: 524288, GPUs: 2, Model: "T4"},
		{Name: "n2", CPUMilli: 16000, MemMiB: 122880, GPUs: 2, Model: "P100"},
		{Name: "n3", CPUMilli: 32000, MemMiB: 131072, GPUs: 4, Model: "V100M16"},
	}
}

// A small trace under each kind of policy: every pod is placed or reported
// failed, node-hours are the integral of the node count, the books of each
// placer hold (checked by Run: no device or share counted twice, pkg/sim's
// kubelet refuses double booking), gpuslice's reservations equal the
// kubelet's picks, and with consolidateAfter 0 every node is gone once the
// trace is over.
func TestTraceReplayInvariants(t *testing.T) {
	ctx := context.Background()
	nodes := smallNodes()
	its, shapes, err := TraceTypes(nodes)
	if err != nil {
		t.Fatal(err)
	}
	if len(its) != len(nodes) {
		t.Fatalf("%d types from %d distinct shapes", len(its), len(nodes))
	}
	pods := smallTrace(120, 7)
	actions, end, err := TraceActions(pods, TraceOptions{Speedup: 1, Every: 1})
	if err != nil {
		t.Fatal(err)
	}
	if end != 0 || len(actions) != len(pods) {
		t.Fatalf("%d actions, end %s", len(actions), end)
	}
	all := make([]openb.Pod, len(pods))
	for i := range pods {
		all[i] = pods[i].Pod
	}
	cfg := autoscaler.Config{NodePools: []autoscaler.NodePool{{Name: "openb", Types: its}}, LaunchDelay: 90 * time.Second, TerminationDelay: 7 * time.Second}
	schedCfg := filepath.Join("..", "..", "..", "manifests", "scheduler", "config.yaml")
	for _, name := range []string{"gpuslice-fragmentation-aware", "kube-LeastAllocated", "FGD"} {
		pl, err := tracePlacer(ctx, name, schedCfg, shapes, all, 1)
		if err != nil {
			t.Fatal(err)
		}
		r, err := Run(ctx, pl, actions, Options{
			Autoscaler: cfg, Tail: 10 * time.Minute, Scale: 1, SampleEvery: time.Second,
			GPUWeight: map[string]float64{topology.ResourceGPU: 0.001},
		})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		t.Logf("%s: %.2f node-h, %d launched, peak %d, %d placed, %d failed, %d rejected", name, r.NodeHours, r.Launched, r.PeakNodes, r.Placed, r.Failed, r.Rejections)
		if r.Pods != len(pods) || r.Placed+r.Failed != r.Pods || r.Withdrawn != 0 || r.Placed == 0 {
			t.Errorf("%s: %d pods: %d placed, %d failed, %d withdrawn", name, r.Pods, r.Placed, r.Failed, r.Withdrawn)
		}
		integral := 0.0
		for _, s := range r.Series {
			integral += s[1] / 3600 // one-second samples
		}
		// Sampling at whole seconds misses at most a second per change.
		if tol := float64(2*r.Launched) / 3600; math.Abs(r.NodeHours-integral) > tol+1e-9 {
			t.Errorf("%s: %.4f node-hours, the node count integrates to %.4f", name, r.NodeHours, integral)
		}
		if r.Launched == 0 || r.PeakNodes == 0 || r.NodesAtEnd != 0 {
			t.Errorf("%s: launched %d, peak %d, %d nodes left after the tail", name, r.Launched, r.PeakNodes, r.NodesAtEnd)
		}
		if r.Mispredicted != 0 {
			t.Errorf("%s: %d reservations differ from the kubelet's pick", name, r.Mispredicted)
		}
		if r.BusyGPUHours <= 0 || r.BusyGPUHours > r.GPUHours {
			t.Errorf("%s: pods held %.1f GPU-hours of %.1f provisioned", name, r.BusyGPUHours, r.GPUHours)
		}
	}
}

// A pod that lives shorter than a node takes to launch fails when nothing
// runs; the window and subsampling options keep what they say.
func TestTraceActionsWindow(t *testing.T) {
	pods := []openb.TimedPod{
		{Pod: openb.Pod{Name: "early", CPUMilli: 1000, MemMiB: 1024}, Created: 0, Deleted: 100, Scheduled: 0},
		{Pod: openb.Pod{Name: "across", CPUMilli: 1000, MemMiB: 1024}, Created: 50, Deleted: 5000, Scheduled: 60},
		{Pod: openb.Pod{Name: "late", CPUMilli: 1000, MemMiB: 1024}, Created: 9000, Deleted: 9500, Scheduled: -1},
	}
	acts, end, err := TraceActions(pods, TraceOptions{From: 200 * time.Second, To: 8000 * time.Second, Speedup: 1, Every: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(acts) != 1 || acts[0].Create.ID != "across" || acts[0].At != 200*time.Second || acts[0].Create.RunFor != 4800*time.Second || end != 8000*time.Second {
		t.Fatalf("window: %+v end %s", acts, end)
	}
	acts, _, err = TraceActions(pods, TraceOptions{Speedup: 10, Every: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(acts) != 2 || acts[1].Create.ID != "late" || acts[1].At != 900*time.Second || acts[1].Create.RunFor != 50*time.Second {
		t.Fatalf("speedup/every: %+v", acts)
	}
	for _, o := range []TraceOptions{{Speedup: 0, Every: 1}, {Speedup: 1, Every: 0}, {Speedup: 1, Every: 1, From: time.Hour, To: time.Minute}} {
		if _, _, err := TraceActions(pods, o); err == nil {
			t.Errorf("%+v: no error", o)
		}
	}
}

// fakePlacer places every pod on the node named in its ID's map and knows
// node fills, for the ReplicaSet's victim choice.
type fakePlacer struct {
	fill map[string]float64
}

func (f *fakePlacer) Name() string { return "fake" }
func (f *fakePlacer) Place(context.Context, *PodSpec) (string, Outcome, error) {
	return "", Unschedulable, nil
}
func (f *fakePlacer) Remove(*PodSpec) error                          { return nil }
func (f *fakePlacer) AddNode(string, *autoscaler.InstanceType) error { return nil }
func (f *fakePlacer) RemoveNode(string) error                        { return nil }
func (f *fakePlacer) Fill(n string) float64                          { return f.fill[n] }
func (f *fakePlacer) Check() error                                   { return nil }
func (f *fakePlacer) Mispredicted() int                              { return 0 }

// Scale-down victims are ranked as kube-controller-manager ranks them:
// unscheduled first; then, with deletion costs, pods on the least-filled
// nodes; then pods doubled up on a node; then the newest.
func TestScaleDownVictims(t *testing.T) {
	mk := func(id, node string, started time.Duration, seq int) *podState {
		return &podState{spec: &PodSpec{ID: id, Group: "g"}, node: node, started: started, pending: node == "", seq: seq}
	}
	pods := []*podState{
		mk("a1", "a", 1, 1), mk("a2", "a", 2, 2), mk("b1", "b", 3, 3), mk("c1", "c", 4, 4), mk("pending", "", 0, 5),
	}
	fill := map[string]float64{"a": 0.9, "b": 0.2, "c": 0.6}
	for _, tc := range []struct {
		cost bool
		want []string
	}{
		// Without costs: pending, then the doubled-up node a (newer first), then newer.
		{false, []string{"pending", "a2", "a1", "c1", "b1"}},
		// With costs: pending, then by fill (b 200, c 600, a 900), doubled-up a newer first.
		{true, []string{"pending", "b1", "c1", "a2", "a1"}},
	} {
		e := &engine{o: Options{DeletionCost: tc.cost}, pl: &fakePlacer{fill: fill}, groups: map[string][]*podState{"g": pods}}
		got := e.victims("g", len(pods))
		var ids []string
		for _, p := range got {
			ids = append(ids, p.spec.ID)
		}
		if fmt.Sprint(ids) != fmt.Sprint(tc.want) {
			t.Errorf("deletion cost %v: victims %v, want %v", tc.cost, ids, tc.want)
		}
		if n := len(e.victims("g", 2)); n != 2 {
			t.Errorf("asked for 2 victims, got %d", n)
		}
	}
}

// The bench's workload becomes actions whose Deployments end at the
// replicas the events last set.
func TestWorkloadActionsKeepReplicas(t *testing.T) {
	events, err := workload.Generate(workload.Default(42, 4*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	acts, err := WorkloadActions(events)
	if err != nil {
		t.Fatal(err)
	}
	size := map[string]int{}
	for _, a := range acts {
		switch {
		case a.Create != nil && a.Create.Group != "":
			size[a.Create.Group]++
		case a.ScaleDown != "":
			size[a.ScaleDown] -= a.Count
		case a.DeleteGroup != "":
			delete(size, a.DeleteGroup)
		}
	}
	want := map[string]int{}
	for _, ev := range events {
		switch ev.Action {
		case workload.Create, workload.Scale:
			if ev.Kind != workload.Batch {
				want[ev.Name] = ev.Replicas
			}
		case workload.Delete:
			delete(want, ev.Name)
		}
	}
	if fmt.Sprint(size) != fmt.Sprint(want) {
		t.Errorf("replicas after the actions %v, want %v", size, want)
	}
	if _, err := WorkloadActions([]workload.Event{{Name: "x", Action: workload.Scale, Replicas: 2}}); err == nil {
		t.Error("a scale before its creation gave no error")
	}
}
