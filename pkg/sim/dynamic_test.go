package sim

import (
	"context"
	"strings"
	"testing"

	"github.com/gpuslice/gpuslice/pkg/topology"
	"github.com/gpuslice/gpuslice/pkg/topology/fixtures"
)

// A reconfiguration blocks the node, then the new layout serves pods;
// removing a pod frees its devices; a new topology that drops a device a
// pod holds is refused (the check that no pod loses a device).
func TestReconfigureAndRemove(t *testing.T) {
	ctx := context.Background()
	opts := shipped(t, "gpuslice-binpack")
	ones := []string{"1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb"}
	opts.Nodes = []Node{node(t, fixtures.Spec{Name: "h", Product: "NVIDIA H100 80GB HBM3", GPUs: 2, MIG: ones})}
	s, err := New(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	p1 := pod("p1", "nvidia.com/mig-1g.10gb", 1)
	d, err := s.Schedule(ctx, p1)
	if err != nil || d.Node != "h" {
		t.Fatalf("p1: %+v %v", d, err)
	}
	pl, err := s.Admit(ctx, p1, d)
	if err != nil {
		t.Fatal(err)
	}
	held := pl.Devices()[0].DeviceIDs[0]
	if got := s.Allocated("h"); len(got) != 1 || got[0].DeviceIDs[0] != held {
		t.Fatalf("allocated %v", got)
	}
	// Rebuild the idle GPU as 2×3g.
	old := s.Topology("h")
	busyGPU := -1
	for gi, g := range old.GPUs {
		for _, in := range g.Instances {
			if in.DeviceID == held {
				busyGPU = gi
			}
		}
	}
	if busyGPU < 0 {
		t.Fatalf("device %s not on the node", held)
	}
	idle := 1 - busyGPU
	m, _ := topology.NewCatalog().Lookup(old.GPUs[idle].Product)
	three, err := m.CreateLargestFirst(map[string]int{"3g.40gb": 2})
	if err != nil {
		t.Fatal(err)
	}
	next := *old
	next.GPUs = append([]topology.GPU(nil), old.GPUs...)
	next.GPUs[idle].Instances = nil
	for i, in := range three {
		in.DeviceID = "MIG-new-" + string(rune('a'+i))
		next.GPUs[idle].Instances = append(next.GPUs[idle].Instances, in)
	}
	if err := s.StartReconfigure("h"); err != nil {
		t.Fatal(err)
	}
	p2 := pod("p2", "nvidia.com/mig-1g.10gb", 1)
	if d, _ := s.Schedule(ctx, p2); d.Node != "" {
		t.Fatal("a reconfiguring node took a GPU pod")
	}
	if err := s.FinishReconfigure("h", &next); err != nil {
		t.Fatal(err)
	}
	p3 := pod("p3", "nvidia.com/mig-3g.40gb", 2)
	if d, err := s.Schedule(ctx, p3); err != nil || d.Node != "h" {
		t.Fatalf("the new layout does not serve 2×3g: %+v %v", d, err)
	} else if _, err := s.Admit(ctx, p3, d); err != nil {
		t.Fatal(err)
	}
	// A layout that drops p1's device is refused.
	bad := next
	bad.GPUs = append([]topology.GPU(nil), next.GPUs...)
	bad.GPUs[busyGPU].Instances = next.GPUs[idle].Instances[:0:0]
	for i, in := range three {
		in.DeviceID = "MIG-bad-" + string(rune('a'+i))
		bad.GPUs[busyGPU].Instances = append(bad.GPUs[busyGPU].Instances, in)
	}
	if err := s.FinishReconfigure("h", &bad); err == nil || !strings.Contains(err.Error(), "lost a device") {
		t.Fatalf("a pod losing its device went unnoticed: %v", err)
	}
	if err := s.Remove(p1.UID); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(p1.UID); err == nil {
		t.Fatal("removed twice")
	}
	for _, u := range s.Devices("h").Usage() {
		if u.Resource == "nvidia.com/mig-1g.10gb" && u.Used != 0 {
			t.Fatalf("p1's device still in use: %+v", u)
		}
	}
}

// A drained GPU with free devices keeps pods of those resources off the
// node (gpuslice's Filter reads the annotation SetDrain writes); lifting
// the drain lets them in.
func TestSetDrain(t *testing.T) {
	ctx := context.Background()
	opts := shipped(t, "gpuslice-binpack")
	opts.Nodes = []Node{node(t, fixtures.Spec{Name: "h", Product: "NVIDIA H100 80GB HBM3", GPUs: 2, MIG: []string{"3g.40gb", "3g.40gb"}})}
	s, err := New(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetDrain("h", []int{1}); err != nil {
		t.Fatal(err)
	}
	p := pod("p", "nvidia.com/mig-3g.40gb", 1)
	d, err := s.Schedule(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if d.Node != "" || !strings.Contains(d.Reason, "GPU 1 is draining") {
		t.Fatalf("drained node took the pod: %+v", d)
	}
	if err := s.SetDrain("h", nil); err != nil {
		t.Fatal(err)
	}
	if d, err := s.Schedule(ctx, p); err != nil || d.Node != "h" {
		t.Fatalf("drain lifted: %+v %v", d, err)
	}
	if err := s.SetDrain("nope", []int{0}); err == nil {
		t.Error("SetDrain on an unknown node succeeded")
	}
}
