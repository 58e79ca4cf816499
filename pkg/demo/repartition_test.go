package demo

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	versioned "github.com/gpuslice/gpuslice/pkg/generated/clientset/versioned"
	"github.com/gpuslice/gpuslice/pkg/localcluster"
	"github.com/gpuslice/gpuslice/pkg/localcluster/controlplane"
	"github.com/gpuslice/gpuslice/pkg/topology"
	"github.com/gpuslice/gpuslice/pkg/topology/fixtures"
)

// The check behind "the pods placed before kept every device they held"
// reports a pod whose GPU was rebuilt under it (as a MIG manager ignoring
// allocations would do), and no false alarm before.
func TestKeptDevicesCatchesALostDevice(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cp, err := controlplane.Start(ctx, t.TempDir())
	if err != nil {
		if errors.Is(err, controlplane.ErrBinariesMissing) && os.Getenv("CI") != "true" {
			t.Skip(controlplane.BuildHint)
		}
		t.Fatal(err)
	}
	defer cp.Stop()
	kube := cp.Client()
	gpu, err := versioned.NewForConfig(cp.Config())
	if err != nil {
		t.Fatal(err)
	}
	if err := localcluster.InstallCRDs(ctx, cp.Config()); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{localcluster.LeaseNamespace, "demo"} {
		if err := localcluster.EnsureNamespace(ctx, kube, ns); err != nil {
			t.Fatal(err)
		}
	}
	sn, err := localcluster.StartSimNode(ctx, kube, gpu, fixtures.Spec{Name: "a100", Product: "NVIDIA A100-SXM4-40GB", GPUs: 1, MIG: balanced},
		localcluster.SimOptions{HeartbeatInterval: time.Second, PollInterval: 200 * time.Millisecond, Resync: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	nodes := map[string]*localcluster.SimNode{"a100": sn}
	q := corev1.ResourceList{corev1.ResourceName(topology.MIGResourceName("1g.5gb")): resource.MustParse("1")}
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "holder"}, Spec: corev1.PodSpec{NodeName: "a100",
		Containers: []corev1.Container{{Name: "main", Image: "pause", Resources: corev1.ResourceRequirements{Limits: q, Requests: q}}}}}
	if _, err := kube.CoreV1().Pods("demo").Create(ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
		l, err := sn.Kubelet.List(ctx)
		return err == nil && len(l) == 1, nil
	}); err != nil {
		t.Fatal("the pod never got a device")
	}
	placed, err := heldDevices(ctx, nodes)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := keptDevices(ctx, nodes, placed, nil); err != nil || n != 1 {
		t.Fatalf("before any change: kept %d, %v; want 1, no error", n, err)
	}
	if n, err := keptDevices(ctx, nodes, placed, []localcluster.MIGRun{{Config: "x", State: "failed", Error: "device MIG-1 in use by demo/holder"}}); err == nil {
		t.Fatalf("a MIG manager run that met a device in use passed (kept %d)", n)
	}
	if err := sn.SetLayout(ctx, []string{"3g.20gb", "3g.20gb"}); err != nil {
		t.Fatal(err)
	}
	n, err := keptDevices(ctx, nodes, placed, nil)
	if err == nil || !strings.Contains(err.Error(), "demo/holder") {
		t.Fatalf("the GPU was rebuilt under demo/holder; check said kept %d, %v", n, err)
	}
}
