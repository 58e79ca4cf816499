package exporter

import (
	"context"
	"path/filepath"
	"testing"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/gpuslice/gpuslice/pkg/localcluster"
	"github.com/gpuslice/gpuslice/pkg/localcluster/controlplane"
	"github.com/gpuslice/gpuslice/test/framework"
)

func lease1ForNode(node string) *coordinationv1.Lease {
	return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: node, Namespace: localcluster.LeaseNamespace}}
}

// exporterCluster starts a control plane ready for exporters: the CRDs, the
// Lease namespace, the exporter's shipped RBAC and admission policy, and a
// Ready node of each name advertising two 1g.5gb MIG devices. The context
// ends with the test, or when cancel is called.
func exporterCluster(t *testing.T, nodes ...string) (ctx context.Context, cancel context.CancelFunc, cp *controlplane.ControlPlane, admin kubernetes.Interface) {
	t.Helper()
	cp = framework.StartControlPlane(t, controlplane.Options{})
	ctx, cancel = context.WithCancel(context.Background())
	t.Cleanup(cancel)
	admin = cp.Client()
	root, err := controlplane.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if err := localcluster.InstallCRDs(ctx, cp.Config()); err != nil {
		t.Fatal(err)
	}
	if err := localcluster.EnsureNamespace(ctx, admin, localcluster.LeaseNamespace); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"rbac.yaml", "admission-policy.yaml"} {
		if err := localcluster.ApplyFile(ctx, cp.Config(), filepath.Join(root, "manifests", "exporter", f)); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range nodes {
		if _, err := controlplane.CreateReadyNode(ctx, admin, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n}}, corev1.ResourceList{"nvidia.com/mig-1g.5gb": resource.MustParse("2")}); err != nil {
			t.Fatal(err)
		}
	}
	return ctx, cancel, cp, admin
}
