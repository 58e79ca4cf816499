// Package gpucluster starts a control plane ready for gpuslice in a test.
// It stands apart from package framework, which stays thin: it links
// pkg/localcluster (and with it the exporter's cgo NVML bindings), which
// tests of the API alone must not carry.
package gpucluster

import (
	"context"
	"testing"

	"k8s.io/client-go/kubernetes"

	versioned "github.com/gpuslice/gpuslice/pkg/generated/clientset/versioned"
	"github.com/gpuslice/gpuslice/pkg/localcluster"
	"github.com/gpuslice/gpuslice/pkg/localcluster/controlplane"
	"github.com/gpuslice/gpuslice/test/framework"
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

// Start starts a control plane (framework.StartControlPlane), installs
// gpuslice's CRDs and creates the exporter Lease namespace and namespaces.
func Start(t testing.TB, opts controlplane.Options, namespaces ...string) *GPUCluster {
	t.Helper()
	cp := framework.StartControlPlane(t, opts)
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
