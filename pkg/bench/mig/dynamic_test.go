package mig

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gpuslice/gpuslice/pkg/allocator"
	"github.com/gpuslice/gpuslice/pkg/repartition"
	"github.com/gpuslice/gpuslice/pkg/sim"
	"github.com/gpuslice/gpuslice/pkg/topology"
	"github.com/gpuslice/gpuslice/pkg/topology/fixtures"
)

// Two H100 nodes cut into 1g slices; demand moves from 1g to 3g pods. The
// static layout serves no 3g pod; the planners rebuild idle GPUs for them
// (RunDynamic fails if a rebuilt GPU held a device).
func TestRunDynamicSmall(t *testing.T) {
	ctx := context.Background()
	cat := topology.NewCatalog()
	ones := []string{"1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb"}
	cluster := ClusterSpec{Policy: topology.PolicyDistributed, Groups: []NodeGroup{
		{Prefix: "h100", Count: 2, Product: h100Product, GPUs: 8, Layout: "all-1g.10gb", Profiles: ones, CPUMilli: h100CPUMilli, MemoryGiB: h100MemGiB, Pods: maxPods},
	}}
	var classes []DynClass
	for _, c := range DynamicClasses() {
		if c.Name == "h100-1g" || c.Name == "h100-3g" {
			classes = append(classes, c)
		}
	}
	phases := []Phase{{Name: "1g", Weights: map[string]int{"h100-1g": 1}}, {Name: "3g", Weights: map[string]int{"h100-3g": 1}}}
	arr, err := dynWorkload(cat, classes, phases, 0.5, 16, 90*time.Minute, 3)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := sim.LoadConfigMapFile(schedulerConfig)
	if err != nil {
		t.Fatal(err)
	}
	prof, err := sim.Profile(cfg, PolicyFragmentation)
	if err != nil {
		t.Fatal(err)
	}
	pc := repartition.DefaultConfig()
	pc.MinGPUInterval, pc.MinDemandAge = 10*time.Minute, time.Minute
	base := DynOptions{Cluster: cluster, Profile: prof, Load: 0.5, Seed: 3, PhaseLen: 90 * time.Minute, Patience: 20 * time.Minute,
		Window: time.Minute, Reconfig: 3 * time.Minute, Planner: pc, MixHalfLife: 50}
	results := map[string]*DynResult{}
	for _, layout := range []string{LayoutStatic, LayoutFirstFit, LayoutDynamic} {
		o := base
		o.Layout = layout
		// Each run gets its own pod objects.
		a, _ := dynWorkload(cat, classes, phases, 0.5, 16, 90*time.Minute, 3)
		r, err := RunDynamic(ctx, o, a)
		if err != nil {
			t.Fatalf("%s: %v", layout, err)
		}
		results[layout] = r
		if r.Placed+r.Withdrawn+r.Pending != len(arr) {
			t.Errorf("%s: placed %d + withdrawn %d + pending %d != %d pods", layout, r.Placed, r.Withdrawn, r.Pending, len(arr))
		}
		t.Logf("%s: placed %d of %d (by phase %v of %v), rebuilt %d GPUs in %d runs, wait p50 %.0fs p99 %.0fs, busy GPU-h %.1f",
			layout, r.Placed, r.Pods, r.PlacedByPhase, r.ArrivedByPhase, r.Reconfigurations, r.NodeRuns, r.WaitP50, r.WaitP99, r.BusyGPUHours)
	}
	st := results[LayoutStatic]
	if st.PlacedByPhase[1] != 0 || st.Reconfigurations != 0 {
		t.Fatalf("static 1g layout placed %d 3g pods, rebuilt %d GPUs", st.PlacedByPhase[1], st.Reconfigurations)
	}
	for _, l := range []string{LayoutFirstFit, LayoutDynamic} {
		r := results[l]
		if r.Reconfigurations == 0 || r.PlacedByPhase[1] < r.ArrivedByPhase[1]/2 {
			t.Errorf("%s: %d of %d 3g pods placed after %d rebuilds", l, r.PlacedByPhase[1], r.ArrivedByPhase[1], r.Reconfigurations)
		}
		if r.Placed <= st.Placed {
			t.Errorf("%s placed %d, static %d", l, r.Placed, st.Placed)
		}
	}
	if _, err := RunDynamic(ctx, DynOptions{Layout: "best", Cluster: cluster, Profile: prof}, nil); err == nil || !strings.Contains(err.Error(), "unknown layout policy") {
		t.Fatalf("unknown layout policy: %v", err)
	}
}

func TestDynWorkloadLoad(t *testing.T) {
	cat := topology.NewCatalog()
	classes := DynamicClasses()
	arr, err := dynWorkload(cat, classes, DynamicPhases(), 1, 128, 3*time.Hour, 1)
	if err != nil {
		t.Fatal(err)
	}
	// Offered GPU-equivalent hours per hour over 128 GPUs is about 1.
	work := 0.0
	for _, a := range arr {
		work += classSize(cat, &a.class.Class) * a.run.Hours()
	}
	if load := work / 12 / 128; load < 0.85 || load > 1.15 {
		t.Fatalf("offered load %.2f, want about 1", load)
	}
	for i := 1; i < len(arr); i++ {
		if arr[i].at < arr[i-1].at {
			t.Fatal("arrivals out of order")
		}
	}
	if _, err := dynWorkload(cat, classes, []Phase{{Name: "x", Weights: map[string]int{"nope": 1}}}, 1, 8, time.Hour, 1); err == nil {
		t.Fatal("unknown class accepted")
	}
}

