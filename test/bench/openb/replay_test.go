package openb

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/gpuslice/gpuslice/test/bench/sim"
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
