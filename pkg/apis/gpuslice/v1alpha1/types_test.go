package v1alpha1

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/gpuslice/gpuslice/pkg/topology"
	"github.com/gpuslice/gpuslice/pkg/topology/fixtures"
)

var a100MIG = []string{"1g.5gb", "1g.5gb", "2g.10gb", "3g.20gb"}

func roundTripCases() map[string]fixtures.Spec {
	return map[string]fixtures.Spec{
		"mig": {Name: "n1", Product: "NVIDIA A100-SXM4-40GB", GPUs: 2, MIG: a100MIG},
		"mig+time-slicing": {Name: "n2", Product: "NVIDIA A100-SXM4-40GB", GPUs: 2, MIG: a100MIG,
			Replicas: 4, RenameByDefault: true},
		"mig single": {Name: "n3", Product: "NVIDIA A100-SXM4-40GB", GPUs: 1,
			MIG: []string{"3g.20gb", "3g.20gb"}, Strategy: topology.MIGStrategySingle, Policy: topology.PolicyPacked},
		"whole GPUs+time-slicing": {Name: "n4", Product: "NVIDIA A100-SXM4-40GB", GPUs: 4, Replicas: 2},
	}
}

// TestSpecRoundTrip converts fixture topologies to the published spec and
// back, directly and through JSON (what the API server stores).
func TestSpecRoundTrip(t *testing.T) {
	cat := topology.NewCatalog()
	for name, fs := range roundTripCases() {
		t.Run(name, func(t *testing.T) {
			want := fixtures.MustBuild(cat, fs)
			spec := SpecFromTopology(want)
			if spec.NodeName != fs.Name {
				t.Errorf("NodeName = %q, want %q", spec.NodeName, fs.Name)
			}
			if len(spec.GPUs) != fs.GPUs {
				t.Errorf("len(GPUs) = %d, want %d", len(spec.GPUs), fs.GPUs)
			}
			if fs.Replicas > 0 && (spec.TimeSlicing == nil || len(spec.TimeSlicing.Resources) == 0) {
				t.Errorf("TimeSlicing = %+v, want resources with %d replicas", spec.TimeSlicing, fs.Replicas)
			}

			got := spec.Topology()
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Topology(SpecFromTopology(n)) differs from n:\n got  %+v\n want %+v", got, want)
			}
			if err := got.Validate(cat); err != nil {
				t.Errorf("round-tripped topology does not validate: %v", err)
			}

			raw, err := json.Marshal(&GPUNode{ObjectMeta: metav1.ObjectMeta{Name: fs.Name}, Spec: spec})
			if err != nil {
				t.Fatal(err)
			}
			var decoded GPUNode
			if err := json.Unmarshal(raw, &decoded); err != nil {
				t.Fatal(err)
			}
			if got := decoded.Spec.Topology(); !reflect.DeepEqual(got, want) {
				t.Errorf("topology after JSON round trip differs:\n got  %+v\n want %+v\n json %s", got, want, raw)
			}
		})
	}
}

// TestSpecFromTopologyDefaultsMIGStrategy: a model node without a strategy is
// published as "none", which the CRD's enum accepts.
func TestSpecFromTopologyDefaultsMIGStrategy(t *testing.T) {
	s := SpecFromTopology(&topology.Node{Name: "n"})
	if s.MIGStrategy != string(topology.MIGStrategyNone) {
		t.Errorf("MIGStrategy = %q, want %q", s.MIGStrategy, topology.MIGStrategyNone)
	}
}

func sampleNode() *GPUNode {
	n := fixtures.MustBuild(topology.NewCatalog(), fixtures.Spec{
		Name: "n1", Product: "NVIDIA A100-SXM4-40GB", GPUs: 2, MIG: a100MIG, Replicas: 4, RenameByDefault: true,
	})
	spec := SpecFromTopology(n)
	spec.State = StateReady
	spec.Summary = Summary{GPUs: 2, Slices: "32/32"}
	spec.Allocations = []PodAllocation{{
		PodUID: "uid-1", Namespace: "default", Name: "p",
		Containers: []ContainerAllocation{{
			Name:    "c",
			Devices: []ResourceDevices{{Resource: "nvidia.com/mig-1g.5gb", DeviceIDs: []string{"MIG-a::1", "MIG-a::2"}}},
		}},
	}}
	return &GPUNode{
		ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{"a": "b"}},
		Spec:       spec,
	}
}

