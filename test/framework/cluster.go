package framework

import (
	"context"
	"testing"

	"k8s.io/client-go/kubernetes"

	versioned "github.com/gpuslice/gpuslice/pkg/generated/clientset/versioned"
	"github.com/gpuslice/gpuslice/pkg/localcluster"
	"github.com/gpuslice/gpuslice/pkg/localcluster/controlplane"
)

// GPUCluster is a control plane ready for gpuslice: its CRDs installed and
// its namespaces created, with the clients and a context that ends with
// the test.
type GPUCluster struct {
	CP   *controlplane.ControlPlane
	Ctx  context.Context
	Kube kubernetes.Interface
	GPU  versioned.Interface
}

// StartGPUCluster starts a control plane (StartControlPlane), installs
// gpuslice's CRDs and creates the exporter Lease namespace and namespaces.
func StartGPUCluster(t testing.TB, opts controlplane.Options, namespaces ...string) *GPUCluster {
	t.Helper()
	cp := StartControlPlane(t, opts)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	gpu, err := versioned.NewForConfig(cp.Config())
	if err != nil {
		t.Fatal(err)
	}
	if err := localcluster.InstallCRDs(ctx, cp.Config()); err != nil {
		t.Fatal(err)
	}
	for _, ns := range append([]string{localcluster.LeaseNamespace}, namespaces...) {
		if err := localcluster.EnsureNamespace(ctx, cp.Client(), ns); err != nil {
			t.Fatal(err)
		}
	}
	return &GPUCluster{CP: cp, Ctx: ctx, Kube: cp.Client(), GPU: gpu}
}
