package e2e

import (
	"strings"
	"testing"

	"github.com/gpuslice/gpuslice/pkg/allocator"
	"github.com/gpuslice/gpuslice/pkg/podrequest"
	"github.com/gpuslice/gpuslice/pkg/topology"
	"github.com/gpuslice/gpuslice/pkg/topology/fixtures"
)

func one(name string, n int) *podrequest.Request {
	rc := []podrequest.ResourceCount{{Name: name, Count: n}}
	return &podrequest.Request{Containers: []podrequest.Container{{Name: "main", Resources: rc}}, Effective: rc}
}

func devs(res string, ids ...string) []allocator.ResourceDevices {
	return []allocator.ResourceDevices{{Resource: res, DeviceIDs: ids}}
}

// TestCheckerCatchesDoubleBooking feeds the checker a cluster where the
// scheduler assigned one MIG device to two pods: it must say so.
func TestCheckerCatchesDoubleBooking(t *testing.T) {
	topo := fixtures.MustBuild(topology.NewCatalog(), fixtures.Spec{Name: "n", Product: "NVIDIA A100-SXM4-40GB", GPUs: 1, MIG: []string{"1g.5gb", "1g.5gb", "2g.10gb", "3g.20gb"}})
	var ids []string
	for _, in := range topo.GPUs[0].Instances {
		if in.Profile == "1g.5gb" {
			ids = append(ids, in.DeviceID)
		}
	}
	nodes := map[string]NodeView{"n": {Topology: topo, Usable: true}}
	res := "nvidia.com/mig-1g.5gb"
	ok := []PodView{
		{Name: "a", Node: "n", Request: one(res, 1), Assigned: devs(res, ids[0]), Given: devs(res, ids[1])},
		{Name: "b", Node: "n", Request: one(res, 1), Assigned: devs(res, ids[1]), Given: devs(res, ids[0])},
	}
	if p := Check(nodes, ok); len(p) != 0 {
		t.Fatalf("a valid cluster (picks swapped among equals) reported: %v", p)
	}
	double := []PodView{
		{Name: "a", Node: "n", Request: one(res, 1), Assigned: devs(res, ids[0])},
		{Name: "b", Node: "n", Request: one(res, 1), Assigned: devs(res, ids[0])},
	}
	// a's annotation is stale but the read-back says it holds ids[1]: b may
	// then be assigned ids[0].
	corrected := []PodView{
		{Name: "a", Node: "n", Request: one(res, 1), Assigned: devs(res, ids[0]), Given: devs(res, ids[1]), Reported: devs(res, ids[1])},
		{Name: "b", Node: "n", Request: one(res, 1), Assigned: devs(res, ids[0])},
	}
	if p := Check(nodes, corrected); len(p) != 0 {
		t.Fatalf("a view corrected by the read-back reported: %v", p)
	}
	// The read-back itself double-booked: caught.
	badReadBack := []PodView{
		{Name: "a", Node: "n", Request: one(res, 1), Assigned: devs(res, ids[0]), Reported: devs(res, ids[1])},
		{Name: "b", Node: "n", Request: one(res, 1), Assigned: devs(res, ids[1])},
	}
	if p := Check(nodes, badReadBack); len(p) == 0 {
		t.Fatal("an assignment of a device the read-back shows in use not caught")
	}
	p := Check(nodes, double)
	if len(p) == 0 || !strings.Contains(strings.Join(p, "\n"), "is already allocated") {
		t.Fatalf("double booking not caught: %v", p)
	}
	kubeletDouble := []PodView{
		{Name: "a", Node: "n", Request: one(res, 1), Assigned: devs(res, ids[0]), Given: devs(res, ids[1])},
		{Name: "b", Node: "n", Request: one(res, 1), Assigned: devs(res, ids[1]), Given: devs(res, ids[1])},
	}
	if p := Check(nodes, kubeletDouble); len(p) == 0 {
		t.Fatal("a device given twice by the kubelet not caught")
	}
	pendingFits := []PodView{{Name: "c", Request: one(res, 1)}}
	if p := Check(nodes, pendingFits); len(p) != 1 || !strings.Contains(p[0], "fits on n") {
		t.Fatalf("a pending pod that fits not caught: %v", p)
	}
	wrongCount := []PodView{{Name: "d", Node: "n", Request: one(res, 2), Assigned: devs(res, ids[0])}}
	if p := Check(nodes, wrongCount); len(p) == 0 {
		t.Fatal("an assignment smaller than the request not caught")
	}
	// An annotation claiming the kubelet's devices must be them.
	truthful := []PodView{
		{Name: "a", Node: "n", Request: one(res, 1), Assigned: devs(res, ids[1]), AssignedHeld: true, Given: devs(res, ids[1])},
		{Name: "b", Node: "n", Request: one(res, 1), Assigned: devs(res, ids[0]), Given: devs(res, ids[0])}, // a prediction
	}
	if p := Check(nodes, truthful); len(p) != 0 {
		t.Fatalf("truthful annotations reported: %v", p)
	}
	lying := []PodView{
		{Name: "a", Node: "n", Request: one(res, 1), Assigned: devs(res, ids[0]), AssignedHeld: true, Given: devs(res, ids[1])},
		{Name: "b", Node: "n", Request: one(res, 1), Assigned: devs(res, ids[0]), AssignedHeld: true, Given: devs(res, ids[0])},
	}
	if p := Check(nodes, lying); !strings.Contains(strings.Join(p, "\n"), "annotation claims the kubelet gave") || !strings.Contains(strings.Join(p, "\n"), "claimed as held by live pods a and b") {
		t.Fatalf("an annotation claiming devices the kubelet did not give not caught: %v", p)
	}
	rejected := []PodView{{Name: "e", Node: "n", Request: one(res, 1), Failed: "Allocate failed"}}
	if p := Check(nodes, rejected); len(p) == 0 {
		t.Fatal("a kubelet admission failure not caught")
	}
}
