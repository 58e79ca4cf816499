package sim

import (
	"context"
	"fmt"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	schedconfig "k8s.io/kubernetes/pkg/scheduler/apis/config"

	"github.com/gpuslice/gpuslice/pkg/topology/fixtures"
)

// TestReplayProfilesSideBySide replays one workload under the stock
// default-scheduler and gpuslice-binpack: the stock profile spreads the
// small MIG pods over the nodes (LeastAllocated), gpuslice packs them onto
// one; a pod nothing can hold is reported unplaced with a reason; the fixed
// CPU pod holds its node's CPU; the input is left as it was.
func TestReplayProfilesSideBySide(t *testing.T) {
	ctx := context.Background()
	var in ReplayInput
	for i := 0; i < 3; i++ {
		in.Nodes = append(in.Nodes, node(t, fixtures.Spec{Name: fmt.Sprintf("a100-%d", i), Product: "NVIDIA A100-SXM4-40GB", GPUs: 1, MIG: []string{"1g.5gb", "1g.5gb", "1g.5gb", "1g.5gb", "1g.5gb", "1g.5gb", "1g.5gb"}}))
	}
	// A CPU pod that fills a100-2's CPU: no pod asking for CPU fits there.
	hog := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "hog", Namespace: "default", UID: "hog"},
		Spec: v1.PodSpec{NodeName: "a100-2", Containers: []v1.Container{{Name: "c", Resources: v1.ResourceRequirements{
			Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse("64")},
		}}}},
	}
	in.Fixed = []*v1.Pod{hog}
	for i := 0; i < 3; i++ {
		p := pod(fmt.Sprintf("small-%d", i), "nvidia.com/mig-1g.5gb", 1)
		p.Spec.Containers[0].Resources.Requests[v1.ResourceCPU] = resource.MustParse("1")
		p.Spec.NodeName = "a100-2" // where it runs today: ignored by the replay
		in.Pods = append(in.Pods, p)
	}
	in.Pods = append(in.Pods, pod("huge", "nvidia.com/mig-3g.20gb", 1))

	stockCfg, err := StockConfig("")
	if err != nil {
		t.Fatal(err)
	}
	shippedCfg, err := LoadConfigMapFile("../../manifests/scheduler/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	stockProfiles, err := Profiles(stockCfg)
	if err != nil {
		t.Fatal(err)
	}
	binpack, err := Profiles(shippedCfg, "gpuslice-binpack")
	if err != nil {
		t.Fatal(err)
	}
	results, err := ReplayProfiles(ctx, []*schedconfig.KubeSchedulerProfile{stockProfiles[0], binpack[0]}, in)
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 2 || results[0].Profile != "default-scheduler" || results[1].Profile != "gpuslice-binpack" {
		t.Fatalf("results not in profile order: %+v", results)
	}
	for _, r := range results {
		if r.Placed != 3 || r.Unplaced != 1 || len(r.Placements) != 4 {
			t.Errorf("%s: placed %d unplaced %d of %d, want 3 and 1 of 4", r.Profile, r.Placed, r.Unplaced, len(r.Placements))
		}
		huge := r.Placements[3]
		if huge.Node != "" || !strings.Contains(huge.Reason, "mig-3g.20gb") {
			t.Errorf("%s: huge placed on %q (reason %q), want unplaced naming the resource", r.Profile, huge.Node, huge.Reason)
		}
		used := 0.0
		for _, pl := range r.Placements[:3] {
			if pl.Node == "a100-2" {
				t.Errorf("%s: %s placed on a100-2, whose CPU the fixed pod holds", r.Profile, pl.Name)
			}
			if len(pl.Devices) != 1 || len(pl.Devices[0].DeviceIDs) != 1 {
				t.Errorf("%s: %s got devices %v, want one", r.Profile, pl.Name, pl.Devices)
			}
		}
		nodesUsed, gpusUsed := 0, 0
		for _, n := range r.Nodes {
			used += n.GPUs[0].Used
			if n.InUse() {
				nodesUsed++
				gpusUsed += n.UsedGPUs()
			}
		}
		if nodesUsed != r.GPUNodesUsed || gpusUsed != r.GPUsUsed || used != r.UsedGPUEquivalents {
			t.Errorf("%s: totals %d nodes %d GPUs %.3f eq disagree with the nodes (%d, %d, %.3f)", r.Profile, r.GPUNodesUsed, r.GPUsUsed, r.UsedGPUEquivalents, nodesUsed, gpusUsed, used)
		}
	}
	if got := results[0].GPUNodesUsed; got != 2 {
		t.Errorf("default-scheduler used %d GPU nodes, want 2 (LeastAllocated spreads over the two free nodes)", got)
	}
	if got := results[1].GPUNodesUsed; got != 1 {
		t.Errorf("gpuslice-binpack used %d GPU nodes, want 1", got)
	}
	for _, p := range in.Pods[:3] {
		if p.Spec.NodeName != "a100-2" {
			t.Errorf("replay changed the input pod %s", p.Name)
		}
	}
}

