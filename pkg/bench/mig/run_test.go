package mig

import (
	"context"
	"slices"
	"testing"

	"github.com/gpuslice/gpuslice/pkg/topology"
)

// smallCluster is 4 H100 and 2 A100 nodes with all-balanced (written out,
// so the test runs without mig-parted's file) and one CPU node.
func smallCluster() ClusterSpec {
	return ClusterSpec{
		Policy: topology.PolicyDistributed,
		Groups: []NodeGroup{
			{Prefix: "h100", Count: 4, Product: h100Product, GPUs: 8, Layout: "all-balanced",
				Profiles: []string{"1g.10gb", "1g.10gb", "2g.20gb", "3g.40gb"}, CPUMilli: h100CPUMilli, MemoryGiB: h100MemGiB, Pods: maxPods},
			{Prefix: "a100", Count: 2, Product: a100Product, GPUs: 8, Layout: "all-balanced",
				Profiles: []string{"1g.5gb", "1g.5gb", "2g.10gb", "3g.20gb"}, CPUMilli: a100CPUMilli, MemoryGiB: a100MemGiB, Pods: maxPods},
			{Prefix: "cpu", Count: 1, CPUMilli: cpuNodeMilli, MemoryGiB: cpuNodeGiB, Pods: maxPods},
		},
	}
}

// smallMix asks for 12 1g.10gb, 4 3g.40gb and 3 2g.20gb (one H100 node's
// worth, with the pipelines) and 6 1g.5gb (half an A100 node), plus CPU
// pods. kube-scheduler's LeastAllocated spreads them over every node that
// has the profile; bin-packing fits them on one node per product.
func smallMix() []Class {
	var out []Class
	for _, c := range DefaultMix() {
		switch c.Name {
		case "h100-1g":
			c.Weight = 10
		case "h100-3g":
			c.Weight = 4
		case "h100-pipeline":
			c.Weight = 2
		case "h100-2g":
			c.Weight = 1
		case "a100-1g":
			c.Weight = 6
		case "cpu-web":
			c.Weight = 4
		default:
			continue
		}
		out = append(out, c)
	}
	return out
}

