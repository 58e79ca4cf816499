package gpuslice

import (
	"math"
	"testing"

	"k8s.io/klog/v2"
)

// nodeFill is the share of a node's GPU-equivalents that bound pods use
// (a MIG 3g weighs 3/7 of its GPU, a time-sliced replica 1/replicas), and
// unknown for a node without a topology.
func TestNodeFill(t *testing.T) {
	c := newCache(t, a100, h100)
	s := testShared(c, testArgs("binpack"))
	for _, n := range []string{"a100", "h100"} {
		if f, ok := s.nodeFill(n); !ok || f != 0 {
			t.Fatalf("empty node %s: fill %v known %v, want 0 true", n, f, ok)
		}
	}
	if _, ok := s.nodeFill("nowhere"); ok {
		t.Fatal("node without topology: fill known")
	}
	mig := gpuPod("mig", map[string]int64{"nvidia.com/mig-3g.20gb": 1})
	mig.Spec.NodeName = "a100"
	shared := gpuPod("shared", map[string]int64{"nvidia.com/gpu": 2})
	shared.Spec.NodeName = "h100"
	s.onPod(klog.Background(), mig)
	s.onPod(klog.Background(), shared)
	for n, want := range map[string]float64{"a100": 3.0 / 7, "h100": 2.0 / 4 / 2} {
		if f, ok := s.nodeFill(n); !ok || math.Abs(f-want) > 1e-9 {
			t.Errorf("%s: fill %v known %v, want %v", n, f, ok, want)
		}
	}
	s.onPodDelete(mig)
	if f, _ := s.nodeFill("a100"); f != 0 {
		t.Fatalf("pod gone: fill %v, want 0", f)
	}
}
