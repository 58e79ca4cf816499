package whatif

import (
	"maps"
	"slices"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	gpusliceapi "github.com/gpuslice/gpuslice/pkg/apis/gpuslice/v1alpha1"
	"github.com/gpuslice/gpuslice/pkg/topology"
	"github.com/gpuslice/gpuslice/pkg/topology/fixtures"
	"github.com/gpuslice/gpuslice/pkg/topology/migparted"
)

func inferrer(t testing.TB) *Inferrer {
	t.Helper()
	parted, err := migparted.Default()
	if err != nil {
		t.Fatal(err)
	}
	return &Inferrer{Catalog: topology.NewCatalog(), MIGParted: parted}
}

func gfdNode(name string, labels map[string]string, alloc map[string]int64) *v1.Node {
	rl := v1.ResourceList{v1.ResourceCPU: resource.MustParse("64"), v1.ResourceMemory: resource.MustParse("512Gi")}
	for k, n := range alloc {
		rl[v1.ResourceName(k)] = *resource.NewQuantity(n, resource.DecimalSI)
	}
	return &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}, Status: v1.NodeStatus{Allocatable: rl, Capacity: rl}}
}

// layoutOf lists each GPU's MIG profiles (sorted) or "whole".
func layoutOf(n *topology.Node) []string {
	var out []string
	for _, g := range n.GPUs {
		if !g.MIGEnabled {
			out = append(out, "whole")
			continue
		}
		var ps []string
		for _, in := range g.Instances {
			ps = append(ps, in.Profile)
		}
		slices.Sort(ps)
		out = append(out, strings.Join(ps, ","))
	}
	return out
}

const (
	a100 = "NVIDIA-A100-SXM4-40GB"
	h100 = "NVIDIA-H100-80GB-HBM3"
)

