// Package localcluster puts gpuslice's pieces on a real control plane for
// tests, the demo and the benchmarks: it installs the CRDs, publishes
// simulated GPU nodes (the Node with the capacity the NVIDIA device plugin would advertise, the
// GPUNode the exporter would publish, its heartbeat Lease) and runs the
// scheduler in-process. Only the kubelet and NVML are simulated.
package localcluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/yaml"

	gpusliceapi "github.com/gpuslice/gpuslice/pkg/apis/gpuslice/v1alpha1"
	"github.com/gpuslice/gpuslice/pkg/exporter/agent"
	versioned "github.com/gpuslice/gpuslice/pkg/generated/clientset/versioned"
	"github.com/gpuslice/gpuslice/pkg/localcluster/controlplane"
	"github.com/gpuslice/gpuslice/pkg/topology"
)

// LeaseNamespace is where exporters keep their heartbeat Leases.
const LeaseNamespace = "gpuslice-system"

// InstallCRDs creates every CRD under manifests/crds and waits until each is
// established.
func InstallCRDs(ctx context.Context, cfg *rest.Config) error {
	root, err := controlplane.RepoRoot()
	if err != nil {
		return err
	}
	files, err := filepath.Glob(filepath.Join(root, "manifests", "crds", "*.yaml"))
	if err != nil || len(files) == 0 {
		return fmt.Errorf("no CRDs under manifests/crds: %v", err)
	}
	return InstallCRDFiles(ctx, cfg, files...)
}

// InstallCRDFiles creates the CRD of each file (one CRD a file) and waits
// until each is established.
func InstallCRDFiles(ctx context.Context, cfg *rest.Config, files ...string) error {
	client, err := apiextensionsclient.NewForConfig(cfg)
	if err != nil {
		return err
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := yaml.UnmarshalStrict(data, crd); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		if _, err := client.ApiextensionsV1().CustomResourceDefinitions().Create(ctx, crd, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating CRD %s: %w", crd.Name, err)
		}
		err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			got, err := client.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, crd.Name, metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			for _, c := range got.Status.Conditions {
				if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			return fmt.Errorf("CRD %s not established: %w", crd.Name, err)
		}
	}
	return nil
}

// EnsureNamespace creates a namespace if it does not exist.
func EnsureNamespace(ctx context.Context, c kubernetes.Interface, name string) error {
	_, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// CreateGPUNode creates a ready Node advertising what the device plugin
// would for topo (healthy devices per resource) and publishes topo as the
// node's GPUNode in the given state.
func CreateGPUNode(ctx context.Context, kube kubernetes.Interface, gpu versioned.Interface, topo *topology.Node, state gpusliceapi.NodeState) error {
	caps, err := topo.Capacity()
	if err != nil {
		return err
	}
	res := corev1.ResourceList{}
	for name, n := range caps {
		res[corev1.ResourceName(name)] = *resource.NewQuantity(n, resource.DecimalSI)
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: topo.Name, Labels: map[string]string{"kubernetes.io/hostname": topo.Name}}}
	if _, err := controlplane.CreateReadyNode(ctx, kube, node, res); err != nil {
		return err
	}
	return PublishTopology(ctx, gpu, topo, state, "", nil)
}

// PublishTopology creates or updates the node's GPUNode.
func PublishTopology(ctx context.Context, gpu versioned.Interface, topo *topology.Node, state gpusliceapi.NodeState, message string, allocations []gpusliceapi.PodAllocation) error {
	spec := gpusliceapi.SpecFromTopology(topo)
	spec.State, spec.Message, spec.Allocations = state, message, allocations
	spec.Summary = agent.Summarize(topo, allocations)
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := gpu.GpusliceV1alpha1().GPUNodes().Get(ctx, topo.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			_, err = gpu.GpusliceV1alpha1().GPUNodes().Create(ctx, &gpusliceapi.GPUNode{ObjectMeta: metav1.ObjectMeta{Name: topo.Name}, Spec: spec}, metav1.CreateOptions{})
			return err
		}
		if err != nil {
			return err
		}
		cur.Spec = spec
		_, err = gpu.GpusliceV1alpha1().GPUNodes().Update(ctx, cur, metav1.UpdateOptions{})
		return err
	})
}

