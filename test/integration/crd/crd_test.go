// Package crd tests the GPUNode CRD (manifests/crds) and the generated
// clientset, apply configurations, informers and listers (pkg/generated)
// against a real kube-apiserver (test/framework). Run
// `hack/control-plane.sh build` first; without the binaries the test skips.
package crd

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/yaml"

	gpuslicev1alpha1 "github.com/gpuslice/gpuslice/pkg/apis/gpuslice/v1alpha1"
	applyv1alpha1 "github.com/gpuslice/gpuslice/pkg/generated/applyconfiguration/gpuslice/v1alpha1"
	"github.com/gpuslice/gpuslice/pkg/generated/clientset/versioned"
	"github.com/gpuslice/gpuslice/pkg/generated/informers/externalversions"
	"github.com/gpuslice/gpuslice/pkg/localcluster/controlplane"
	"github.com/gpuslice/gpuslice/pkg/topology"
	"github.com/gpuslice/gpuslice/pkg/topology/fixtures"
	"github.com/gpuslice/gpuslice/test/framework"
)

func TestGPUNodeCRD(t *testing.T) {
	cp := framework.StartControlPlane(t, controlplane.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cfg := cp.Config()

	installCRDs(ctx, t, apiextensionsclient.NewForConfigOrDie(cfg))
	client := versioned.NewForConfigOrDie(cfg)
	gpunodes := client.GpusliceV1alpha1().GPUNodes()

	// Create a node built from a fixture topology, with the typed client.
	cat := topology.NewCatalog()
	topo := fixtures.MustBuild(cat, fixtures.Spec{
		Name: "gpu-node-1", Product: "NVIDIA A100-SXM4-40GB", GPUs: 2,
		MIG: []string{"1g.5gb", "1g.5gb", "2g.10gb", "3g.20gb"}, Replicas: 4, RenameByDefault: true,
	})
	spec := gpuslicev1alpha1.SpecFromTopology(topo)
	spec.State = gpuslicev1alpha1.StateReady // SpecFromTopology filled the summary: 2 GPUs, mixed, 32/32
	spec.Allocations = []gpuslicev1alpha1.PodAllocation{{
		PodUID: "0b6c5f1e-0000-4000-8000-000000000001", Namespace: "default", Name: "trainer",
		Containers: []gpuslicev1alpha1.ContainerAllocation{{
			Name: "main",
			Devices: []gpuslicev1alpha1.ResourceDevices{{
				Resource: "nvidia.com/mig-1g.5gb.shared", DeviceIDs: []string{spec.GPUs[0].Instances[0].DeviceID + "::0"},
			}},
		}},
	}}
	want := &gpuslicev1alpha1.GPUNode{ObjectMeta: metav1.ObjectMeta{Name: topo.Name}, Spec: spec}

	var created *gpuslicev1alpha1.GPUNode
	// Established can precede the moment the resource is served by a hair:
	// retry NotFound briefly.
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		var err error
		created, err = gpunodes.Create(ctx, want, metav1.CreateOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil, err
	})
	if err != nil {
		t.Fatalf("creating GPUNode: %v", err)
	}
	if !reflect.DeepEqual(created.Spec, want.Spec) {
		t.Errorf("created spec differs from the one sent:\n got  %+v\n want %+v", created.Spec, want.Spec)
	}

	t.Run("InformerAndLister", func(t *testing.T) {
		factory := externalversions.NewSharedInformerFactory(client, 0)
		lister := factory.Gpuslice().V1alpha1().GPUNodes().Lister()
		stop := make(chan struct{})
		defer factory.Shutdown() // waits for the informers, which stop on close(stop)
		defer close(stop)
		factory.Start(stop)
		for typ, synced := range factory.WaitForCacheSync(ctx.Done()) {
			if !synced {
				t.Fatalf("informer for %v did not sync", typ)
			}
		}
		var got *gpuslicev1alpha1.GPUNode
		err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
			var err error
			got, err = lister.Get(topo.Name)
			if apierrors.IsNotFound(err) {
				return false, nil
			}
			return err == nil, err
		})
		if err != nil {
			t.Fatalf("lister.Get(%s): %v", topo.Name, err)
		}
		if got.ResourceVersion != created.ResourceVersion || !reflect.DeepEqual(got.Spec, want.Spec) {
			t.Errorf("lister returned %+v, want %+v", got, created)
		}
		if rt := got.Spec.Topology(); !reflect.DeepEqual(rt, topo) {
			t.Errorf("topology read back through the lister differs:\n got  %+v\n want %+v", rt, topo)
		}
		all, err := lister.List(labels.Everything())
		if err != nil || len(all) != 1 {
			t.Errorf("lister.List = %d objects, %v; want 1", len(all), err)
		}
	})

	t.Run("ServerSideApply", func(t *testing.T) {
		const name = "gpu-node-ssa"
		ac := applyv1alpha1.GPUNode(name).WithSpec(applyv1alpha1.GPUNodeSpec().
			WithNodeName(name).
			WithMIGStrategy("none").
			WithState(gpuslicev1alpha1.StateReconfiguring).
			WithGPUs(applyv1alpha1.GPU().WithUUID("GPU-1").WithIndex(0).WithProduct("NVIDIA H100 80GB HBM3").
				WithMemoryMiB(81559).WithHealthy(true)))
		got, err := gpunodes.Apply(ctx, ac, metav1.ApplyOptions{FieldManager: "gpuslice-exporter", Force: true})
		if err != nil {
			t.Fatalf("apply: %v", err)
		}
		if got.Spec.State != gpuslicev1alpha1.StateReconfiguring || len(got.Spec.GPUs) != 1 {
			t.Errorf("applied object: %+v", got.Spec)
		}
		// A second apply of the same manager changes the state and drops the
		// GPU list (atomic list, no longer in the configuration).
		ac.Spec.WithState(gpuslicev1alpha1.StateReady)
		ac.Spec.GPUs = nil
		got, err = gpunodes.Apply(ctx, ac, metav1.ApplyOptions{FieldManager: "gpuslice-exporter", Force: true})
		if err != nil {
			t.Fatalf("second apply: %v", err)
		}
		if got.Spec.State != gpuslicev1alpha1.StateReady || len(got.Spec.GPUs) != 0 {
			t.Errorf("after the second apply: state %q, %d GPUs; want Ready, 0", got.Spec.State, len(got.Spec.GPUs))
		}
	})

	t.Run("PrinterColumns", func(t *testing.T) {
		raw, err := client.GpusliceV1alpha1().RESTClient().Get().
			AbsPath("/apis/gpuslice.io/v1alpha1/gpunodes", topo.Name).
			SetHeader("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io").
			DoRaw(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var table metav1.Table
		if err := json.Unmarshal(raw, &table); err != nil {
			t.Fatal(err)
		}
		var cols []string
		for _, c := range table.ColumnDefinitions {
			cols = append(cols, c.Name)
		}
		if want := []string{"Name", "GPUs", "MIG", "Slices", "State", "Age"}; !slices.Equal(cols, want) {
			t.Errorf("columns = %q, want %q", cols, want)
		}
		if len(table.Rows) != 1 || len(table.Rows[0].Cells) < 5 {
			t.Fatalf("rows = %+v", table.Rows)
		}
		cells := table.Rows[0].Cells
		if cells[0] != topo.Name || cells[1] != float64(2) || cells[2] != "mixed" || cells[3] != "32/32" || cells[4] != "Ready" {
			t.Errorf("row = %v, want [%s 2 mixed 32/32 Ready ...]", cells, topo.Name)
		}
	})

	t.Run("SchemaValidation", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			mutate func(*gpuslicev1alpha1.GPUNodeSpec)
			field  string
		}{
			{"migStrategy bogus", func(s *gpuslicev1alpha1.GPUNodeSpec) { s.MIGStrategy = "bogus" }, "spec.migStrategy"},
			{"instance size 0", func(s *gpuslicev1alpha1.GPUNodeSpec) { s.GPUs[0].Instances[1].Size = 0 }, "spec.gpus[0].instances[1].size"},
			{"state bogus", func(s *gpuslicev1alpha1.GPUNodeSpec) { s.State = "Bogus" }, "spec.state"},
			{"replicas 0", func(s *gpuslicev1alpha1.GPUNodeSpec) { s.TimeSlicing.Resources[0].Replicas = 0 }, "spec.timeSlicing.resources[0].replicas"},
			{"memory negative", func(s *gpuslicev1alpha1.GPUNodeSpec) { s.GPUs[1].MemoryMiB = -1 }, "spec.gpus[1].memoryMiB"},
			{"GPU count negative", func(s *gpuslicev1alpha1.GPUNodeSpec) { s.Summary.GPUs = -2 }, "spec.summary.gpus"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				bad := want.DeepCopy()
				bad.Name = "bad-" + strings.ToLower(strings.ReplaceAll(tc.name, " ", "-"))
				tc.mutate(&bad.Spec)
				_, err := gpunodes.Create(ctx, bad, metav1.CreateOptions{})
				if !apierrors.IsInvalid(err) {
					t.Fatalf("create = %v, want an Invalid error", err)
				}
				// Rejected for that field and nothing else.
				var fields []string
				if se, ok := err.(apierrors.APIStatus); ok && se.Status().Details != nil {
					for _, c := range se.Status().Details.Causes {
						fields = append(fields, c.Field)
					}
				}
				if !slices.Equal(fields, []string{tc.field}) {
					t.Errorf("rejected for fields %q, want only %s (error: %v)", fields, tc.field, err)
				}
				if _, err := gpunodes.Get(ctx, bad.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
					t.Errorf("rejected object exists (get: %v)", err)
				}
			})
		}
	})
}

// installCRDs creates every CRD in manifests/crds and waits until each is
// Established.
func installCRDs(ctx context.Context, t *testing.T, c apiextensionsclient.Interface) {
	t.Helper()
	root, err := controlplane.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(root, "manifests", "crds", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no CRDs in manifests/crds (%v): run hack/update-codegen.sh", err)
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := yaml.UnmarshalStrict(raw, crd); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if _, err := c.ApiextensionsV1().CustomResourceDefinitions().Create(ctx, crd, metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating CRD %s: %v", crd.Name, err)
		}
		err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			got, err := c.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, crd.Name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			for _, cond := range got.Status.Conditions {
				if cond.Type == apiextensionsv1.NamesAccepted && cond.Status == apiextensionsv1.ConditionFalse {
					return false, &crdError{crd.Name, cond.Message}
				}
				if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			t.Fatalf("CRD %s not established: %v", crd.Name, err)
		}
	}
}

type crdError struct{ name, msg string }

func (e *crdError) Error() string { return "CRD " + e.name + ": names not accepted: " + e.msg }