func TestInferFromLabels(t *testing.T) {
	f := inferrer(t)
	x7 := func(p string) string { return strings.TrimSuffix(strings.Repeat(p+",", 7), ",") }
	balancedH100 := "1g.10gb,1g.10gb,2g.20gb,3g.40gb"
	for _, tc := range []struct {
		name   string
		labels map[string]string
		alloc  map[string]int64
		want   Confidence
		// layout per GPU; nil when no topology is expected.
		layout []string
		// replicas of the time-sliced resources, 0 when not shared.
		replicas int
		// noteHas / sourceHas are substrings the notes / source must hold.
		noteHas, sourceHas string
	}{
		{
			name:   "cpu node",
			labels: map[string]string{"kubernetes.io/hostname": "x"},
		},
		{
			name:      "mixed, named layout",
			labels:    map[string]string{LabelProduct: a100, LabelCount: "2", LabelMIGStrategy: "mixed", LabelMIGConfig: "all-1g.5gb", LabelMIGConfigState: "success"},
			alloc:     map[string]int64{"nvidia.com/mig-1g.5gb": 14},
			want:      Labels,
			layout:    []string{x7("1g.5gb"), x7("1g.5gb")},
			sourceHas: "layout all-1g.5gb resolved",
		},
		{
			name:      "mixed, all-balanced on H100",
			labels:    map[string]string{LabelProduct: h100, LabelCount: "2", LabelMIGStrategy: "mixed", LabelMIGConfig: "all-balanced"},
			alloc:     map[string]int64{"nvidia.com/mig-1g.10gb": 4, "nvidia.com/mig-2g.20gb": 2, "nvidia.com/mig-3g.40gb": 2},
			want:      Labels,
			layout:    []string{balancedH100, balancedH100},
			sourceHas: "all-balanced",
		},
		{
			name:      "mixed, no layout label: even split over the count",
			labels:    map[string]string{LabelProduct: a100, LabelCount: "2"},
			alloc:     map[string]int64{"nvidia.com/mig-1g.5gb": 6, "nvidia.com/mig-2g.10gb": 2},
			want:      Guess,
			layout:    []string{"1g.5gb,1g.5gb,1g.5gb,2g.10gb", "1g.5gb,1g.5gb,1g.5gb,2g.10gb"},
			sourceHas: "split evenly over 2",
		},
		{
			name:      "mixed, layout label disagrees with allocatable",
			labels:    map[string]string{LabelProduct: a100, LabelMIGConfig: "all-1g.5gb"},
			alloc:     map[string]int64{"nvidia.com/mig-3g.20gb": 1, "nvidia.com/mig-1g.5gb": 3},
			want:      Guess,
			layout:    []string{"1g.5gb,1g.5gb,1g.5gb,3g.20gb"},
			noteHas:   "not a whole number of GPUs in layout all-1g.5gb",
			sourceHas: "first-fit onto 1",
		},
		{
			name:      "mixed, MIG beside whole GPUs",
			labels:    map[string]string{LabelProduct: a100, LabelCount: "3", LabelMIGConfig: "all-3g.20gb"},
			alloc:     map[string]int64{"nvidia.com/mig-3g.20gb": 4, "nvidia.com/gpu": 1},
			want:      Labels,
			layout:    []string{"3g.20gb,3g.20gb", "3g.20gb,3g.20gb", "whole"},
			sourceHas: "+ 1 without MIG",
		},
		{
			name:      "mixed, unknown layout name",
			labels:    map[string]string{LabelProduct: a100, LabelCount: "1", LabelMIGConfig: "custom-layout"},
			alloc:     map[string]int64{"nvidia.com/mig-7g.40gb": 1},
			want:      Guess,
			layout:    []string{"7g.40gb"},
			noteHas:   `"custom-layout" not found`,
			sourceHas: "split evenly",
		},
		{
			name:      "whole GPUs",
			labels:    map[string]string{LabelProduct: "Tesla-T4", LabelCount: "4"},
			alloc:     map[string]int64{"nvidia.com/gpu": 4},
			want:      Labels,
			layout:    []string{"whole", "whole", "whole", "whole"},
			sourceHas: "4 whole GPUs",
		},
		{
			name:      "whole GPUs, allocatable only",
			alloc:     map[string]int64{"nvidia.com/gpu": 2},
			want:      Guess,
			layout:    []string{"whole", "whole"},
			noteHas:   "no " + LabelProduct,
			sourceHas: "allocatable alone",
		},
		{
			name:      "time-sliced, replicas label",
			labels:    map[string]string{LabelProduct: "Tesla-T4-SHARED", LabelCount: "2", LabelReplicas: "4", LabelSharingStrategy: "time-slicing"},
			alloc:     map[string]int64{"nvidia.com/gpu": 8},
			want:      Labels,
			layout:    []string{"whole", "whole"},
			replicas:  4,
			sourceHas: "time-sliced x4",
		},
		{
			name:     "time-sliced, renamed .shared",
			labels:   map[string]string{LabelProduct: "Tesla-T4-SHARED", LabelCount: "1", LabelReplicas: "3"},
			alloc:    map[string]int64{"nvidia.com/gpu.shared": 3},
			want:     Labels,
			layout:   []string{"whole"},
			replicas: 3,
		},
		{
			name:      "time-sliced, replicas from allocatable over count",
			labels:    map[string]string{LabelProduct: "Tesla-T4", LabelCount: "2"},
			alloc:     map[string]int64{"nvidia.com/gpu": 10},
			want:      Guess,
			layout:    []string{"whole", "whole"},
			replicas:  5,
			sourceHas: "replicas from allocatable",
		},
		{
			name:      "MIG strategy single with a layout",
			labels:    map[string]string{LabelProduct: a100 + "-MIG-1g.5gb", LabelCount: "14", LabelMIGStrategy: "single", LabelMIGConfig: "all-1g.5gb"},
			alloc:     map[string]int64{"nvidia.com/gpu": 14},
			want:      Labels,
			layout:    []string{x7("1g.5gb"), x7("1g.5gb")},
			sourceHas: "layout all-1g.5gb resolved, 2 GPUs",
		},
		{
			name:      "MIG strategy single from the product label alone",
			labels:    map[string]string{LabelProduct: a100 + "-MIG-3g.20gb", LabelMIGStrategy: "single"},
			alloc:     map[string]int64{"nvidia.com/gpu": 4},
			want:      Guess,
			layout:    []string{"3g.20gb,3g.20gb", "3g.20gb,3g.20gb"},
			sourceHas: "2 x 3g.20gb per GPU",
		},
		{
			name:    "malformed labels are noted, the allocatable still models the node",
			labels:  map[string]string{LabelProduct: "Tesla-T4", LabelCount: "lots", LabelReplicas: "-2", LabelMIGStrategy: "sometimes", LabelSharingStrategy: "magic"},
			alloc:   map[string]int64{"nvidia.com/gpu": 2},
			want:    Guess,
			layout:  []string{"whole", "whole"},
			noteHas: `nvidia.com/gpu.count="lots" is not a positive count`,
		},
		{
			name:      "MIG resources on a product outside the catalog",
			labels:    map[string]string{LabelProduct: "Fancy-GPU-9000", LabelCount: "1"},
			alloc:     map[string]int64{"nvidia.com/mig-1g.5gb": 7},
			want:      Unknown,
			sourceHas: "MIG catalog does not know (Fancy GPU 9000)",
		},
		{
			name:      "MIG profile the product does not have",
			labels:    map[string]string{LabelProduct: a100},
			alloc:     map[string]int64{"nvidia.com/mig-1g.20gb": 7},
			want:      Unknown,
			sourceHas: "has no such profile",
		},
		{
			name:      "single strategy without layout or profile",
			labels:    map[string]string{LabelProduct: a100, LabelMIGStrategy: "single"},
			alloc:     map[string]int64{"nvidia.com/gpu": 7},
			want:      Unknown,
			sourceHas: "without a layout",
		},
		{
			name:      "GPU labels but nothing advertised",
			labels:    map[string]string{LabelProduct: a100, LabelCount: "8"},
			want:      Unknown,
			sourceHas: "advertises no nvidia.com resource",
		},
		{
			name:      "implausible allocatable",
			labels:    map[string]string{LabelProduct: a100},
			alloc:     map[string]int64{"nvidia.com/mig-1g.5gb": 1 << 40, "nvidia.com/gpu": 1 << 62},
			want:      Unknown,
			sourceHas: "implausible",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := f.Infer(gfdNode("n1", tc.labels, tc.alloc), nil)
			if in.Confidence != tc.want {
				t.Fatalf("confidence %q, want %q: %s", in.Confidence, tc.want, in.Summary())
			}
			if tc.sourceHas != "" && !strings.Contains(in.Source, tc.sourceHas) {
				t.Errorf("source %q does not say %q", in.Source, tc.sourceHas)
			}
			if tc.noteHas != "" && !strings.Contains(strings.Join(in.Notes, "; "), tc.noteHas) {
				t.Errorf("notes %q do not say %q", in.Notes, tc.noteHas)
			}
			if tc.layout == nil {
				if in.Topology != nil {
					t.Fatalf("got a topology %v, want none", layoutOf(in.Topology))
				}
				return
			}
			if in.Topology == nil {
				t.Fatalf("no topology: %s", in.Summary())
			}
			if got := layoutOf(in.Topology); !slices.Equal(got, tc.layout) {
				t.Errorf("layout %v, want %v", got, tc.layout)
			}
			if err := in.Topology.Validate(f.Catalog); err != nil {
				t.Errorf("inferred topology invalid: %v", err)
			}
			got := 0
			if ts := in.Topology.TimeSlicing; ts != nil {
				for _, r := range ts.Resources {
					got = r.Replicas
				}
			}
			if got != tc.replicas {
				t.Errorf("replicas %d, want %d", got, tc.replicas)
			}
			// Whatever the confidence, the model advertises what the node does
			// unless a note says otherwise.
			caps, err := in.Topology.Capacity()
			if err != nil {
				t.Fatal(err)
			}
			if in.Confidence == Labels {
				want := map[string]int64{}
				for k, v := range tc.alloc {
					want[k] = v
				}
				if !maps.Equal(caps, want) {
					t.Errorf("models %v, node advertises %v", caps, want)
				}
			}
		})
	}
}