func TestRunSmall(t *testing.T) {
	ctx := context.Background()
	cluster := smallCluster()
	pols, err := Policies(nil, schedulerConfig, cluster.GPUResources())
	if err != nil {
		t.Fatal(err)
	}
	if got := len(pols); got != 4 {
		t.Fatalf("%d policies, want 4", got)
	}
	mix := smallMix()
	const nPods = 27
	if counts, _ := Counts(mix, nPods); !slices.Equal(counts, []int{6, 10, 1, 4, 2, 4}) {
		t.Fatalf("counts %v", counts)
	}

	// An independent device -> resource map, from the topology.
	nodes, _, err := cluster.Build(topology.NewCatalog())
	if err != nil {
		t.Fatal(err)
	}
	profileOf := map[string]string{}
	for _, n := range nodes {
		if n.Topology == nil {
			continue
		}
		for _, g := range n.Topology.GPUs {
			for _, in := range g.Instances {
				profileOf[in.DeviceID] = topology.MIGResourceName(in.Profile)
			}
		}
	}

	for _, seed := range []int64{1, 2} {
		nonEmpty := map[string]int{}
		for _, p := range pols {
			pods, err := Workload(mix, nPods, seed)
			if err != nil {
				t.Fatal(err)
			}
			r, err := Run(ctx, p, cluster, pods, seed)
			if err != nil {
				t.Fatalf("%s seed %d: %v", p.Name, seed, err)
			}
			nonEmpty[p.Name] = r.NonEmptyNodes
			if r.Unplaced != 0 || r.Placed != nPods || r.GPUPods != nPods-4 {
				t.Errorf("%s seed %d: placed %d, unplaced %d, GPU pods %d", p.Name, seed, r.Placed, r.Unplaced, r.GPUPods)
			}
			if p.GPUSlice && r.Mispredicted != 0 {
				t.Errorf("%s seed %d: %d mispredicted", p.Name, seed, r.Mispredicted)
			}
			if r.GPUNodes != 6 || r.GPUs != 48 {
				t.Errorf("%s: %d GPU nodes, %d GPUs", p.Name, r.GPUNodes, r.GPUs)
			}
			gpuNodes := map[string]bool{}
			for i, o := range r.Outcomes {
				if o.Pod != pods[i].Pod.Name {
					t.Fatalf("%s: outcome %d is pod %s, want %s", p.Name, i, o.Pod, pods[i].Pod.Name)
				}
				got := map[string]int64{}
				for _, rd := range o.Devices {
					for _, id := range rd.DeviceIDs {
						if profileOf[id] != rd.Resource {
							t.Errorf("%s: pod %s got %s as %s, it is %q", p.Name, o.Pod, id, rd.Resource, profileOf[id])
						}
						got[rd.Resource]++
					}
				}
				if want := pods[i].Class.Devices(); !mapsEqual(got, want) {
					t.Errorf("%s: pod %s got devices %v, asked for %v", p.Name, o.Pod, got, want)
				}
				if len(got) > 0 {
					gpuNodes[o.Node] = true
				}
			}
			if len(gpuNodes) != r.NonEmptyNodes {
				t.Errorf("%s: GPU pods on %d nodes, NonEmptyNodes %d", p.Name, len(gpuNodes), r.NonEmptyNodes)
			}
			if r.NonEmptyGPUs < 1 || r.NonEmptyGPUs > r.GPUs || r.UsedGPUEquivalents <= 0 {
				t.Errorf("%s: %d non-empty GPUs, %.2f GPU-equivalents", p.Name, r.NonEmptyGPUs, r.UsedGPUEquivalents)
			}
		}
		t.Logf("seed %d: non-empty GPU nodes %v", seed, nonEmpty)
		for _, gs := range []string{PolicyBinpack, PolicyFragmentation} {
			if nonEmpty[gs] >= nonEmpty[PolicyKubeDefault] {
				t.Errorf("seed %d: %s leaves %d non-empty GPU nodes, kube default %d; want fewer", seed, gs, nonEmpty[gs], nonEmpty[PolicyKubeDefault])
			}
		}
		if nonEmpty[PolicyKubeDefault] != 6 {
			t.Errorf("seed %d: kube default used %d GPU nodes, want all 6 (LeastAllocated spreads)", seed, nonEmpty[PolicyKubeDefault])
		}
	}
}

func TestWorkload(t *testing.T) {
	mix := DefaultMix()
	counts, err := Counts(mix, 240)
	if err != nil {
		t.Fatal(err)
	}
	sum := 0
	for _, c := range counts {
		sum += c
	}
	if sum != 240 || !slices.Equal(counts, []int{50, 13, 16, 6, 50, 13, 16, 6, 38, 32}) {
		t.Errorf("Counts(DefaultMix, 240) = %v (sum %d)", counts, sum)
	}
	names := func(seed int64) []string {
		pods, err := Workload(mix, 240, seed)
		if err != nil {
			t.Fatal(err)
		}
		out := make([]string, len(pods))
		for i, p := range pods {
			out[i] = p.Pod.Name
		}
		return out
	}
	a, b, c := names(1), names(1), names(2)
	if !slices.Equal(a, b) {
		t.Error("same seed, different order")
	}
	if slices.Equal(a, c) {
		t.Error("seeds 1 and 2 give the same order")
	}
	pods, _ := Workload(mix, 240, 1)
	for _, p := range pods {
		if p.Class.Name == "a100-pipeline" {
			if len(p.Pod.Spec.Containers) != 2 {
				t.Fatalf("pipeline pod has %d containers", len(p.Pod.Spec.Containers))
			}
			want := map[string]int64{"nvidia.com/mig-1g.5gb": 1, "nvidia.com/mig-2g.10gb": 1}
			if got := p.Class.Devices(); !mapsEqual(got, want) {
				t.Errorf("pipeline devices %v", got)
			}
		}
	}
	if _, err := Counts(nil, 3); err == nil {
		t.Error("empty mix accepted")
	}
}