// Heartbeat creates or renews the exporter Lease of a node with the given
// renew time.
func Heartbeat(ctx context.Context, kube kubernetes.Interface, node string, renew time.Time) error {
	leases := kube.CoordinationV1().Leases(LeaseNamespace)
	rt := metav1.NewMicroTime(renew)
	holder := "gpuslice-exporter-" + node
	duration := int32(40)
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := leases.Get(ctx, node, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			_, err = leases.Create(ctx, &coordinationv1.Lease{
				ObjectMeta: metav1.ObjectMeta{Name: node, Namespace: LeaseNamespace},
				Spec:       coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &duration, AcquireTime: &rt, RenewTime: &rt},
			}, metav1.CreateOptions{})
			return err
		}
		if err != nil {
			return err
		}
		cur.Spec.RenewTime = &rt
		_, err = leases.Update(ctx, cur, metav1.UpdateOptions{})
		return err
	})
}

// KeepAlive renews the nodes' Leases every interval until ctx ends.
func KeepAlive(ctx context.Context, kube kubernetes.Interface, interval time.Duration, nodes ...string) {
	for {
		for _, n := range nodes {
			_ = Heartbeat(ctx, kube, n, time.Now())
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}

// SchedulerConfig returns a KubeSchedulerConfiguration with the
// gpuslice-binpack and gpuslice-spread profiles, talking to the API server
// through kubeconfig. gpuslice-binpack binds with GPUSlice, as shipped (one
// Binding carrying the assignment); gpuslice-spread keeps the DefaultBinder,
// so the tests cover both ways the assignment is written (Bind, PreBind).
// Likewise gpuslice-binpack filters as shipped (GPUSlice first) and
// gpuslice-spread in the default order. gpuslice-binpack drops the
// system-default topology spreading as shipped, so its pods are signed and
// the scheduler batches them (reusing a cycle's filter and score results);
// gpuslice-spread keeps the defaults and schedules every pod in full.
// A pod's backoff is 1 s (kube-scheduler's default grows to 10 s): the
// tests judge the cluster once it has been quiet for 2 s, which must outlast
// the backoff of a pod woken by the event that lets it fit, while a pod that
// no event wakes still waits for the 5-minute flush and is caught.
func SchedulerConfig(kubeconfig string, heartbeatTimeout time.Duration) string {
	return strings.NewReplacer("KUBECONFIG", kubeconfig, "TIMEOUT", heartbeatTimeout.String()).Replace(`apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection:
  kubeconfig: KUBECONFIG
leaderElection:
  leaderElect: false
podInitialBackoffSeconds: 1
podMaxBackoffSeconds: 1
profiles:
- schedulerName: gpuslice-binpack
  plugins:
    multiPoint:
      enabled:
      - name: GPUSlice
    filter:
      enabled:
      - name: GPUSlice
    postFilter:
      enabled:
      - name: GPUSlice
    bind:
      enabled:
      - name: GPUSlice
  pluginConfig:
  - name: GPUSlice
    args:
      scoringStrategy:
        type: binpack
      heartbeatTimeout: TIMEOUT
      leaseNamespace: gpuslice-system
  - name: PodTopologySpread
    args:
      defaultingType: List
  - name: NodeResourcesFit
    args:
      scoringStrategy:
        type: MostAllocated
- schedulerName: gpuslice-spread
  plugins:
    multiPoint:
      enabled:
      - name: GPUSlice
    postFilter:
      enabled:
      - name: GPUSlice
  pluginConfig:
  - name: GPUSlice
    args:
      scoringStrategy:
        type: spread
      heartbeatTimeout: TIMEOUT
      leaseNamespace: gpuslice-system
`)
}

// Unschedulable returns the message of a pod's PodScheduled=False condition
// ("" when the scheduler has not given up on it).
func Unschedulable(p *corev1.Pod) string {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
			return c.Message
		}
	}
	return ""
}