// TestReplayFixedGPUPods: fixed GPU pods hold the devices the device plugin
// gives them on their node, under the stock profile and under GPUSlice
// (whose cache learns them), so a replayed pod cannot take them; a fixed pod
// the node cannot serve is reported and holds nothing.
func TestReplayFixedGPUPods(t *testing.T) {
	ctx := context.Background()
	n := node(t, fixtures.Spec{Name: "n0", Product: "NVIDIA A100-SXM4-40GB", GPUs: 1})
	first, second := pod("first", "nvidia.com/gpu", 1), pod("second", "nvidia.com/gpu", 1)
	first.Spec.NodeName, second.Spec.NodeName = "n0", "n0"
	later := pod("later", "nvidia.com/gpu", 1)
	for _, prof := range []*schedconfig.KubeSchedulerProfile{stock(t).Profile, shipped(t, "gpuslice-binpack").Profile} {
		r, err := Replay(ctx, prof, ReplayInput{Nodes: []Node{n}, Fixed: []*v1.Pod{first, second}, Pods: []*v1.Pod{later}})
		if err != nil {
			t.Fatal(err)
		}
		if len(r.FixedRejected) != 1 || r.FixedRejected[0].Name != "second" || r.FixedRejected[0].Reason == "" {
			t.Errorf("%s: fixed rejected %+v, want second with a reason", r.Profile, r.FixedRejected)
		}
		if r.Unplaced != 1 || r.Placements[0].Node != "" {
			t.Errorf("%s: later placed on %q: the fixed pod holds the only GPU", r.Profile, r.Placements[0].Node)
		}
		if r.GPUsUsed != 1 || r.GPUNodesUsed != 1 {
			t.Errorf("%s: %d GPUs on %d nodes used, want the fixed pod's 1 on 1", r.Profile, r.GPUsUsed, r.GPUNodesUsed)
		}
	}
}

// TestReplayRejectsBadInput: no profile, a fixed pod on an unknown node and
// a fixed pod with an invalid request are errors, not panics.
func TestReplayRejectsBadInput(t *testing.T) {
	ctx := context.Background()
	if _, err := Replay(ctx, nil, ReplayInput{}); err == nil {
		t.Error("Replay without a profile succeeded")
	}
	prof := stock(t).Profile
	n := node(t, fixtures.Spec{Name: "n0", Product: "NVIDIA A100-SXM4-40GB", GPUs: 1})
	badPod := pod("g", "nvidia.com/mig-9g.99gb", 1)
	badPod.Spec.NodeName = "n0"
	cpuPod := pod("c", "cpu", 1)
	cpuPod.Spec.NodeName = "elsewhere"
	for name, fixed := range map[string]*v1.Pod{"invalid request": badPod, "unknown node": cpuPod} {
		if _, err := Replay(ctx, prof, ReplayInput{Nodes: []Node{n}, Fixed: []*v1.Pod{fixed}}); err == nil {
			t.Errorf("%s: fixed pod accepted", name)
		}
	}
}
