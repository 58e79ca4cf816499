package repartition

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/record"

	"github.com/gpuslice/gpuslice/pkg/assignment"
	versioned "github.com/gpuslice/gpuslice/pkg/generated/clientset/versioned"
	"github.com/gpuslice/gpuslice/pkg/localcluster"
	"github.com/gpuslice/gpuslice/pkg/localcluster/controlplane"
	"github.com/gpuslice/gpuslice/pkg/repartition"
	"github.com/gpuslice/gpuslice/pkg/repartition/controller"
	"github.com/gpuslice/gpuslice/pkg/topology"
	"github.com/gpuslice/gpuslice/pkg/topology/fixtures"
	"github.com/gpuslice/gpuslice/test/framework/gpucluster"
)

// drainSetup is one H100 with 7×1g.10gb whose GPU holds a running pod (the
// fake kubelet admitted it, the exporter's read-back shows it), and two
// pods pending for a minute for 3g.40gb, recorded as MIG demand: nothing
// serves them unless the busy GPU changes, and it never empties by itself
// on a busy cluster.
type drainSetup struct {
	gc  *gpucluster.GPUCluster
	sn  *localcluster.SimNode
	mgr *localcluster.FakeMIGManager
}

func startDrainSetup(t *testing.T, namespaces ...string) *drainSetup {
	t.Helper()
	gc := gpucluster.Start(t, controlplane.Options{}, append([]string{cmNS, "default"}, namespaces...)...)
	ctx, kube, gpu := gc.Ctx, gc.Kube, gc.GPU
	ones := []string{"1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb"}
	so := localcluster.SimOptions{HeartbeatInterval: time.Second, PollInterval: 100 * time.Millisecond, Resync: 5 * time.Second}
	sn, err := localcluster.StartSimNode(ctx, kube, gpu, fixtures.Spec{Name: "h100-a", Product: "NVIDIA H100 80GB HBM3", GPUs: 1, MIG: ones}, so)
	if err != nil {
		t.Fatal(err)
	}
	mgr := sn.StartMIGManager(ctx, localcluster.MIGManagerOptions{ConfigMapNamespace: cmNS, ConfigMapName: cmName, RunTime: 200 * time.Millisecond, PluginDelay: 300 * time.Millisecond})
	running := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "inference"},
		Spec: corev1.PodSpec{SchedulerName: scheduler, NodeName: "h100-a", Containers: []corev1.Container{{Name: "c", Image: "x", Resources: corev1.ResourceRequirements{
			Limits: corev1.ResourceList{corev1.ResourceName(topology.MIGResourceName("1g.10gb")): resource.MustParse("1")}}}}}}
	if _, err := kube.CoreV1().Pods("default").Create(ctx, running, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitAllocations(t, ctx, gpu, "h100-a", 1)
	for i := range 2 {
		pendingPod(t, ctx, kube, "train-"+string(rune('0'+i)), "3g.40gb", true, time.Minute)
	}
	return &drainSetup{gc: gc, sn: sn, mgr: mgr}
}

// waitAllocations waits until the node's GPUNode (the exporter's
// PodResources read-back) lists n pods holding devices, in state Ready.
func waitAllocations(t *testing.T, ctx context.Context, gpu versioned.Interface, node string, n int) {
	t.Helper()
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		g, err := gpu.GpusliceV1alpha1().GPUNodes().Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		return g.Spec.State == "Ready" && len(g.Spec.Allocations) == n, nil
	})
	if err != nil {
		t.Fatalf("GPUNode %s does not show %d allocations: %v", node, n, err)
	}
}

func drainConfig() repartition.Config {
	pc := repartition.DefaultConfig()
	pc.MinDemandAge = 0
	pc.MaxDrainingGPUs = 1
	pc.DrainAfter = 30 * time.Second // the pods have waited a minute
	pc.DrainMinGain = 0.1            // gpuslice-repartitioner's default
	return pc
}

func drainAnnotation(t *testing.T, ctx context.Context, kube kubernetes.Interface, node string) (string, bool) {
	t.Helper()
	n, err := kube.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	v, ok := n.Annotations[assignment.DrainAnnotation]
	return v, ok
}