func TestDeepCopyIndependence(t *testing.T) {
	orig := sampleNode()
	keep := sampleNode()
	cp := orig.DeepCopy()
	if !reflect.DeepEqual(cp, orig) {
		t.Fatalf("DeepCopy differs from the original")
	}

	cp.Labels["a"] = "changed"
	cp.Spec.GPUs[0].Instances[0].Size = 99
	cp.Spec.GPUs[1].UUID = "changed"
	cp.Spec.TimeSlicing.Resources[0].Replicas = 99
	cp.Spec.TimeSlicing.RenameByDefault = false
	cp.Spec.Allocations[0].Containers[0].Devices[0].DeviceIDs[0] = "changed"
	cp.Spec.Allocations[0].Containers[0].Name = "changed"
	cp.Spec.Summary.Slices = "0/0"
	if !reflect.DeepEqual(orig, keep) {
		t.Errorf("changing the copy changed the original")
	}

	obj := orig.DeepCopyObject()
	if _, ok := obj.(*GPUNode); !ok {
		t.Fatalf("DeepCopyObject returned %T, want *GPUNode", obj)
	}

	list := &GPUNodeList{Items: []GPUNode{*sampleNode()}}
	lcp, ok := list.DeepCopyObject().(*GPUNodeList)
	if !ok {
		t.Fatalf("GPUNodeList.DeepCopyObject returned %T", list.DeepCopyObject())
	}
	lcp.Items[0].Spec.GPUs[0].Instances[0].Profile = "changed"
	if !reflect.DeepEqual(list.Items[0], *keep) {
		t.Errorf("changing the list copy changed the original list")
	}
}

func TestAddToScheme(t *testing.T) {
	s := runtime.NewScheme()
	if err := AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	for _, obj := range []runtime.Object{&GPUNode{}, &GPUNodeList{}} {
		gvks, _, err := s.ObjectKinds(obj)
		if err != nil {
			t.Fatal(err)
		}
		if len(gvks) != 1 || gvks[0].GroupVersion() != SchemeGroupVersion {
			t.Errorf("%T registered as %v, want group version %v", obj, gvks, SchemeGroupVersion)
		}
	}
}

// loadCRD decodes the one CRD file in manifests/crds.
func loadCRD(t *testing.T) *apiextensionsv1.CustomResourceDefinition {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "..", "..", "..", "manifests", "crds", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 1 {
		t.Fatalf("manifests/crds holds %d CRD files (%v), want 1: run hack/update-codegen.sh", len(files), files)
	}
	raw, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := yaml.UnmarshalStrict(raw, crd); err != nil {
		t.Fatalf("decoding %s: %v", files[0], err)
	}
	return crd
}

