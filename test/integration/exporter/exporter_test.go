// Package exporter runs the real exporter (fake NVML, stub kubelet) against
// a real etcd and kube-apiserver, as the exporter's own service account with
// a token bound to a pod on its node, under the shipped RBAC and admission
// policy.
package exporter

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	gpusliceapi "github.com/gpuslice/gpuslice/pkg/apis/gpuslice/v1alpha1"
	"github.com/gpuslice/gpuslice/pkg/exporter/agent"
	"github.com/gpuslice/gpuslice/pkg/exporter/dpconfig"
	"github.com/gpuslice/gpuslice/pkg/exporter/kubelet"
	"github.com/gpuslice/gpuslice/pkg/exporter/nvml"
	"github.com/gpuslice/gpuslice/pkg/exporter/nvml/fake"
	versioned "github.com/gpuslice/gpuslice/pkg/generated/clientset/versioned"
	"github.com/gpuslice/gpuslice/pkg/localcluster"
	"github.com/gpuslice/gpuslice/pkg/localcluster/controlplane"
)

// stubKubelet serves allocations as the PodResources API would.
type stubKubelet struct {
	mu   sync.Mutex
	pods []kubelet.PodDevices
}

func (s *stubKubelet) List(context.Context) ([]kubelet.PodDevices, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]kubelet.PodDevices(nil), s.pods...), nil
}

func (s *stubKubelet) set(pods ...kubelet.PodDevices) {
	s.mu.Lock()
	s.pods = pods
	s.mu.Unlock()
}

const node = "gpu-0"

