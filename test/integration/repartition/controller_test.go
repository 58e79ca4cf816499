// Package repartition runs the repartition controller against a real etcd
// and kube-apiserver, with simulated GPU nodes (real exporter) and the fake
// MIG manager: pending pods lead to a named config, the label, a run, and
// allocatable showing the new layout; a run that fails is backed off.
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
	"github.com/gpuslice/gpuslice/pkg/localcluster"
	"github.com/gpuslice/gpuslice/pkg/localcluster/controlplane"
	"github.com/gpuslice/gpuslice/pkg/repartition"
	"github.com/gpuslice/gpuslice/pkg/repartition/controller"
	"github.com/gpuslice/gpuslice/pkg/topology"
	"github.com/gpuslice/gpuslice/pkg/topology/fixtures"
	"github.com/gpuslice/gpuslice/test/framework/gpucluster"
)

const (
	cmNS, cmName = "gpu-operator", "custom-mig-parted-config"
	scheduler    = "gpuslice"
)

// pendingPod creates a pod the scheduler marked Unschedulable age ago and,
// when migDemand, recorded as waiting for want of its MIG profile (the
// annotation gpuslice-scheduler writes).
func pendingPod(t *testing.T, ctx context.Context, kube kubernetes.Interface, name, profile string, migDemand bool, age time.Duration) {
	t.Helper()
	q := corev1.ResourceList{corev1.ResourceName(topology.MIGResourceName(profile)): resource.MustParse("1")}
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec: corev1.PodSpec{SchedulerName: scheduler, Containers: []corev1.Container{{Name: "c", Image: "x", Resources: corev1.ResourceRequirements{Limits: q}}}}}
	if migDemand {
		v, err := (&assignment.Demand{Profiles: map[string]int{profile: 1}, Since: time.Now().Add(-age)}).Encode()
		if err != nil {
			t.Fatal(err)
		}
		p.Annotations = map[string]string{assignment.DemandAnnotation: v}
	}
	p, err := kube.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// What the scheduler writes when Filter rejects every node.
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable,
		Message: "0/2 nodes are available", LastTransitionTime: metav1.NewTime(time.Now().Add(-age))}}
	if _, err := kube.CoreV1().Pods("default").UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestControllerAppliesThroughMIGManager(t *testing.T) {
	gc := gpucluster.Start(t, controlplane.Options{}, cmNS, "default")
	ctx, kube, gpu := gc.Ctx, gc.Kube, gc.GPU
	var err error
	ones := []string{"1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb"}
	so := localcluster.SimOptions{HeartbeatInterval: time.Second, PollInterval: 100 * time.Millisecond, Resync: 5 * time.Second}
	nodes := map[string]*localcluster.SimNode{}
	for _, name := range []string{"h100-a", "h100-b"} {
		sn, err := localcluster.StartSimNode(ctx, kube, gpu, fixtures.Spec{Name: name, Product: "NVIDIA H100 80GB HBM3", GPUs: 1, MIG: ones}, so)
		if err != nil {
			t.Fatal(err)
		}
		nodes[name] = sn
	}
	mo := localcluster.MIGManagerOptions{ConfigMapNamespace: cmNS, ConfigMapName: cmName, RunTime: 200 * time.Millisecond, PluginDelay: 300 * time.Millisecond}
	ma := nodes["h100-a"].StartMIGManager(ctx, mo)
	// h100-b's kubelet never delivers ConfigMap updates in time: its MIG
	// manager reads a file without the new config and fails the run.
	mo.Propagation = time.Hour
	mb := nodes["h100-b"].StartMIGManager(ctx, mo)

	// A stale config of ours that no node uses: collected after a run.
	stale := &topology.MIGParted{Version: "v1", Configs: map[string][]topology.MIGPartedEntry{
		"gpuslice-old-1": topology.PerGPUConfig(map[int]map[string]int{0: {"7g.80gb": 1}}, nil),
		"all-1g.10gb":    {{AllDevices: true, MIGEnabled: true, MIGDevices: map[string]int{"1g.10gb": 7}}},
	}}
	data, _ := stale.Marshal()
	if _, err := kube.CoreV1().ConfigMaps(cmNS).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: cmNS, Name: cmName}, Data: map[string]string{"config.yaml": string(data)}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Wait for both exporters to publish Ready.
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		l, err := gpu.GpusliceV1alpha1().GPUNodes().List(ctx, metav1.ListOptions{})
		if err != nil || len(l.Items) != 2 {
			return false, nil
		}
		for _, g := range l.Items {
			if g.Spec.State != "Ready" {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("exporters not ready: %v", err)
	}
	for i := range 4 {
		pendingPod(t, ctx, kube, "train-"+string(rune('0'+i)), "3g.40gb", true, time.Minute)
	}
	// Older Unschedulable pods the scheduler did not record as MIG demand
	// (refused for their CPU, a taint...): not demand (the unit test of
	// migDemand checks the choice; here they must change nothing).
	for i := range 2 {
		pendingPod(t, ctx, kube, "cpu-bound-"+string(rune('0'+i)), "2g.20gb", false, 2*time.Minute)
	}

	rec := record.NewFakeRecorder(100)
	metrics := controller.NewMetrics()
	pc := repartition.DefaultConfig()
	pc.MinDemandAge = 0
	c, err := controller.New(kube, gpu, controller.Options{
		ConfigMapNamespace: cmNS, ConfigMapName: cmName, Nodes: labels.Everything(), SchedulerNames: []string{scheduler},
		Window: 200 * time.Millisecond, Propagation: 300 * time.Millisecond, Timeout: 20 * time.Second, Planner: pc, Recorder: rec, Metrics: metrics,
	})
	if err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 40*time.Second, true, func(ctx context.Context) (bool, error) {
		if err := c.Sync(ctx); err != nil {
			return false, err
		}
		st := c.Stats()
		return st.Succeeded+st.Failed >= 2, nil
	})
	if err != nil {
		t.Fatalf("runs did not end: %v (stats %+v, runs a %+v, b %+v)", err, c.Stats(), ma.Runs(), mb.Runs())
	}
	st := c.Stats()
	if st.Runs != 2 || st.GPUs != 2 || st.Succeeded != 1 || st.Failed != 1 || st.PodsServed != 4 {
		t.Fatalf("stats %+v", st)
	}
	// h100-a: labelled with our config, success, allocatable 2×3g.
	na, _ := kube.CoreV1().Nodes().Get(ctx, "h100-a", metav1.GetOptions{})
	if !strings.HasPrefix(na.Labels[topology.MIGConfigLabel], "gpuslice-h100-a-") || na.Labels[topology.MIGConfigStateLabel] != "success" {
		t.Fatalf("h100-a labels %v", na.Labels)
	}
	if q := na.Status.Allocatable["nvidia.com/mig-3g.40gb"]; q.Value() != 2 {
		t.Fatalf("h100-a allocatable %v", na.Status.Allocatable)
	}
	if runs := ma.Runs(); len(runs) != 1 || runs[0].State != "success" {
		t.Fatalf("h100-a MIG manager runs %+v", runs)
	}
	if runs := mb.Runs(); len(runs) != 1 || runs[0].State != "failed" || !strings.Contains(runs[0].Error, "unknown MIG config") {
		t.Fatalf("h100-b MIG manager runs %+v", runs)
	}
	// The named config lists the node's GPU index; the stale one is gone,
	// NVIDIA's own configs stay.
	cm, _ := kube.CoreV1().ConfigMaps(cmNS).Get(ctx, cmName, metav1.GetOptions{})
	f, err := topology.ParseMIGParted([]byte(cm.Data["config.yaml"]))
	if err != nil {
		t.Fatal(err)
	}
	cfgA := f.Configs[na.Labels[topology.MIGConfigLabel]]
	if len(cfgA) != 1 || len(cfgA[0].Devices) != 1 || cfgA[0].Devices[0] != 0 || cfgA[0].MIGDevices["3g.40gb"] != 2 {
		t.Fatalf("config for h100-a: %+v", cfgA)
	}
	if _, ok := f.Configs["gpuslice-old-1"]; ok {
		t.Fatal("stale config not collected")
	}
	if _, ok := f.Configs["all-1g.10gb"]; !ok {
		t.Fatal("a config that is not ours was collected")
	}
	// Events: the repartition, on the node, with the layouts and the pods.
	var events []string
	for len(rec.Events) > 0 {
		events = append(events, <-rec.Events)
	}
	all := strings.Join(events, "\n")
	for _, want := range []string{
		"Repartitioning repartitioning GPU 0 of node h100-a: 7×1g.10gb → 2×3g.40gb for 2 pending pods",
		"WaitingForRepartition node h100-a is being repartitioned",
		"Repartitioned MIG config gpuslice-h100-a-",
		"RepartitionFailed MIG config gpuslice-h100-b-",
		"left alone for 5m0s",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("no event %q in:\n%s", want, all)
		}
	}
	w := httptest.NewRecorder()
	metrics.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	for _, want := range []string{
		"gpuslice_repartition_runs_total 2", "gpuslice_repartition_gpus_reconfigured_total 2", "gpuslice_repartition_pods_served_total 4",
		`gpuslice_repartition_run_results_total{result="failed"} 1`, `gpuslice_repartition_run_results_total{result="success"} 1`,
		"gpuslice_repartition_nodes_reconfiguring 0",
	} {
		if !strings.Contains(w.Body.String(), want) {
			t.Errorf("metrics lack %q:\n%s", want, w.Body.String())
		}
	}
	// h100-b is backed off: more syncs start no run there.
	for range 5 {
		if err := c.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(250 * time.Millisecond)
	}
	if st := c.Stats(); st.Runs != 2 {
		t.Fatalf("a failed node was retried during its back-off: %+v", st)
	}
}