// TestInferPrefersGPUNode: a valid GPUNode is the exact topology; an
// invalid one is noted and the labels take over.
func TestInferPrefersGPUNode(t *testing.T) {
	f := inferrer(t)
	topo := fixtures.MustBuild(f.Catalog, fixtures.Spec{Name: "n1", Product: "NVIDIA A100-SXM4-40GB", GPUs: 2, MIG: []string{"3g.20gb", "3g.20gb"}})
	gn := &gpusliceapi.GPUNode{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Spec: gpusliceapi.SpecFromTopology(topo)}
	gn.Spec.State = gpusliceapi.StateReady
	node := gfdNode("n1", map[string]string{LabelProduct: a100, LabelCount: "2", LabelMIGConfig: "all-3g.20gb"}, map[string]int64{"nvidia.com/mig-3g.20gb": 4})

	in := f.Infer(node, gn)
	if in.Confidence != Exact || in.Source != "GPUNode" || len(in.Notes) != 0 {
		t.Fatalf("with a valid GPUNode: %s", in.Summary())
	}
	if got := layoutOf(in.Topology); !slices.Equal(got, []string{"3g.20gb,3g.20gb", "3g.20gb,3g.20gb"}) {
		t.Errorf("layout %v", got)
	}
	if in.Topology.GPUs[0].UUID != topo.GPUs[0].UUID {
		t.Errorf("GPUNode's UUIDs not kept")
	}

	bad := gn.DeepCopy()
	bad.Spec.GPUs[1].UUID = bad.Spec.GPUs[0].UUID
	in = f.Infer(node, bad)
	if in.Confidence != Labels || !strings.Contains(strings.Join(in.Notes, ";"), "GPUNode ignored") {
		t.Fatalf("with a corrupt GPUNode: %s", in.Summary())
	}
}