// exporterToken returns a token of the exporter's service account bound to a
// pod on the given node: the API server adds the node name to its user info.
func exporterToken(t *testing.T, ctx context.Context, kube kubernetes.Interface, nodeName string) string {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "exporter-" + nodeName, Namespace: localcluster.LeaseNamespace},
		Spec: corev1.PodSpec{
			NodeName:           nodeName,
			ServiceAccountName: "gpuslice-exporter",
			Containers:         []corev1.Container{{Name: "exporter", Image: "registry.k8s.io/pause:3.10"}},
		},
	}
	created, err := kube.CoreV1().Pods(localcluster.LeaseNamespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := kube.CoreV1().ServiceAccounts(localcluster.LeaseNamespace).CreateToken(ctx, "gpuslice-exporter", &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{
			Audiences:      []string{controlplane.ServiceAccountIssuer},
			BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: created.Name, UID: created.UID},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tr.Status.Token
}

func TestExporterPublishesOnlyChanges(t *testing.T) {
	ctx, cancel, cp, admin := exporterCluster(t, node, "gpu-1")
	cfgPath := filepath.Join(t.TempDir(), "config.yaml")
	writeConfig := func(s string) {
		if err := os.WriteFile(cfgPath+".tmp", []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(cfgPath+".tmp", cfgPath); err != nil {
			t.Fatal(err)
		}
	}
	writeConfig("version: v1\nflags:\n  migStrategy: mixed\n")

	// The exporter talks to the API server as itself.
	token := exporterToken(t, ctx, admin, node)
	exporterCfg := cp.TokenConfig(token)
	kube, err := kubernetes.NewForConfig(exporterCfg)
	if err != nil {
		t.Fatal(err)
	}
	gpu, err := versioned.NewForConfig(exporterCfg)
	if err != nil {
		t.Fatal(err)
	}
	adminGPU, err := versioned.NewForConfig(cp.Config())
	if err != nil {
		t.Fatal(err)
	}

	balanced := []string{"1g.5gb", "1g.5gb", "2g.10gb", "3g.20gb"}
	nv, err := fake.New(node, []fake.GPUSpec{
		{Product: "NVIDIA A100-SXM4-40GB", MIG: balanced},
		{Product: "NVIDIA A100-SXM4-40GB", MIG: balanced},
	})
	if err != nil {
		t.Fatal(err)
	}
	reader := nvml.NewReader(nv.Interface())
	stub := &stubKubelet{}
	// The clients of the command (package app): REST clients of three API
	// groups, nodes and pods read as metadata.
	clients, err := agent.NewClients(exporterCfg)
	if err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(agent.Options{
		NodeName: node, LeaseNamespace: localcluster.LeaseNamespace,
		HeartbeatInterval: time.Second, PollInterval: 200 * time.Millisecond, Resync: 5 * time.Second,
		MinWriteInterval: 100 * time.Millisecond,
	}, clients, reader, stub, func() (*dpconfig.Config, error) { return dpconfig.Load(cfgPath) }, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()

	get := func() *gpusliceapi.GPUNode {
		gn, err := adminGPU.GpusliceV1alpha1().GPUNodes().Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			return nil
		}
		return gn
	}
	waitFor := func(what string, limit time.Duration, cond func(*gpusliceapi.GPUNode) bool) *gpusliceapi.GPUNode {
		t.Helper()
		var last *gpusliceapi.GPUNode
		start := time.Now()
		err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, limit, true, func(context.Context) (bool, error) {
			last = get()
			return last != nil && cond(last), nil
		})
		if err != nil {
			t.Fatalf("%s: not within %s; last %+v", what, limit, last)
		}
		t.Logf("%s after %s", what, time.Since(start).Round(10*time.Millisecond))
		return last
	}

	// 1. Created, Ready, with the catalog's placements, owned by the Node.
	gn := waitFor("published Ready", 10*time.Second, func(gn *gpusliceapi.GPUNode) bool { return gn.Spec.State == gpusliceapi.StateReady })
	if len(gn.Spec.GPUs) != 2 || len(gn.Spec.GPUs[0].Instances) != 4 || gn.Spec.MIGStrategy != "mixed" {
		t.Fatalf("published spec %+v", gn.Spec)
	}
	for _, in := range gn.Spec.GPUs[0].Instances {
		if in.Profile == "3g.20gb" && in.Start != 4 {
			t.Fatalf("3g.20gb at %d, want 4 (all-balanced)", in.Start)
		}
	}
	if len(gn.OwnerReferences) != 1 || gn.OwnerReferences[0].Kind != "Node" || gn.OwnerReferences[0].Name != node {
		t.Fatalf("owner references %+v", gn.OwnerReferences)
	}

	// 2. Thirty seconds without change: the object is not rewritten, the Lease is.
	rv := gn.ResourceVersion
	lease0, err := admin.CoordinationV1().Leases(localcluster.LeaseNamespace).Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !testing.Short() {
		time.Sleep(30 * time.Second)
	} else {
		time.Sleep(5 * time.Second)
	}
	if got := get(); got.ResourceVersion != rv {
		t.Fatalf("GPUNode rewritten without a change: resourceVersion %s -> %s", rv, got.ResourceVersion)
	}
	lease1, err := admin.CoordinationV1().Leases(localcluster.LeaseNamespace).Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !lease1.Spec.RenewTime.After(lease0.Spec.RenewTime.Time) {
		t.Fatalf("Lease not renewed: %v -> %v", lease0.Spec.RenewTime, lease1.Spec.RenewTime)
	}

	// 3. A GPU turns unhealthy (XID 79): published within 2 s.
	nv.SetUnhealthy(1, 79)
	waitFor("unhealthy GPU published", 2*time.Second, func(gn *gpusliceapi.GPUNode) bool {
		return !gn.Spec.GPUs[1].Healthy && strings.Contains(gn.Spec.GPUs[1].UnhealthyReason, "79")
	})

	// 4. The kubelet hands a MIG device to a pod: published within 2 s, with the pod's UID.
	pod, err := admin.CoreV1().Pods("default").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "inference"},
		Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "main", Image: "registry.k8s.io/pause:3.10"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mig := gn.Spec.GPUs[0].Instances[0]
	stub.set(kubelet.PodDevices{Namespace: "default", Name: "inference", Containers: []kubelet.ContainerDevices{{
		Name: "main", Devices: []kubelet.ResourceDevices{{Resource: "nvidia.com/mig-" + mig.Profile, DeviceIDs: []string{mig.DeviceID}}},
	}}})
	gn = waitFor("allocation published", 2*time.Second, func(gn *gpusliceapi.GPUNode) bool {
		return len(gn.Spec.Allocations) == 1 && gn.Spec.Allocations[0].PodUID == string(pod.UID)
	})
	if gn.Spec.AllocationsFingerprint == "" || gn.Spec.Summary.Slices != "3/4" /* GPU 1 is unhealthy: 4 healthy slices, 1 in use */ {
		t.Fatalf("fingerprint %q slices %q", gn.Spec.AllocationsFingerprint, gn.Spec.Summary.Slices)
	}

	// 5. A broken device-plugin config: Degraded with the parse error, no crash.
	writeConfig("version: v1\nsharing:\n  timeSlicing:\n    resources:\n    - name: nvidia.com/gpu\n      replicas: 0\n")
	gn = waitFor("broken config published Degraded", 2*time.Second, func(gn *gpusliceapi.GPUNode) bool { return gn.Spec.State == gpusliceapi.StateDegraded })
	if !strings.Contains(gn.Spec.Message, "replicas") {
		t.Fatalf("Degraded message %q does not name the problem", gn.Spec.Message)
	}
	writeConfig("version: v1\nflags:\n  migStrategy: mixed\n")
	waitFor("fixed config Ready again", 2*time.Second, func(gn *gpusliceapi.GPUNode) bool { return gn.Spec.State == gpusliceapi.StateReady })

	// 6. The admission policy: this exporter cannot write another node's objects.
	other := &gpusliceapi.GPUNode{ObjectMeta: metav1.ObjectMeta{Name: "gpu-1"}, Spec: gpusliceapi.GPUNodeSpec{NodeName: "gpu-1", MIGStrategy: "none", State: gpusliceapi.StateReady}}
	_, err = gpu.GpusliceV1alpha1().GPUNodes().Create(ctx, other, metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) && !apierrors.IsInvalid(err) || !strings.Contains(fmt.Sprint(err), "own node") {
		t.Fatalf("writing another node's GPUNode: %v", err)
	}
	_, err = kube.CoordinationV1().Leases(localcluster.LeaseNamespace).Create(ctx, lease1ForNode("gpu-1"), metav1.CreateOptions{})
	if err == nil || !strings.Contains(err.Error(), "own node") {
		t.Fatalf("writing another node's Lease: %v", err)
	}
	// The admin is not restricted by the policy.
	if _, err := adminGPU.GpusliceV1alpha1().GPUNodes().Create(ctx, other, metav1.CreateOptions{}); err != nil {
		t.Fatalf("admin create: %v", err)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exporter stopped with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("exporter did not stop")
	}
}