// Inference returns to a node cut into 3g slices while 3g pods still
// trickle in, so its GPUs never empty by themselves: with drains the
// planner drains busy GPUs and rebuilds them once their pods end, and no
// admitted pod ever gets a device of a drained GPU (RunDynamic fails if
// one does).
func TestRunDynamicDrains(t *testing.T) {
	ctx := context.Background()
	cat := topology.NewCatalog()
	threes := []string{"3g.40gb", "3g.40gb"}
	cluster := ClusterSpec{Policy: topology.PolicyDistributed, Groups: []NodeGroup{
		{Prefix: "h100", Count: 2, Product: h100Product, GPUs: 8, Layout: "all-3g.40gb", Profiles: threes, CPUMilli: h100CPUMilli, MemoryGiB: h100MemGiB, Pods: maxPods},
	}}
	var classes []DynClass
	for _, c := range DynamicClasses() {
		if c.Name == "h100-1g" || c.Name == "h100-3g" {
			classes = append(classes, c)
		}
	}
	phases := []Phase{{Name: "3g", Weights: map[string]int{"h100-3g": 1}}, {Name: "mostly 1g", Weights: map[string]int{"h100-1g": 9, "h100-3g": 1}}}
	cfg, err := sim.LoadConfigMapFile(schedulerConfig)
	if err != nil {
		t.Fatal(err)
	}
	prof, err := sim.Profile(cfg, PolicyFragmentation)
	if err != nil {
		t.Fatal(err)
	}
	run := func(drains int) *DynResult {
		pc := repartition.DefaultConfig()
		pc.MinGPUInterval, pc.MinDemandAge = 10*time.Minute, time.Minute
		pc.MaxDrainingGPUs, pc.DrainAfter, pc.MaxDrainTime, pc.DrainMinGain = drains, 5*time.Minute, 2*time.Hour, 0
		o := DynOptions{Layout: LayoutDynamic, Cluster: cluster, Profile: prof, Load: 1.1, Seed: 5, PhaseLen: 3 * time.Hour, Patience: 30 * time.Minute,
			Window: time.Minute, Reconfig: 3 * time.Minute, Planner: pc, MixHalfLife: 50}
		a, err := dynWorkload(cat, classes, phases, o.Load, 16, o.PhaseLen, o.Seed)
		if err != nil {
			t.Fatal(err)
		}
		r, err := RunDynamic(ctx, o, a)
		if err != nil {
			t.Fatalf("drains %d: %v", drains, err)
		}
		if r.Placed+r.Withdrawn+r.Pending != len(a) {
			t.Errorf("drains %d: placed %d + withdrawn %d + pending %d != %d pods", drains, r.Placed, r.Withdrawn, r.Pending, len(a))
		}
		t.Logf("max draining GPUs %d: placed %d of %d (by phase %v of %v), %d drains, rebuilt %d GPUs", drains, r.Placed, r.Pods, r.PlacedByPhase, r.ArrivedByPhase, r.Drains, r.Reconfigurations)
		return r
	}
	off, on := run(0), run(4)
	if off.Drains != 0 {
		t.Errorf("drains off, yet %d drains", off.Drains)
	}
	if on.Drains == 0 || on.Reconfigurations == 0 {
		t.Errorf("drains on: %d drains, %d GPUs rebuilt", on.Drains, on.Reconfigurations)
	}
	// Here, unlike the benchmark's mix, the 3g pods' trickle keeps every
	// 3g GPU busy: only drains give the 1g pods room.
	if on.PlacedByPhase[1] <= off.PlacedByPhase[1] {
		t.Errorf("second phase: %d pods placed with drains, %d without", on.PlacedByPhase[1], off.PlacedByPhase[1])
	}
}

func TestOnGPUs(t *testing.T) {
	topo := fixtures.MustBuild(topology.NewCatalog(), fixtures.Spec{Name: "n", Product: "NVIDIA H100 80GB HBM3", GPUs: 2, MIG: []string{"3g.40gb", "3g.40gb"}})
	dev := []allocator.ResourceDevices{{Resource: "nvidia.com/mig-3g.40gb", DeviceIDs: []string{topo.GPUs[1].Instances[0].DeviceID}}}
	if g, ok := onGPUs(topo, dev, []int{1}); !ok || g != 1 {
		t.Errorf("device of GPU 1, drained 1: %d %v", g, ok)
	}
	if _, ok := onGPUs(topo, dev, []int{0}); ok {
		t.Error("device of GPU 1 reported on drained GPU 0")
	}
	if _, ok := onGPUs(topo, dev, nil); ok {
		t.Error("no drain, yet reported")
	}
}
