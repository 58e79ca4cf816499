package mig

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gpuslice/gpuslice/pkg/repartition"
	"github.com/gpuslice/gpuslice/pkg/sim"
	"github.com/gpuslice/gpuslice/pkg/topology"
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
