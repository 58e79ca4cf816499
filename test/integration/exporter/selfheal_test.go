package exporter

import (
	"context"
	"io"
	"net/http/httptest"
	"regexp"
	"strconv"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	gpusliceapi "github.com/gpuslice/gpuslice/pkg/apis/gpuslice/v1alpha1"
	"github.com/gpuslice/gpuslice/pkg/exporter/agent"
	"github.com/gpuslice/gpuslice/pkg/exporter/dpconfig"
	"github.com/gpuslice/gpuslice/pkg/exporter/nvml"
	"github.com/gpuslice/gpuslice/pkg/exporter/nvml/fake"
	versioned "github.com/gpuslice/gpuslice/pkg/generated/clientset/versioned"
	"github.com/gpuslice/gpuslice/pkg/localcluster"
)

var writesMetric = regexp.MustCompile(`(?m)^gpuslice_exporter_topology_writes_total (\d+)`)

// writes scrapes the exporter's count of GPUNode writes from /metrics.
func writes(t *testing.T, m *agent.Metrics) int {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	match := writesMetric.FindSubmatch(body)
	if match == nil {
		return 0 // not incremented yet
	}
	n, err := strconv.Atoi(string(match[1]))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestExporterRepairsItsGPUNode deletes and hand-edits the GPUNode of an idle
// node. With a resync far longer than the test, only the exporter's watch of
// its own object can repair it: recreated and restored within seconds, one
// write each, and no write for a change that leaves the spec as desired.
func TestExporterRepairsItsGPUNode(t *testing.T) {
	ctx, cancel, cp, admin := exporterCluster(t, node)
	adminGPU, err := versioned.NewForConfig(cp.Config())
	if err != nil {
		t.Fatal(err)
	}
	nv, err := fake.New(node, []fake.GPUSpec{{Product: "NVIDIA A100-SXM4-40GB", MIG: []string{"1g.5gb", "1g.5gb", "2g.10gb", "3g.20gb"}}})
	if err != nil {
		t.Fatal(err)
	}
	// As the exporter's own service account, under the shipped RBAC and
	// admission policy: it must be allowed to watch its object.
	clients, err := agent.NewClients(cp.TokenConfig(exporterToken(t, ctx, admin, node)))
	if err != nil {
		t.Fatal(err)
	}
	metrics := agent.NewMetrics()
	cfg, err := dpconfig.Parse([]byte("version: v1\nflags:\n  migStrategy: mixed\n"))
	if err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(agent.Options{
		NodeName: node, LeaseNamespace: localcluster.LeaseNamespace,
		HeartbeatInterval: time.Second, PollInterval: 200 * time.Millisecond,
		Resync:           10 * time.Minute, // longer than the test: no repair by resync
		MinWriteInterval: 100 * time.Millisecond,
	}, clients, nvml.NewReader(nv.Interface()), &stubKubelet{}, func() (*dpconfig.Config, error) { return cfg, nil }, metrics)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()

	gpuNodes := adminGPU.GpusliceV1alpha1().GPUNodes()
	waitFor := func(what string, cond func(*gpusliceapi.GPUNode) bool) *gpusliceapi.GPUNode {
		t.Helper()
		var last *gpusliceapi.GPUNode
		start := time.Now()
		err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 5*time.Second, true, func(ctx context.Context) (bool, error) {
			gn, err := gpuNodes.Get(ctx, node, metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			last = gn
			return cond(gn), nil
		})
		if err != nil {
			t.Fatalf("%s: not within 5s; last %+v", what, last)
		}
		t.Logf("%s after %s", what, time.Since(start).Round(10*time.Millisecond))
		return last
	}
	expectWrites := func(when string, want int) {
		t.Helper()
		if got := writes(t, metrics); got != want {
			t.Fatalf("%s: %d GPUNode writes, want %d", when, got, want)
		}
	}

	desired := waitFor("published Ready", func(gn *gpusliceapi.GPUNode) bool { return gn.Spec.State == gpusliceapi.StateReady })
	time.Sleep(time.Second)
	expectWrites("after the first publication", 1)

	// 1. Deleted: recreated with the same spec, by one write.
	if err := gpuNodes.Delete(ctx, node, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor("recreated after deletion", func(gn *gpusliceapi.GPUNode) bool {
		return gn.UID != desired.UID && equality.Semantic.DeepEqual(gn.Spec, desired.Spec)
	})
	time.Sleep(time.Second)
	expectWrites("after the deletion", 2)

	// 2. Hand-edited (a corrupt spec): restored, by one write.
	gn, err := gpuNodes.Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	gn.Spec.State = gpusliceapi.StateDegraded
	gn.Spec.Message = "edited by hand"
	gn.Spec.GPUs[0].Instances = gn.Spec.GPUs[0].Instances[:1]
	if _, err := gpuNodes.Update(ctx, gn, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor("restored after a hand edit", func(gn *gpusliceapi.GPUNode) bool {
		return equality.Semantic.DeepEqual(gn.Spec, desired.Spec)
	})
	time.Sleep(time.Second)
	expectWrites("after the hand edit", 3)

	// 3. A change that leaves the spec as desired (a label): no write.
	gn, err = gpuNodes.Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	gn.Labels = map[string]string{"team": "ml"}
	updated, err := gpuNodes.Update(ctx, gn, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	expectWrites("after a label change", 3)
	if gn, err := gpuNodes.Get(ctx, node, metav1.GetOptions{}); err != nil || gn.ResourceVersion != updated.ResourceVersion {
		t.Fatalf("GPUNode rewritten after a label change (resourceVersion %s -> %v, %v)", updated.ResourceVersion, gn.GetResourceVersion(), err)
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
