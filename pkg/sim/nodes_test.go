package sim

import (
	"context"
	"testing"

	"github.com/gpuslice/gpuslice/pkg/topology/fixtures"
)

// Nodes come and go: a pod that fits no node is placed once a node is
// added, a node with a pod cannot be removed, and an emptied node can; the
// scheduler keeps placing on what is left and forgets the removed node.
func TestAddAndRemoveNodes(t *testing.T) {
	ctx := context.Background()
	for _, profile := range []string{"gpuslice-binpack", "gpuslice-fragmentation-aware"} {
		opts := shipped(t, profile)
		s, err := New(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		p1 := pod("p1", "nvidia.com/gpu", 1)
		if d, err := s.Schedule(ctx, p1); err != nil || d.Node != "" {
			t.Fatalf("%s: placed %+v on an empty cluster (%v)", profile, d, err)
		}
		spec := fixtures.Spec{Name: "a", Product: "NVIDIA A100-SXM4-40GB", GPUs: 1}
		if err := s.AddNode(node(t, spec)); err != nil {
			t.Fatal(err)
		}
		if err := s.AddNode(node(t, spec)); err == nil {
			t.Fatal("a node added twice")
		}
		spec.Name = "b"
		if err := s.AddNode(node(t, spec)); err != nil {
			t.Fatal(err)
		}
		d, err := s.Schedule(ctx, p1)
		if err != nil || d.Node == "" {
			t.Fatalf("%s: not placed after nodes were added: %+v %v", profile, d, err)
		}
		if _, err := s.Admit(ctx, p1, d); err != nil {
			t.Fatal(err)
		}
		if err := s.RemoveNode(d.Node); err == nil {
			t.Fatalf("%s: removed node %s with a pod on it", profile, d.Node)
		}
		other := map[string]string{"a": "b", "b": "a"}[d.Node]
		if err := s.RemoveNode(other); err != nil {
			t.Fatal(err)
		}
		if got := s.NodeNames(); len(got) != 1 || got[0] != d.Node {
			t.Fatalf("nodes %v after removing %s", got, other)
		}
		// The only GPU is taken: a second pod waits, then takes it once p1 leaves.
		p2 := pod("p2", "nvidia.com/gpu", 1)
		if d2, _ := s.Schedule(ctx, p2); d2.Node != "" {
			t.Fatalf("%s: p2 placed on %s, whose GPU p1 holds", profile, d2.Node)
		}
		if err := s.Remove(p1.UID); err != nil {
			t.Fatal(err)
		}
		d2, err := s.Schedule(ctx, p2)
		if err != nil || d2.Node != d.Node {
			t.Fatalf("%s: p2 %+v %v", profile, d2, err)
		}
		if _, err := s.Admit(ctx, p2, d2); err != nil {
			t.Fatal(err)
		}
		if err := s.Remove(p2.UID); err != nil {
			t.Fatal(err)
		}
		if err := s.RemoveNode(d.Node); err != nil {
			t.Fatal(err)
		}
		if s.Devices(d.Node) != nil || len(s.NodeNames()) != 0 {
			t.Fatalf("%s: node %s still known", profile, d.Node)
		}
		if d3, err := s.Schedule(ctx, pod("p3", "nvidia.com/gpu", 1)); err != nil || d3.Node != "" {
			t.Fatalf("%s: placed on an empty cluster: %+v %v", profile, d3, err)
		}
	}
}
