package openb

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"testing"

	"github.com/gpuslice/gpuslice/pkg/sim"
)

func shippedProfile(t testing.TB, name string) Factory {
	t.Helper()
	cfg, err := sim.LoadConfigMapFile(filepath.Join("..", "..", "..", "manifests", "scheduler", "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	prof, err := sim.Profile(cfg, name)
	if err != nil {
		t.Fatal(err)
	}
	return FrameworkFactory(name, prof)
}

func TestReplaySmallShipped(t *testing.T) {
	nodes := []Node{
		{Name: "n1", CPUMilli: 64000, MemMiB: 262144, GPUs: 2, Model: "T4"},
		{Name: "n2", CPUMilli: 64000, MemMiB: 262144, GPUs: 2, Model: "T4"},
		{Name: "n3", CPUMilli: 96000, MemMiB: 524288, GPUs: 8, Model: "V100M32"},
	}
	pods := []Pod{
		{Name: "a", CPUMilli: 4000, MemMiB: 8192, NumGPU: 1, GPUMilli: 500},
		{Name: "b", CPUMilli: 4000, MemMiB: 8192, NumGPU: 1, GPUMilli: 500},
		{Name: "c", CPUMilli: 8000, MemMiB: 8192, NumGPU: 2, GPUMilli: 1000},
		{Name: "d", CPUMilli: 1000, MemMiB: 1024},
		{Name: "e", CPUMilli: 4000, MemMiB: 8192, NumGPU: 1, GPUMilli: 1000, Models: []string{"T4"}},
	}
	run, err := Replay(context.Background(), shippedProfile(t, "gpuslice-binpack"), ReplayOptions{Nodes: nodes, Pods: pods, Seed: 42, Tune: 1.3, Step: 10})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v sim %+v", run.Points[len(run.Points)-1], *run.Sim)
	if run.Sim.Mispredicted != 0 {
		t.Errorf("%d mispredicted", run.Sim.Mispredicted)
	}
}

// The breakdown at 100 % arrived accounts for the capacity: what failed
// pods asked for and what sits idle add up to the unallocated GPU, and
// each idle GPU is counted once.
func TestBreakdownAccountsForTheCapacity(t *testing.T) {
	nodes := []Node{
		{Name: "a", CPUMilli: 16000, MemMiB: 65536, GPUs: 2, Model: "T4"},
		{Name: "b", CPUMilli: 2000, MemMiB: 65536, GPUs: 2, Model: "T4"},
	}
	var pods []Pod
	for i := 0; i < 40; i++ {
		p := Pod{Name: fmt.Sprintf("p%02d", i), CPUMilli: int64(500 + 1500*(i%3)), MemMiB: 1024, NumGPU: 1, GPUMilli: []int64{300, 1000, 600}[i%3]}
		if i%9 == 0 {
			p.NumGPU, p.GPUMilli = 2, 1000
		}
		pods = append(pods, p)
	}
	for _, f := range Baselines() {
		run, err := Replay(context.Background(), f, ReplayOptions{Nodes: nodes, Pods: pods, Seed: 7, Tune: 1.3, Step: 1})
		if err != nil {
			t.Fatal(err)
		}
		b := run.Breakdown
		if b == nil {
			t.Fatalf("%s: no breakdown", f.Name)
		}
		idle := b.Slivers + b.CPUBound + b.Partial + b.Whole
		unalloc, _ := run.At(100)
		if got := 100 * idle / 4; math.Abs(got-unalloc) > 1e-6 {
			t.Errorf("%s: idle %.3f GPUs is %.3f %% of 4, unallocated %.3f %%", f.Name, idle, got, unalloc)
		}
		failed := 0.0
		for _, g := range b.FailedGPUs {
			failed += g
		}
		// The pods that arrived until 100 % asked for the capacity and at
		// most the last pod's request (2 GPUs) more: idle = capacity -
		// (arrived - failed).
		if over := failed - idle; over < -1e-9 || over > 2+1e-9 {
			t.Errorf("%s: %.2f GPUs idle, failed pods asked for %.2f", f.Name, idle, failed)
		}
	}
}

func TestObserveIdle(t *testing.T) {
	c, err := NewCluster([]Node{
		{Name: "cpu-bound", CPUMilli: 8000, MemMiB: 1024, GPUs: 2, Model: "T4"},
		{Name: "ok", CPUMilli: 8000, MemMiB: 1024, GPUs: 4, Model: "T4"},
	})
	if err != nil {
		t.Fatal(err)
	}
	must := func(p Pod, node int, gpus ...int) {
		t.Helper()
		if err := c.Bind(&p, node, gpus); err != nil {
			t.Fatal(err)
		}
	}
	must(Pod{Name: "hog", CPUMilli: 6000, NumGPU: 1, GPUMilli: 850}, 0, 0)
	must(Pod{Name: "half", CPUMilli: 1000, NumGPU: 1, GPUMilli: 500}, 1, 2)
	must(Pod{Name: "whole", CPUMilli: 1000, NumGPU: 1, GPUMilli: 1000}, 1, 0)
	must(Pod{Name: "big", CPUMilli: 1000, NumGPU: 1, GPUMilli: 850}, 1, 1)
	var b Breakdown
	b.observeIdle(c)
	// cpu-bound (2 cores free): a 0.15 sliver, which counts as a sliver
	// there too, and 1 whole GPU; ok: a 0.15 sliver, 0.5 partial, 1 whole.
	want := Breakdown{Slivers: 0.3, CPUBound: 1, Partial: 0.5, Whole: 1}
	if b.Slivers != want.Slivers || b.CPUBound != want.CPUBound || b.Partial != want.Partial || b.Whole != want.Whole {
		t.Fatalf("idle %+v, want %+v", b, want)
	}
	b.observeFailure(&Pod{Name: "cpu", CPUMilli: 1000})
	b.observeFailure(&Pod{Name: "eight", NumGPU: 8, GPUMilli: 1000})
	b.observeFailure(&Pod{Name: "sliver", NumGPU: 1, GPUMilli: 300})
	if b.FailedCPUOnly != 1 || b.FailedGPUs["8"] != 8 || b.FailedGPUs["share"] != 0.3 {
		t.Fatalf("failures %+v", b)
	}
}