func drainEvents(rec *record.FakeRecorder) string {
	var events []string
	for len(rec.Events) > 0 {
		events = append(events, <-rec.Events)
	}
	return strings.Join(events, "\n")
}

func TestControllerDrainsABusyGPUAndChangesItOnceEmpty(t *testing.T) {
	s := startDrainSetup(t)
	ctx, kube := s.gc.Ctx, s.gc.Kube
	rec := record.NewFakeRecorder(100)
	metrics := controller.NewMetrics()
	c, err := controller.New(kube, s.gc.GPU, controller.Options{
		ConfigMapNamespace: cmNS, ConfigMapName: cmName, Nodes: labels.Everything(), SchedulerNames: []string{scheduler},
		Window: 200 * time.Millisecond, Propagation: 300 * time.Millisecond, Timeout: 20 * time.Second, Planner: drainConfig(), Recorder: rec, Metrics: metrics,
	})
	if err != nil {
		t.Fatal(err)
	}

	// The busy GPU is drained.
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
		if err := c.Sync(ctx); err != nil {
			return false, err
		}
		v, _ := drainAnnotation(t, ctx, kube, "h100-a")
		return v == "0", nil
	})
	if err != nil {
		t.Fatalf("GPU 0 not drained: %v (stats %+v)", err, c.Stats())
	}
	events := drainEvents(rec)
	if want := "Normal Draining draining GPU 0 of node h100-a for a MIG layout change: 7×1g.10gb → 2×3g.40gb for 2 pending pods"; !strings.Contains(events, want) {
		t.Fatalf("no event %q in:\n%s", want, events)
	}
	if !strings.Contains(events, "WaitingForRepartition GPU 0 of node h100-a is being drained for this pod") {
		t.Fatalf("no event on the pending pods in:\n%s", events)
	}

	// While the pod runs the GPU is not changed: no MIG manager run, no
	// label, the drain stays, and nothing is written again.
	for range 8 {
		if err := c.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(250 * time.Millisecond)
	}
	n, _ := kube.CoreV1().Nodes().Get(ctx, "h100-a", metav1.GetOptions{})
	if _, ok := n.Labels[topology.MIGConfigLabel]; ok {
		t.Fatalf("a busy GPU was asked to change: labels %v", n.Labels)
	}
	if runs := s.mgr.Runs(); len(runs) != 0 {
		t.Fatalf("MIG manager runs while the pod runs: %+v", runs)
	}
	if v := n.Annotations[assignment.DrainAnnotation]; v != "0" {
		t.Fatalf("drain annotation %q while the pod runs", v)
	}
	if st := c.Stats(); st.Runs != 0 || st.DrainsStarted != 1 || st.Draining != 1 {
		t.Fatalf("stats %+v", st)
	}
	if ev := drainEvents(rec); ev != "" {
		t.Fatalf("events while nothing changed:\n%s", ev)
	}

	// The pod ends: once the read-back shows the GPU empty, it changes, and
	// the drain is lifted when the run ends.
	zero := int64(0)
	if err := kube.CoreV1().Pods("default").Delete(ctx, "inference", metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	waitAllocations(t, ctx, s.gc.GPU, "h100-a", 0)
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		if err := c.Sync(ctx); err != nil {
			return false, err
		}
		st := c.Stats()
		return st.Succeeded+st.Failed >= 1, nil
	})
	if err != nil {
		t.Fatalf("no run ended: %v (stats %+v, runs %+v)", err, c.Stats(), s.mgr.Runs())
	}
	if st := c.Stats(); st.Runs != 1 || st.Succeeded != 1 || st.PodsServed != 2 || st.DrainsLifted != 0 || st.Draining != 0 {
		t.Fatalf("stats %+v", st)
	}
	n, _ = kube.CoreV1().Nodes().Get(ctx, "h100-a", metav1.GetOptions{})
	if !strings.HasPrefix(n.Labels[topology.MIGConfigLabel], "gpuslice-h100-a-") || n.Labels[topology.MIGConfigStateLabel] != "success" {
		t.Fatalf("labels %v", n.Labels)
	}
	if q := n.Status.Allocatable["nvidia.com/mig-3g.40gb"]; q.Value() != 2 {
		t.Fatalf("allocatable %v", n.Status.Allocatable)
	}
	if runs := s.mgr.Runs(); len(runs) != 1 || runs[0].State != "success" {
		t.Fatalf("MIG manager runs %+v", runs)
	}
	if v, ok := n.Annotations[assignment.DrainAnnotation]; ok {
		t.Fatalf("drain annotation %q left after the change", v)
	}
	events = drainEvents(rec)
	for _, want := range []string{"Repartitioning repartitioning GPU 0 of node h100-a: 7×1g.10gb → 2×3g.40gb for 2 pending pods", "Repartitioned MIG config gpuslice-h100-a-"} {
		if !strings.Contains(events, want) {
			t.Errorf("no event %q in:\n%s", want, events)
		}
	}
	if strings.Contains(events, "DrainLifted") {
		t.Errorf("a drain that ended in its change reported lifted:\n%s", events)
	}
	w := httptest.NewRecorder()
	metrics.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	for _, want := range []string{"gpuslice_repartition_drains_started_total 1", "gpuslice_repartition_drains_lifted_total 0", "gpuslice_repartition_gpus_draining 0"} {
		if !strings.Contains(w.Body.String(), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// A leader that crashed left GPU 0 drained: the new leader adopts the drain
// (no new Draining event, the annotation kept), and when it stops leading it
// lifts it.
func TestControllerDrainsAdoptedAndLiftedWhenTheLeaderStops(t *testing.T) {
	s := startDrainSetup(t, "gpuslice-system")
	ctx, kube := s.gc.Ctx, s.gc.Kube
	n, err := kube.CoreV1().Nodes().Get(ctx, "h100-a", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n.Annotations == nil {
		n.Annotations = map[string]string{}
	}
	n.Annotations[assignment.DrainAnnotation] = "0"
	if _, err := kube.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	rec := record.NewFakeRecorder(100)
	c, err := controller.New(kube, s.gc.GPU, controller.Options{
		ConfigMapNamespace: cmNS, ConfigMapName: cmName, Nodes: labels.Everything(), SchedulerNames: []string{scheduler},
		Window: 200 * time.Millisecond, Propagation: 300 * time.Millisecond, Timeout: 20 * time.Second, Planner: drainConfig(), Recorder: rec,
	})
	if err != nil {
		t.Fatal(err)
	}
	lctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- c.RunWithLeaderElection(lctx, 100*time.Millisecond, controller.LeaderOptions{Namespace: "gpuslice-system", Name: "gpuslice-repartitioner", Identity: "r1",
			LeaseDuration: 2 * time.Second, RenewDeadline: time.Second, RetryPeriod: 200 * time.Millisecond})
	}()
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
		return c.Stats().Draining == 1, nil
	})
	if err != nil {
		stop()
		t.Fatalf("the drain was not adopted: %v (stats %+v)", err, c.Stats())
	}
	time.Sleep(time.Second) // a few more rounds
	if v, _ := drainAnnotation(t, ctx, kube, "h100-a"); v != "0" {
		t.Fatalf("drain annotation %q while leading", v)
	}
	if st := c.Stats(); st.DrainsStarted != 0 || st.Runs != 0 {
		t.Fatalf("an adopted drain was started again or the busy GPU changed: %+v", st)
	}

	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("RunWithLeaderElection did not return")
	}
	if v, ok := drainAnnotation(t, ctx, kube, "h100-a"); ok {
		t.Fatalf("drain annotation %q left by a leader that stopped", v)
	}
	events := drainEvents(rec)
	if want := "DrainLifted lifted the drain of GPU 0 of node h100-a (MIG layout unchanged): gpuslice-repartitioner stopped"; !strings.Contains(events, want) {
		t.Fatalf("no event %q in:\n%s", want, events)
	}
	if strings.Contains(events, "Normal Draining") {
		t.Fatalf("an adopted drain reported as started:\n%s", events)
	}
	if st := c.Stats(); st.DrainsLifted != 1 || st.Draining != 0 {
		t.Fatalf("stats %+v", st)
	}
}
