package exporter

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	gpusliceapi "github.com/gpuslice/gpuslice/pkg/apis/gpuslice/v1alpha1"
	"github.com/gpuslice/gpuslice/pkg/exporter/agent"
	"github.com/gpuslice/gpuslice/pkg/exporter/dpconfig"
	"github.com/gpuslice/gpuslice/pkg/exporter/kubelet"
	"github.com/gpuslice/gpuslice/pkg/exporter/nvml"
	"github.com/gpuslice/gpuslice/pkg/exporter/nvml/fake"
	versioned "github.com/gpuslice/gpuslice/pkg/generated/clientset/versioned"
	"github.com/gpuslice/gpuslice/pkg/localcluster"
)

// vanishingKubelet is a PodResources API whose socket can disappear.
type vanishingKubelet struct {
	mu   sync.Mutex
	gone bool
}

func (k *vanishingKubelet) List(context.Context) ([]kubelet.PodDevices, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.gone {
		return nil, errors.New("dial unix /var/lib/kubelet/pod-resources/kubelet.sock: connect: no such file or directory")
	}
	return nil, nil
}

func (k *vanishingKubelet) set(gone bool) {
	k.mu.Lock()
	k.gone = gone
	k.mu.Unlock()
}

// TestExporterKubeletSocketAndCrashLoop: the kubelet's socket vanishes and
// returns, then the exporter crash-loops (killed and restarted five times).
// The node goes Degraded and back with one write each, none while the
// socket stays away (the exporter polls it five times a second), and a
// restarted exporter whose node did not change writes nothing.
func TestExporterKubeletSocketAndCrashLoop(t *testing.T) {
	ctx, _, cp, admin := exporterCluster(t, node)
	adminGPU, err := versioned.NewForConfig(cp.Config())
	if err != nil {
		t.Fatal(err)
	}
	nv, err := fake.New(node, []fake.GPUSpec{{Product: "NVIDIA A100-SXM4-40GB", MIG: []string{"1g.5gb", "1g.5gb", "2g.10gb", "3g.20gb"}}})
	if err != nil {
		t.Fatal(err)
	}
	clients, err := agent.NewClients(cp.TokenConfig(exporterToken(t, ctx, admin, node)))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := dpconfig.Parse([]byte("version: v1\nflags:\n  migStrategy: mixed\n"))
	if err != nil {
		t.Fatal(err)
	}
	kub := &vanishingKubelet{}
	// run starts one exporter process's worth of agent; stop ends it.
	run := func() (m *agent.Metrics, stop func()) {
		m = agent.NewMetrics()
		a, err := agent.New(agent.Options{
			NodeName: node, LeaseNamespace: localcluster.LeaseNamespace,
			HeartbeatInterval: time.Second, PollInterval: 200 * time.Millisecond, Resync: 5 * time.Second,
			MinWriteInterval: 100 * time.Millisecond,
		}, clients, nvml.NewReader(nv.Interface()), kub, func() (*dpconfig.Config, error) { return cfg, nil }, m)
		if err != nil {
			t.Fatal(err)
		}
		actx, acancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- a.Run(actx) }()
		return m, func() {
			acancel()
			if err := <-done; err != nil {
				t.Fatalf("exporter stopped with %v", err)
			}
		}
	}
	gpuNodes := adminGPU.GpusliceV1alpha1().GPUNodes()
	waitFor := func(what string, cond func(*gpusliceapi.GPUNode) bool) *gpusliceapi.GPUNode {
		t.Helper()
		var last *gpusliceapi.GPUNode
		start := time.Now()
		if err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 5*time.Second, true, func(ctx context.Context) (bool, error) {
			gn, err := gpuNodes.Get(ctx, node, metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			last = gn
			return cond(gn), nil
		}); err != nil {
			t.Fatalf("%s: not within 5s; last %+v", what, last)
		}
		t.Logf("%s after %s", what, time.Since(start).Round(10*time.Millisecond))
		return last
	}
	ready := func(gn *gpusliceapi.GPUNode) bool { return gn.Spec.State == gpusliceapi.StateReady }

	m, stop := run()
	waitFor("published Ready", ready)
	time.Sleep(time.Second)
	if w := writes(t, m); w != 1 {
		t.Fatalf("%d writes to publish, want 1", w)
	}

	kub.set(true)
	gn := waitFor("Degraded while the kubelet socket is gone", func(gn *gpusliceapi.GPUNode) bool { return gn.Spec.State == gpusliceapi.StateDegraded })
	if !strings.Contains(gn.Spec.Message, "kubelet PodResources") || !strings.Contains(gn.Spec.Message, "no such file") {
		t.Fatalf("Degraded message %q does not say the kubelet socket is gone", gn.Spec.Message)
	}
	time.Sleep(3 * time.Second) // 15 polls of a missing socket
	if w := writes(t, m); w != 2 {
		t.Fatalf("%d writes after 3 s without the kubelet socket, want 2 (no write storm)", w)
	}
	kub.set(false)
	gn = waitFor("Ready again once the socket is back", ready)
	time.Sleep(time.Second)
	if w := writes(t, m); w != 3 {
		t.Fatalf("%d writes after the socket came back, want 3", w)
	}
	stop()

	// Crash loop: each restart reads the live object, finds it as it
	// should be, and writes nothing.
	for i := 0; i < 5; i++ {
		m, stop := run()
		time.Sleep(1500 * time.Millisecond)
		stop()
		if w := writes(t, m); w != 0 {
			t.Fatalf("restart %d wrote the unchanged GPUNode %d times", i+1, w)
		}
	}
	if got, err := gpuNodes.Get(ctx, node, metav1.GetOptions{}); err != nil || got.ResourceVersion != gn.ResourceVersion {
		t.Fatalf("GPUNode rewritten during the crash loop: resourceVersion %s -> %v (%v)", gn.ResourceVersion, got.GetResourceVersion(), err)
	}
	// The heartbeat went on across restarts.
	l, err := admin.CoordinationV1().Leases(localcluster.LeaseNamespace).Get(ctx, node, metav1.GetOptions{})
	if err != nil || time.Since(l.Spec.RenewTime.Time) > 3*time.Second {
		t.Fatalf("Lease after the crash loop: %+v, %v", l, err)
	}
}
