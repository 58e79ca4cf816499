package localcluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/gpuslice/gpuslice/pkg/autoscale/instancetypes"
	"github.com/gpuslice/gpuslice/pkg/localcluster/controlplane"
)

// Binaries and CRDs that hack/karpenter.sh and hack/controller-manager.sh
// build into the repository's bin/.
const (
	KarpenterBinary         = "karpenter"
	KarpenterCRDDir         = "karpenter-crds"
	ControllerManagerBinary = "kube-controller-manager"
	// AutoscalerBuildHint builds them.
	AutoscalerBuildHint = "make autoscaler"
)

// ErrAutoscalerMissing is wrapped by the errors of StartKarpenter and
// StartControllerManager when their binaries are not built.
var ErrAutoscalerMissing = errors.New("autoscaler binaries missing")

// Karpenter's resources, as the generated NodePools name them.
var (
	NodePoolGVR      = schema.GroupVersionResource{Group: "karpenter.sh", Version: "v1", Resource: "nodepools"}
	NodeClaimGVR     = schema.GroupVersionResource{Group: "karpenter.sh", Version: "v1", Resource: "nodeclaims"}
	KWOKNodeClassGVR = schema.GroupVersionResource{Group: "karpenter.kwok.sh", Version: "v1alpha1", Resource: "kwoknodeclasses"}
)

// KarpenterOptions configure StartKarpenter.
type KarpenterOptions struct {
	// Types are the instance types Karpenter may launch (one NodePool each).
	Types *instancetypes.Set
	// NodePools shape the NodePools (consolidation, startup taints).
	NodePools instancetypes.NodePoolOptions
	// Zones of the offerings; default ["zone-a"].
	Zones []string
	// BinDir holds karpenter and karpenter-crds/; default the repository's bin/.
	BinDir string
	// ReadyTimeout bounds the wait for /readyz; default 60s.
	ReadyTimeout time.Duration
	// Env are extra environment variables ("NAME=value"), e.g. LOG_LEVEL=debug.
	Env []string
}

// Karpenter is the real Karpenter (its KWOK cloud provider, which creates
// Node objects only) running against a local control plane.
type Karpenter struct {
	Process     *controlplane.Process
	MetricsPort int
	dyn         dynamic.Interface
}

func binDir(dir string) (string, error) {
	if dir != "" {
		return dir, nil
	}
	root, err := controlplane.RepoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "bin"), nil
}

// StartKarpenter installs Karpenter's CRDs (from bin/karpenter-crds), writes
// its instance-types file, starts it (leader election off, batching windows
// of 1 s / 2 s, metrics and health on free loopback ports), waits until
// /readyz answers, and creates the KWOKNodeClass and one NodePool per type.
// The process stops with the control plane.
func StartKarpenter(ctx context.Context, cp *controlplane.ControlPlane, o KarpenterOptions) (*Karpenter, error) {
	if o.Types == nil {
		return nil, errors.New("karpenter: no instance types")
	}
	dir, err := binDir(o.BinDir)
	if err != nil {
		return nil, err
	}
	bin := filepath.Join(dir, KarpenterBinary)
	crds := make([]string, 0, 4)
	for _, f := range []string{"karpenter.sh_nodepools.yaml", "karpenter.sh_nodeclaims.yaml", "karpenter.sh_nodeoverlays.yaml", "karpenter.kwok.sh_kwoknodeclasses.yaml"} {
		crds = append(crds, filepath.Join(dir, KarpenterCRDDir, f))
	}
	for _, f := range append([]string{bin}, crds...) {
		if _, err := os.Stat(f); err != nil {
			return nil, fmt.Errorf("%w: %s (run `%s`)", ErrAutoscalerMissing, f, AutoscalerBuildHint)
		}
	}
	if err := InstallCRDFiles(ctx, cp.Config(), crds...); err != nil {
		return nil, fmt.Errorf("karpenter CRDs: %w", err)
	}
	zones := o.Zones
	if len(zones) == 0 {
		zones = []string{"zone-a"}
	}
	types, err := o.Types.KarpenterInstanceTypes(zones)
	if err != nil {
		return nil, err
	}
	typesPath := filepath.Join(cp.Dir(), "karpenter-instance-types.json")
	if err := os.WriteFile(typesPath, types, 0o644); err != nil {
		return nil, err
	}
	pools, err := o.Types.NodePools(o.NodePools)
	if err != nil {
		return nil, err
	}
	metrics, err := freePort()
	if err != nil {
		return nil, err
	}
	health, err := freePort()
	if err != nil {
		return nil, err
	}
	env := append([]string{
		"KUBECONFIG=" + cp.KubeconfigPath(),
		"DISABLE_LEADER_ELECTION=true",
		"INSTANCE_TYPES_FILE_PATH=" + typesPath,
		"METRICS_PORT=" + strconv.Itoa(metrics),
		"HEALTH_PROBE_PORT=" + strconv.Itoa(health),
		"BATCH_IDLE_DURATION=1s",
		"BATCH_MAX_DURATION=2s",
	}, o.Env...)
	proc, err := cp.StartProcess("karpenter", bin, nil, env)
	if err != nil {
		return nil, err
	}
	timeout := o.ReadyTimeout
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	if err := waitHTTP(ctx, proc, fmt.Sprintf("http://127.0.0.1:%d/readyz", health), timeout); err != nil {
		return nil, fmt.Errorf("karpenter not ready: %w\n%s", err, proc.Tail(30))
	}
	dyn, err := dynamic.NewForConfig(cp.Config())
	if err != nil {
		return nil, err
	}
	k := &Karpenter{Process: proc, MetricsPort: metrics, dyn: dyn}
	if err := k.create(ctx, KWOKNodeClassGVR, instancetypes.KWOKNodeClass()); err != nil {
		return nil, err
	}
	for _, np := range pools {
		if err := k.create(ctx, NodePoolGVR, np); err != nil {
			return nil, err
		}
	}
	return k, nil
}

