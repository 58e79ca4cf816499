package autoscale

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/gpuslice/gpuslice/pkg/autoscale/instancetypes"
	"github.com/gpuslice/gpuslice/pkg/autoscale/workload"
)

func builtinTypes(t *testing.T) *instancetypes.Set {
	t.Helper()
	set, err := instancetypes.Default()
	if err != nil {
		t.Fatal(err)
	}
	return set
}

func TestLowerBoundByHand(t *testing.T) {
	set := builtinTypes(t)
	p5, ok := set.Get("p5.48xlarge")
	g5, ok2 := set.Get("g5.12xlarge")
	if !ok || !ok2 || p5.Advertised["nvidia.com/gpu"] != 8 || g5.Advertised["nvidia.com/gpu.shared"] != 16 {
		t.Fatalf("built-in types changed: p5 %v, g5 %v", p5, g5)
	}
	h := time.Hour
	events := []workload.Event{
		// 3 whole GPUs (one p5) for 12 h, then 10 (two p5) for 6 h.
		{At: 0, Kind: workload.Inference, Name: "a", Action: workload.Create, Replicas: 3, Resource: "nvidia.com/gpu", Count: 1},
		{At: 6 * h, Kind: workload.Batch, Name: "j", Action: workload.Create, Replicas: 2, Resource: "nvidia.com/gpu.shared", Count: 1, RunFor: 4 * h},
		{At: 12 * h, Kind: workload.Inference, Name: "a", Action: workload.Scale, Replicas: 5},
		{At: 12 * h, Kind: workload.Inference, Name: "b", Action: workload.Create, Replicas: 5, Resource: "nvidia.com/gpu", Count: 1},
		{At: 18 * h, Kind: workload.Inference, Name: "a", Action: workload.Delete},
		// b's 5 GPUs keep one p5 until the end (24 h: day 20 h + tail 4 h).
	}
	b, err := LowerBound(set, events, 20*h, 4*h)
	if err != nil {
		t.Fatal(err)
	}
	// Scale 24/20: p5 1 node 0-12, 2 nodes 12-18, 1 node 18-24; g5 1 node 6-10.
	wantNodes := (12*1 + 6*2 + 6*1 + 4*1) * 24.0 / 20
	wantUSD := ((12+12+6)*p5.Price.USDPerHour + 4*g5.Price.USDPerHour) * 24 / 20
	if math.Abs(b.NodeHours-wantNodes) > 1e-9 || math.Abs(b.Dollars-wantUSD) > 1e-6 {
		t.Fatalf("bound %+v, want %.2f node-h and $%.2f", b, wantNodes, wantUSD)
	}

	// Nothing advertises it: an error naming the resource.
	_, err = LowerBound(set, []workload.Event{{Kind: workload.Batch, Name: "x", Action: workload.Create, Replicas: 1, Resource: "nvidia.com/mig-9g.1tb", Count: 1, RunFor: h}}, 20*h, 0)
	if err == nil || !strings.Contains(err.Error(), "nvidia.com/mig-9g.1tb") {
		t.Fatalf("unknown resource: %v", err)
	}
	if _, err := LowerBound(set, events, 0, 0); err == nil {
		t.Fatal("a zero day accepted")
	}
}

// On the demo's workload the bound is positive, and more demand never
// lowers it: the same workload with one more Job of 16 whole GPUs for an
// hour needs at least two more p5 node-hours.
func TestLowerBoundOfTheDemoWorkload(t *testing.T) {
	set := builtinTypes(t)
	day := 4 * time.Minute
	events, err := workload.Generate(workload.Default(42, day))
	if err != nil {
		t.Fatal(err)
	}
	b, err := LowerBound(set, events, day, 75*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if b.NodeHours <= 0 || b.Dollars <= 0 {
		t.Fatalf("bound %+v", b)
	}
	more := append(append([]workload.Event(nil), events...), workload.Event{At: day / 2, Kind: workload.Batch, Name: "extra", Action: workload.Create,
		Replicas: 16, Resource: "nvidia.com/gpu", Count: 1, RunFor: day / 24})
	b2, err := LowerBound(set, more, day, 75*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if b2.NodeHours < b.NodeHours+2-1e-9 {
		t.Fatalf("16 more whole GPUs for an hour: bound %.2f -> %.2f node-h, want at least 2 more", b.NodeHours, b2.NodeHours)
	}
	t.Logf("seed 42: lower bound %.1f GPU node-hours, $%.0f", b.NodeHours, b.Dollars)
}
