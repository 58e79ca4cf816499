package instancetypes

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/gpuslice/gpuslice/pkg/topology"
	"github.com/gpuslice/gpuslice/pkg/topology/migparted"
)

// migParted is NVIDIA mig-parted's config-default.yaml (embedded copy).
func migParted(t *testing.T) *topology.MIGParted {
	t.Helper()
	parted, err := migparted.Default()
	if err != nil {
		t.Fatal(err)
	}
	return parted
}

func builtinSet(t *testing.T) *Set {
	t.Helper()
	s, err := Builtin(migParted(t))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The shipped types advertise what mig-parted's layouts and the device
// plugin's rules make of them, counted by hand from the named configs.
func TestBuiltinAdvertised(t *testing.T) {
	s := builtinSet(t)
	want := map[string]map[string]int64{
		// all-balanced on A100-40GB: 2x 1g.5gb, 1x 2g.10gb, 1x 3g.20gb per GPU.
		"p4d.24xlarge": {"nvidia.com/mig-1g.5gb": 16, "nvidia.com/mig-2g.10gb": 8, "nvidia.com/mig-3g.20gb": 8},
		// all-1g.10gb on A100-80GB: 7 per GPU.
		"p4de.24xlarge": {"nvidia.com/mig-1g.10gb": 56},
		"p5.48xlarge":   {"nvidia.com/gpu": 8},
		// all-3g.71gb on H200: 2 per GPU.
		"p5en.48xlarge": {"nvidia.com/mig-3g.71gb": 16},
		// 4 GPUs time-sliced 4 ways, renamed .shared.
		"g5.12xlarge":              {"nvidia.com/gpu.shared": 16},
		"Standard_NC24ads_A100_v4": {"nvidia.com/mig-1g.10gb": 7},
	}
	var names []string
	for _, r := range s.Types() {
		names = append(names, r.Name)
		w, ok := want[r.Name]
		if !ok {
			t.Errorf("type %s: no expectation in this test", r.Name)
			continue
		}
		if !reflect.DeepEqual(r.Advertised, w) {
			t.Errorf("type %s advertises %v, want %v", r.Name, r.Advertised, w)
		}
		if r.Price.USDPerHour <= 0 || r.Price.Source == "" || r.Price.Region == "" {
			t.Errorf("type %s: price %+v without a value, source or region", r.Name, r.Price)
		}
	}
	if len(names) != len(want) {
		t.Errorf("types %v, want the %d of this test", names, len(want))
	}
}

// The simulated node of a type advertises exactly what Karpenter is told it
// has, and its topology validates.
func TestTopologyMatchesAdvertised(t *testing.T) {
	s := builtinSet(t)
	cat := topology.NewCatalog()
	for _, r := range s.Types() {
		topo, err := r.Topology("n-" + r.Name)
		if err != nil {
			t.Fatalf("%s: %v", r.Name, err)
		}
		if err := topo.Validate(cat); err != nil {
			t.Errorf("%s: %v", r.Name, err)
		}
		caps, err := topo.Capacity()
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(caps, r.Advertised) {
			t.Errorf("%s: node advertises %v, type says %v", r.Name, caps, r.Advertised)
		}
		if len(topo.GPUs) != r.GPUs {
			t.Errorf("%s: %d GPUs, want %d", r.Name, len(topo.GPUs), r.GPUs)
		}
		spec := r.Spec("x")
		if (len(spec.MIG) > 0) != (r.Setup.MIGConfig != "") {
			t.Errorf("%s: spec MIG %v with config %q", r.Name, spec.MIG, r.Setup.MIGConfig)
		}
	}
}

func TestKarpenterInstanceTypes(t *testing.T) {
	s := builtinSet(t)
	raw, err := s.KarpenterInstanceTypes([]string{"zone-a", "zone-b"})
	if err != nil {
		t.Fatal(err)
	}
	// Decode as the KWOK provider does (field names of its
	// InstanceTypeOptions and of its embedded cloudprovider.Offering).
	var got []struct {
		Name             string
		Architecture     string
		OperatingSystems []string
		Resources        corev1.ResourceList
		Offerings        []struct {
			Price        float64
			Available    bool
			Requirements []corev1.NodeSelectorRequirement
		}
	}
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(s.Types()) {
		t.Fatalf("%d instance types, want %d", len(got), len(s.Types()))
	}
	for i, it := range got {
		r := s.Types()[i]
		if it.Name != r.Name || it.Architecture != "amd64" || !reflect.DeepEqual(it.OperatingSystems, []string{"linux"}) {
			t.Errorf("entry %d: %s %s %v", i, it.Name, it.Architecture, it.OperatingSystems)
		}
		for name, n := range r.Advertised {
			q, ok := it.Resources[corev1.ResourceName(name)]
			if !ok || q.Value() != n {
				t.Errorf("%s: resource %s = %v, want %d", r.Name, name, q.String(), n)
			}
		}
		if q := it.Resources[corev1.ResourceCPU]; q.Value() != int64(r.CPU) {
			t.Errorf("%s: cpu %s, want %d", r.Name, q.String(), r.CPU)
		}
		if q := it.Resources[corev1.ResourceMemory]; q.Value() != r.MemoryGiB<<30 {
			t.Errorf("%s: memory %s, want %d GiB", r.Name, q.String(), r.MemoryGiB)
		}
		if q := it.Resources[corev1.ResourcePods]; q.Value() != Pods {
			t.Errorf("%s: pods %s", r.Name, q.String())
		}
		if len(it.Offerings) != 2 {
			t.Fatalf("%s: %d offerings, want one per zone", r.Name, len(it.Offerings))
		}
		for j, o := range it.Offerings {
			if o.Price != r.Price.USDPerHour || !o.Available {
				t.Errorf("%s offering %d: price %v available %v", r.Name, j, o.Price, o.Available)
			}
			want := []corev1.NodeSelectorRequirement{
				{Key: LabelCapacityType, Operator: corev1.NodeSelectorOpIn, Values: []string{CapacityOnDemand}},
				{Key: corev1.LabelTopologyZone, Operator: corev1.NodeSelectorOpIn, Values: []string{[]string{"zone-a", "zone-b"}[j]}},
			}
			if !reflect.DeepEqual(o.Requirements, want) {
				t.Errorf("%s offering %d: requirements %v", r.Name, j, o.Requirements)
			}
		}
	}
	if _, err := s.KarpenterInstanceTypes(nil); err == nil {
		t.Error("no zones: no error")
	}
}

func TestNodePools(t *testing.T) {
	s := builtinSet(t)
	startup := []corev1.Taint{{Key: "gpuslice.io/gpu-unusable", Effect: corev1.TaintEffectNoSchedule}}
	pools, err := s.NodePools(NodePoolOptions{ConsolidationPolicy: WhenEmpty, StartupTaints: startup})
	if err != nil {
		t.Fatal(err)
	}
	if len(pools) != len(s.Types()) {
		t.Fatalf("%d pools for %d types", len(pools), len(s.Types()))
	}
	seen := map[string]bool{}
	for i, np := range pools {
		r := s.Types()[i]
		if np.GetKind() != "NodePool" || np.GetAPIVersion() != "karpenter.sh/v1" {
			t.Errorf("%s: %s %s", r.Name, np.GetAPIVersion(), np.GetKind())
		}
		if seen[np.GetName()] {
			t.Errorf("pool name %s twice", np.GetName())
		}
		seen[np.GetName()] = true
		spec := np.Object["spec"].(map[string]any)
		labels := spec["template"].(map[string]any)["metadata"].(map[string]any)["labels"].(map[string]any)
		if labels[LabelInstanceShape] != r.Name || labels[LabelGPUProduct] != r.GPUProductLabel() {
			t.Errorf("%s: labels %v", r.Name, labels)
		}
		if mc, has := labels[LabelMIGConfig]; has != (r.Setup.MIGConfig != "") || (has && mc != r.Setup.MIGConfig) {
			t.Errorf("%s: mig.config label %v, setup %q", r.Name, mc, r.Setup.MIGConfig)
		}
		tspec := spec["template"].(map[string]any)["spec"].(map[string]any)
		req := tspec["requirements"].([]any)[0].(map[string]any)
		if req["key"] != corev1.LabelInstanceTypeStable || !reflect.DeepEqual(req["values"], []any{r.Name}) {
			t.Errorf("%s: requirement %v", r.Name, req)
		}
		if got := tspec["startupTaints"].([]any)[0].(map[string]any)["key"]; got != "gpuslice.io/gpu-unusable" {
			t.Errorf("%s: startup taint %v", r.Name, got)
		}
		d := spec["disruption"].(map[string]any)
		if d["consolidationPolicy"] != WhenEmpty || d["consolidateAfter"] != "0s" || d["budgets"].([]any)[0].(map[string]any)["nodes"] != "100%" {
			t.Errorf("%s: disruption %v", r.Name, d)
		}
	}
	for _, bad := range []NodePoolOptions{{}, {ConsolidationPolicy: "Always"}, {ConsolidationPolicy: WhenEmpty, ConsolidateAfter: 1500 * time.Millisecond}} {
		if _, err := s.NodePools(bad); err == nil {
			t.Errorf("options %+v: no error", bad)
		}
	}
	if got := NodePoolName("Standard_NC24ads_A100_v4"); got != "gpu-standard-nc24ads-a100-v4" {
		t.Errorf("NodePoolName = %s", got)
	}
}

func TestParseErrors(t *testing.T) {
	parted := migParted(t)
	good := `types:
- name: t1
  provider: aws
  product: NVIDIA A100-SXM4-40GB
  gpus: 2
  cpu: 8
  memoryGiB: 64
  setup: {migConfig: all-balanced}
  price: {usdPerHour: 1.5, region: r, source: s}
`
	if s, err := Parse([]byte(good), parted); err != nil || len(s.Types()) != 1 {
		t.Fatalf("good file: %v", err)
	}
	for _, tc := range []struct{ name, data, want string }{
		{"empty", "types: []", "no types"},
		{"unknown field", strings.Replace(good, "cpu: 8", "cpus: 8", 1), "unknown field"},
		{"no price source", strings.Replace(good, ", source: s", "", 1), "without a source"},
		{"zero price", strings.Replace(good, "1.5", "0", 1), "positive price"},
		{"unknown MIG config", strings.Replace(good, "all-balanced", "all-nothing", 1), "all-nothing"},
		{"profile of another GPU", strings.Replace(good, "all-balanced", "all-1g.6gb", 1), "all-1g.6gb"},
		{"unknown product without memory", strings.Replace(strings.Replace(good, "NVIDIA A100-SXM4-40GB", "NVIDIA T4", 1), "setup: {migConfig: all-balanced}", "setup: {}", 1), "gpuMemoryMiB"},
		{"one replica", strings.Replace(good, "{migConfig: all-balanced}", "{timeSlicing: {replicas: 1}}", 1), "replicas 1"},
		{"duplicate", good + strings.SplitN(good, "\n", 2)[1], "defined twice"},
		{"no GPUs", strings.Replace(good, "gpus: 2", "gpus: 0", 1), "gpus 0"},
	} {
		_, err := Parse([]byte(tc.data), parted)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
	if _, err := Parse([]byte(good), nil); err == nil || !strings.Contains(err.Error(), "mig-parted") {
		t.Errorf("MIG config without mig-parted: %v", err)
	}
}
