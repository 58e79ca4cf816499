package agent

import (
	"io"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	gpusliceapi "github.com/gpuslice/gpuslice/pkg/apis/gpuslice/v1alpha1"
	"github.com/gpuslice/gpuslice/pkg/exporter/dpconfig"
	"github.com/gpuslice/gpuslice/pkg/exporter/nvml"
	"github.com/gpuslice/gpuslice/pkg/exporter/nvml/fake"
	"github.com/gpuslice/gpuslice/pkg/topology"
	"github.com/gpuslice/gpuslice/pkg/topology/fixtures"
)

// TestFixturesPublishedAsBuilt reads every fake NVML fixture through the real
// reader and checks the published topology equals the one the fixture
// describes (GPUs, MIG geometry and placements, device IDs).
func TestFixturesPublishedAsBuilt(t *testing.T) {
	cat := topology.NewCatalog()
	for _, fx := range fake.Fixtures() {
		t.Run(fx.Name, func(t *testing.T) {
			nv, err := fx.New("node-" + fx.Name)
			if err != nil {
				t.Fatal(err)
			}
			snap, err := nvml.NewReader(nv.Interface()).Snapshot()
			if err != nil {
				t.Fatal(err)
			}
			cfg := dpconfig.Defaults()
			cfg.MIGStrategy = topology.MIGStrategyMixed
			spec := Desired(cat, Inputs{NodeName: "node-" + fx.Name, Snapshot: snap, Config: cfg})
			if spec.State != gpusliceapi.StateReady {
				t.Fatalf("%s: %s", spec.State, spec.Message)
			}
			want := fixtures.MustBuild(cat, fixtures.Spec{Name: "node-" + fx.Name, Product: fx.Product, GPUs: fx.GPUs, MIG: fx.MIG})
			got := spec.Topology()
			for i := range want.GPUs {
				w, g := want.GPUs[i], got.GPUs[i]
				if w.UUID != g.UUID || w.Product != g.Product || w.MIGEnabled != g.MIGEnabled || !reflect.DeepEqual(w.Instances, g.Instances) {
					t.Fatalf("GPU %d published %+v, want %+v", i, g, w)
				}
			}
		})
	}
}

func TestTimeSlicedNodePublishesReplicas(t *testing.T) {
	fx, ok := fake.FixtureByName("h100-80gb")
	if !ok {
		t.Fatal("no h100-80gb fixture")
	}
	nv, err := fx.New("ts")
	if err != nil {
		t.Fatal(err)
	}
	snap, err := nvml.NewReader(nv.Interface()).Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := dpconfig.Parse([]byte("version: v1\nsharing:\n  timeSlicing:\n    renameByDefault: true\n    resources:\n    - name: nvidia.com/gpu\n      replicas: 4\n"), dpconfig.WithOverrides(dpconfig.Overrides{AllocationPolicy: "packed"}))
	if err != nil {
		t.Fatal(err)
	}
	spec := Desired(topology.NewCatalog(), Inputs{NodeName: "ts", Snapshot: snap, Config: cfg})
	caps, err := spec.Topology().Capacity()
	if err != nil {
		t.Fatal(err)
	}
	if spec.State != gpusliceapi.StateReady || spec.AllocationPolicy != "packed" || caps["nvidia.com/gpu.shared"] != int64(4*fx.GPUs) {
		t.Fatalf("state %s policy %s capacity %v", spec.State, spec.AllocationPolicy, caps)
	}
	if spec.Summary.Slices != "32/32" {
		t.Fatalf("slices %q", spec.Summary.Slices)
	}
}

func TestMetricsExposeSlices(t *testing.T) {
	cat := topology.NewCatalog()
	allocs := []gpusliceapi.PodAllocation{{PodUID: "u", Namespace: "ns", Name: "p", Containers: []gpusliceapi.ContainerAllocation{{Name: "c",
		Devices: []gpusliceapi.ResourceDevices{{Resource: "nvidia.com/mig-1g.5gb", DeviceIDs: []string{"MIG-1g0-a"}}}}}}}
	spec := Desired(cat, Inputs{NodeName: "n", Snapshot: a100Snapshot(), Config: mixed(), Allocations: allocs, Unhealthy: map[string]string{"GPU-b": "XID 79"}})
	m := NewMetrics()
	m.observe(&spec, time.Unix(1_800_000_000, 0))
	m.syncError("config")
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	text := string(body)
	for _, want := range []string{
		`gpuslice_exporter_slices_total{gpu="GPU-a",resource="nvidia.com/mig-1g.5gb"} 2`,
		`gpuslice_exporter_slices_in_use{gpu="GPU-a",resource="nvidia.com/mig-1g.5gb"} 1`,
		`gpuslice_exporter_gpu_healthy{gpu="GPU-b"} 0`,
		`gpuslice_exporter_sync_errors_total{stage="config"} 1`,
		`gpuslice_exporter_last_sync_timestamp_seconds 1.8e+09`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