func TestCRDManifest(t *testing.T) {
	crd := loadCRD(t)
	if crd.Kind != "CustomResourceDefinition" || crd.APIVersion != apiextensionsv1.SchemeGroupVersion.String() {
		t.Errorf("kind %s/%s, want apiextensions.k8s.io/v1 CustomResourceDefinition", crd.APIVersion, crd.Kind)
	}
	if crd.Name != "gpunodes."+GroupName {
		t.Errorf("name = %q, want gpunodes.%s", crd.Name, GroupName)
	}
	if crd.Spec.Group != GroupName {
		t.Errorf("group = %q, want %q", crd.Spec.Group, GroupName)
	}
	if crd.Spec.Scope != apiextensionsv1.ClusterScoped {
		t.Errorf("scope = %q, want Cluster", crd.Spec.Scope)
	}
	if n := crd.Spec.Names; n.Kind != "GPUNode" || n.ListKind != "GPUNodeList" || n.Plural != "gpunodes" || n.Singular != "gpunode" {
		t.Errorf("names = %+v", n)
	}
	if len(crd.Spec.Versions) != 1 {
		t.Fatalf("%d versions, want 1", len(crd.Spec.Versions))
	}
	v := crd.Spec.Versions[0]
	if v.Name != SchemeGroupVersion.Version || !v.Served || !v.Storage {
		t.Errorf("version %q served=%v storage=%v, want %q served and stored", v.Name, v.Served, v.Storage, SchemeGroupVersion.Version)
	}

	wantCols := []struct{ name, typ, path string }{
		{"GPUs", "integer", ".spec.summary.gpus"},
		{"MIG", "string", ".spec.summary.mig"},
		{"Slices", "string", ".spec.summary.slices"},
		{"State", "string", ".spec.state"},
		{"Age", "date", ".metadata.creationTimestamp"},
	}
	if len(v.AdditionalPrinterColumns) != len(wantCols) {
		t.Errorf("%d printer columns, want %d: %+v", len(v.AdditionalPrinterColumns), len(wantCols), v.AdditionalPrinterColumns)
	}
	for i, w := range wantCols {
		if i >= len(v.AdditionalPrinterColumns) {
			break
		}
		c := v.AdditionalPrinterColumns[i]
		if c.Name != w.name || c.Type != w.typ || c.JSONPath != w.path {
			t.Errorf("printer column %d = {%s %s %s}, want {%s %s %s}", i, c.Name, c.Type, c.JSONPath, w.name, w.typ, w.path)
		}
	}

	if v.Schema == nil || v.Schema.OpenAPIV3Schema == nil {
		t.Fatal("no openAPIV3Schema")
	}
	spec, ok := v.Schema.OpenAPIV3Schema.Properties["spec"]
	if !ok {
		t.Fatal("schema has no spec")
	}
	for field, want := range map[string][]string{
		"migStrategy":      {"none", "single", "mixed"},
		"state":            {string(StateReady), string(StateReconfiguring), string(StateDegraded)},
		"deviceIDStrategy": {"uuid", "index"},
	} {
		prop, ok := spec.Properties[field]
		if !ok {
			t.Errorf("spec has no %s", field)
			continue
		}
		if got := enumValues(t, prop.Enum); !reflect.DeepEqual(got, want) {
			t.Errorf("spec.%s enum = %q, want %q", field, got, want)
		}
	}
	for _, req := range []string{"nodeName", "migStrategy", "state"} {
		if !contains(spec.Required, req) {
			t.Errorf("spec.required = %v, lacks %s", spec.Required, req)
		}
	}
	size := spec.Properties["gpus"].Items.Schema.Properties["instances"].Items.Schema.Properties["size"]
	if size.Minimum == nil || *size.Minimum != 1 {
		t.Errorf("spec.gpus[].instances[].size minimum = %v, want 1", size.Minimum)
	}
}

func enumValues(t *testing.T, enum []apiextensionsv1.JSON) []string {
	t.Helper()
	var out []string
	for _, e := range enum {
		var s string
		if err := json.Unmarshal(e.Raw, &s); err != nil {
			t.Fatalf("enum value %s: %v", e.Raw, err)
		}
		out = append(out, s)
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestSummaryColumns: the printer columns are filled by SpecFromTopology,
// whoever writes the object, and the MIG column is empty for a node without
// MIG even when the device plugin runs with a MIG strategy.
func TestSummaryColumns(t *testing.T) {
	cat := topology.NewCatalog()
	mig := SpecFromTopology(fixtures.MustBuild(cat, fixtures.Spec{Name: "m", Product: "NVIDIA A100-SXM4-40GB", GPUs: 2, MIG: a100MIG}))
	if mig.Summary.GPUs != 2 || mig.Summary.MIG != "mixed" || mig.Summary.Slices != "8/8" {
		t.Fatalf("MIG node summary %+v", mig.Summary)
	}
	whole := fixtures.MustBuild(cat, fixtures.Spec{Name: "w", Product: "NVIDIA H200", GPUs: 4})
	whole.MIGStrategy = topology.MIGStrategyMixed // the GPU operator's cluster-wide setting
	spec := SpecFromTopology(whole)
	if spec.Summary.GPUs != 4 || spec.Summary.MIG != "" || spec.Summary.Slices != "4/4" {
		t.Fatalf("whole-GPU node summary %+v", spec.Summary)
	}
	allocs := []PodAllocation{{PodUID: "u", Namespace: "ns", Name: "p", Containers: []ContainerAllocation{{Name: "c",
		Devices: []ResourceDevices{{Resource: "nvidia.com/gpu", DeviceIDs: []string{whole.GPUs[0].UUID}}}}}}}
	if s := Summarize(whole, allocs); s.Slices != "3/4" {
		t.Fatalf("with an allocation: %+v", s)
	}
}