func (k *Karpenter) create(ctx context.Context, gvr schema.GroupVersionResource, obj *unstructured.Unstructured) error {
	if _, err := k.dyn.Resource(gvr).Create(ctx, obj, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating %s %s: %w", obj.GetKind(), obj.GetName(), err)
	}
	return nil
}

// NodeClaims lists Karpenter's NodeClaims.
func (k *Karpenter) NodeClaims(ctx context.Context) ([]unstructured.Unstructured, error) {
	l, err := k.dyn.Resource(NodeClaimGVR).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	return l.Items, nil
}

// StartControllerManager runs kube-controller-manager with the controllers
// that keep workloads alive when nodes go (deployments, replicasets, jobs,
// the garbage collector and the pod garbage collector), against the control
// plane's admin kubeconfig, without leader election, cloud provider, node
// lifecycle or serving port. It returns once the process has stayed up for
// a second.
func StartControllerManager(ctx context.Context, cp *controlplane.ControlPlane, dir string) (*controlplane.Process, error) {
	dir, err := binDir(dir)
	if err != nil {
		return nil, err
	}
	bin := filepath.Join(dir, ControllerManagerBinary)
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("%w: %s (run `%s`)", ErrAutoscalerMissing, bin, AutoscalerBuildHint)
	}
	args := []string{
		"--kubeconfig=" + cp.KubeconfigPath(),
		"--leader-elect=false",
		"--controllers=deployment-controller,replicaset-controller,job-controller,garbage-collector-controller,pod-garbage-collector-controller",
		"--secure-port=0",
		"--use-service-account-credentials=false",
		"--concurrent-deployment-syncs=5",
		"--concurrent-replicaset-syncs=5",
	}
	proc, err := cp.StartProcess("kube-controller-manager", bin, args, nil)
	if err != nil {
		return nil, err
	}
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(time.Second):
	}
	if exited, err := proc.Exited(); exited {
		return nil, fmt.Errorf("kube-controller-manager exited at start: %v\n%s", err, proc.Tail(30))
	}
	return proc, nil
}

// waitHTTP polls url until it answers 200, the process exits or timeout.
func waitHTTP(ctx context.Context, proc *controlplane.Process, url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: time.Second}
	for {
		if exited, err := proc.Exited(); exited {
			return fmt.Errorf("exited: %v", err)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not answer 200 within %s", url, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// freePort returns a free TCP port on 127.0.0.1 (free when asked: another
// process may take it before it is used).
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// DeleteNodeClaim deletes a NodeClaim: Karpenter drains its node (evicting
// its pods), then deletes the node.
func (k *Karpenter) DeleteNodeClaim(ctx context.Context, name string) error {
	return k.dyn.Resource(NodeClaimGVR).Delete(ctx, name, metav1.DeleteOptions{})
}
