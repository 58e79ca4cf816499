package controller

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
	k8stypes "k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	"github.com/gpuslice/gpuslice/pkg/allocator"
	gpusliceapi "github.com/gpuslice/gpuslice/pkg/apis/gpuslice/v1alpha1"
	"github.com/gpuslice/gpuslice/pkg/assignment"
	gpufake "github.com/gpuslice/gpuslice/pkg/generated/clientset/versioned/fake"
	"github.com/gpuslice/gpuslice/pkg/repartition"
	"github.com/gpuslice/gpuslice/pkg/topology"
	"github.com/gpuslice/gpuslice/pkg/topology/fixtures"
)

// fenceEnv is a controller with drains off (the default) on fake clients:
// one idle H100 with 7×1g.10gb whose allocatable shows it, and two pods
// recorded as MIG demand for 3g.40gb, which only a change of its GPU
// serves.
type fenceEnv struct {
	*drainEnv
}

func newFenceEnv(t *testing.T) *fenceEnv {
	t.Helper()
	cat := topology.NewCatalog()
	topo := fixtures.MustBuild(cat, fixtures.Spec{Name: "n1", Product: "NVIDIA H100 80GB HBM3", GPUs: 1,
		MIG: []string{"1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb"}})
	caps, err := topo.Capacity()
	if err != nil {
		t.Fatal(err)
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Status: corev1.NodeStatus{Allocatable: corev1.ResourceList{}}}
	for r, n := range caps {
		node.Status.Allocatable[corev1.ResourceName(r)] = *resource.NewQuantity(n, resource.DecimalSI)
	}
	gpu := gpufake.NewSimpleClientset()
	spec := gpusliceapi.SpecFromTopology(topo)
	spec.State = gpusliceapi.StateReady
	if _, err := gpu.GpusliceV1alpha1().GPUNodes().Create(context.Background(), &gpusliceapi.GPUNode{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Spec: spec}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e := &fenceEnv{&drainEnv{t: t, ctx: klog.NewContext(context.Background(), klog.Background()), kube: fake.NewClientset(node), rec: record.NewFakeRecorder(100),
		metrics: NewMetrics(), now: time.Unix(1_800_000_000, 0)}}
	for _, name := range []string{"a", "b"} {
		v, err := (&assignment.Demand{Profiles: map[string]int{"3g.40gb": 1}, Since: e.now.Add(-time.Minute)}).Encode()
		if err != nil {
			t.Fatal(err)
		}
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: k8stypes.UID("uid-" + name), Annotations: map[string]string{assignment.DemandAnnotation: v}},
			Spec: corev1.PodSpec{SchedulerName: "gpuslice", Containers: []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{
				Limits: corev1.ResourceList{"nvidia.com/mig-3g.40gb": resource.MustParse("1")}}}}}}
		if _, err := e.kube.CoreV1().Pods("ns").Create(e.ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	pc := repartition.DefaultConfig()
	pc.MinDemandAge = 0
	if pc.MaxDrainingGPUs != 0 {
		t.Fatalf("drains are on by default (%d): this test is about fences with drains off", pc.MaxDrainingGPUs)
	}
	c, err := New(e.kube, gpu, Options{ConfigMapNamespace: "gpu-operator", ConfigMapName: "mig", Nodes: labels.Everything(), SchedulerNames: []string{"gpuslice"},
		Window: 10 * time.Minute, Propagation: 30 * time.Second, Timeout: time.Minute, Planner: pc, Catalog: cat, Recorder: e.rec, Metrics: e.metrics,
		Now: func() time.Time { return e.now }})
	if err != nil {
		t.Fatal(err)
	}
	e.c = c
	return e
}

func (e *fenceEnv) sync() {
	e.t.Helper()
	if err := e.c.Sync(e.ctx); err != nil {
		e.t.Fatal(err)
	}
}

// writes lists the controller's writes since the last call, in order:
// "fence=<annotation>" for a node update that changes the drain
// annotation, "label=<config>" for one that changes nvidia.com/mig.config,
// "configmap" for a write of the ConfigMap.
func (e *fenceEnv) writes(before *corev1.Node) ([]string, *corev1.Node) {
	e.t.Helper()
	var out []string
	for _, a := range e.kube.Actions() {
		verb := a.GetVerb()
		if verb != "create" && verb != "update" {
			continue
		}
		switch a.GetResource().Resource {
		case "configmaps":
			out = append(out, "configmap")
		case "nodes":
			n, ok := a.(k8stesting.UpdateAction).GetObject().(*corev1.Node)
			if !ok {
				e.t.Fatalf("node update of %T", a.(k8stesting.UpdateAction).GetObject())
			}
			if v, was := n.Annotations[assignment.DrainAnnotation], before.Annotations[assignment.DrainAnnotation]; v != was {
				out = append(out, "fence="+v)
			}
			if v, was := n.Labels[topology.MIGConfigLabel], before.Labels[topology.MIGConfigLabel]; v != was {
				out = append(out, "label="+v)
			}
			before = n
		}
	}
	e.kube.ClearActions()
	return out, before
}

func (e *fenceEnv) node() *corev1.Node {
	e.t.Helper()
	n, err := e.kube.CoreV1().Nodes().Get(e.ctx, "n1", metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

// With drains off, starting a change fences the GPU it rebuilds before it
// writes the config and well before the label; the fence is not a drain
// (not shown to the planner, no Draining event, counted as fenced), and
// it is lifted once the run ends, whatever its end.
func TestStartFencesTheGPUsItRebuilds(t *testing.T) {
	for _, end := range []string{"success", "failed", "timeout"} {
		t.Run(end, func(t *testing.T) {
			e := newFenceEnv(t)
			n0 := e.node()
			e.kube.ClearActions()
			e.sync()
			flying := e.c.InFlight()
			if len(flying) != 1 {
				t.Fatalf("no run started: stats %+v", e.c.Stats())
			}
			e.c.mu.Lock()
			r := e.c.inflight["n1"]
			e.c.mu.Unlock()
			if len(r.plan.Changes) != 1 || r.plan.Changes[0].GPU != 0 {
				t.Fatalf("changes %+v, want GPU 0", r.plan.Changes)
			}
			w, n := e.writes(n0)
			if strings.Join(w, " ") != "fence=0 configmap" {
				t.Fatalf("writes %q, want the fence, then the config (no label before the propagation wait)", w)
			}
			if st := e.c.Stats(); st.Fenced != 1 || st.Draining != 0 || st.DrainsStarted != 0 {
				t.Fatalf("stats %+v", st)
			}
			for _, ev := range e.events() {
				if strings.Contains(ev, "Draining") {
					t.Fatalf("a fence reported as a drain: %q", ev)
				}
			}
			for _, ns := range e.c.input(klog.Background(), e.snap(), e.now).Nodes {
				if len(ns.Draining) != 0 {
					t.Fatalf("a fenced GPU is shown to the planner as a drain: %v", ns.Draining)
				}
			}

			// Propagated: the label is set, the fence stays.
			e.now = e.now.Add(30 * time.Second)
			e.sync()
			w, n = e.writes(n)
			if len(w) != 1 || w[0] != "label="+r.config {
				t.Fatalf("writes %q, want the label %s only", w, r.config)
			}
			e.expect(map[string]string{"n1": "0"})

			// MIG manager ends the run (or never does).
			e.now = e.now.Add(time.Second)
			switch end {
			case "success", "failed":
				mn := e.node()
				mn.Labels[topology.MIGConfigStateLabel] = end
				if end == "success" {
					mn.Status.Allocatable = corev1.ResourceList{}
					for res, q := range r.expect {
						mn.Status.Allocatable[corev1.ResourceName(res)] = *resource.NewQuantity(q, resource.DecimalSI)
					}
				}
				if _, err := e.kube.CoreV1().Nodes().Update(e.ctx, mn, metav1.UpdateOptions{}); err != nil {
					t.Fatal(err)
				}
				n = mn
			case "timeout":
				e.now = e.now.Add(time.Minute)
			}
			e.kube.ClearActions()
			e.sync()
			st := e.c.Stats()
			if len(e.c.InFlight()) != 0 || st.Succeeded+st.Failed != 1 || (end == "success") != (st.Succeeded == 1) {
				t.Fatalf("the run did not end as %s: stats %+v", end, st)
			}
			w, _ = e.writes(n)
			if strings.Join(w, " ") != "configmap fence=" {
				t.Fatalf("writes %q after the run, want the configs collected and the fence lifted", w)
			}
			e.expect(map[string]string{"n1": "-"})
			if st.Fenced != 0 || st.Draining != 0 || st.DrainsLifted != 0 {
				t.Fatalf("stats %+v", st)
			}
			for _, ev := range e.events() {
				if strings.Contains(ev, "DrainLifted") {
					t.Fatalf("a fence reported as a drain lifted: %q", ev)
				}
			}
			rw := httptest.NewRecorder()
			e.metrics.Handler().ServeHTTP(rw, httptest.NewRequest("GET", "/metrics", nil))
			for _, want := range []string{"gpuslice_repartition_gpus_fenced 0", "gpuslice_repartition_gpus_draining 0", "gpuslice_repartition_drains_started_total 0"} {
				if !strings.Contains(rw.Body.String(), want) {
					t.Errorf("metrics lack %q", want)
				}
			}
		})
	}
}

// A fence lifted when the controller stops is no drain lifted; the fence
// of the run still in flight is listed again once it plans again.
func TestLiftDrainsLiftsFences(t *testing.T) {
	e := newFenceEnv(t)
	e.sync()
	e.expect(map[string]string{"n1": "0"})
	e.events()
	if err := e.c.LiftDrains(e.ctx, "gpuslice-repartitioner stopped"); err != nil {
		t.Fatal(err)
	}
	e.expect(map[string]string{"n1": "-"})
	for _, ev := range e.events() {
		if strings.Contains(ev, "DrainLifted") {
			t.Fatalf("a fence reported as a drain lifted: %q", ev)
		}
	}
	if st := e.c.Stats(); st.DrainsLifted != 0 || st.Fenced != 0 {
		t.Fatalf("stats %+v", st)
	}
	// Leading again: nothing written before it plans; then the run still
	// in flight is fenced again.
	if n := e.reconcile(); n != 0 {
		t.Fatalf("%d writes before planning again", n)
	}
	e.now = e.now.Add(10 * time.Minute)
	e.sync()
	if len(e.c.InFlight()) != 1 {
		t.Fatalf("the run ended: stats %+v", e.c.Stats())
	}
	e.expect(map[string]string{"n1": "0"})
	if st := e.c.Stats(); st.Fenced != 1 || st.Draining != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// A pod bound to a GPU the run rebuilds before its fence arrived (the
// scheduler's informers lag the API): the run is cancelled before MIG
// manager is asked, without a back-off, and the fence is lifted. Seen
// through gpuslice's assignment annotation (bound, or being bound, before
// the read-back shows it) or through the exporter's read-back.
func TestRunCancelledWhenItsGPUTookAPod(t *testing.T) {
	for _, seen := range []string{"assignment", "read-back"} {
		t.Run(seen, func(t *testing.T) {
			e := newFenceEnv(t)
			e.sync()
			if len(e.c.InFlight()) != 1 {
				t.Fatalf("no run started: stats %+v", e.c.Stats())
			}
			e.events()
			gn := e.snap().gpuNodes["n1"]
			units, err := gn.Spec.Topology().Units()
			if err != nil {
				t.Fatal(err)
			}
			dev := allocator.ResourceDevices{Resource: units[0].Resource, DeviceIDs: []string{units[0].DeviceID}}
			switch seen {
			case "assignment":
				a := assignment.FromPlacement(&allocator.Placement{Node: "n1", Containers: []allocator.ContainerDevices{{Name: "c", Devices: []allocator.ResourceDevices{dev}}}})
				v, err := a.Encode()
				if err != nil {
					t.Fatal(err)
				}
				p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "late", Annotations: map[string]string{assignment.Annotation: v}},
					Spec: corev1.PodSpec{SchedulerName: "gpuslice-binpack", Containers: []corev1.Container{{Name: "c"}}}}
				if _, err := e.kube.CoreV1().Pods("ns").Create(e.ctx, p, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
			case "read-back":
				gn.Spec.Allocations = []gpusliceapi.PodAllocation{{PodUID: "u", Namespace: "ns", Name: "late", Containers: []gpusliceapi.ContainerAllocation{{Name: "c",
					Devices: []gpusliceapi.ResourceDevices{{Resource: dev.Resource, DeviceIDs: dev.DeviceIDs}}}}}}
				if _, err := e.c.gpu.GpusliceV1alpha1().GPUNodes().Update(e.ctx, gn, metav1.UpdateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			e.now = e.now.Add(30 * time.Second)
			n := e.node()
			e.kube.ClearActions()
			e.sync()
			w, _ := e.writes(n)
			if strings.Join(w, " ") != "configmap fence=" {
				t.Fatalf("writes %q, want no label, the config collected and the fence lifted", w)
			}
			st := e.c.Stats()
			if len(e.c.InFlight()) != 0 || st.Cancelled != 1 || st.Failed != 0 || st.Succeeded != 0 || st.Fenced != 0 {
				t.Fatalf("stats %+v", st)
			}
			if e.c.planner.BackingOff("n1", e.now) {
				t.Fatal("a cancelled run backs the node off")
			}
			ev := strings.Join(e.events(), "\n")
			if want := "Warning RepartitionCancelled MIG config gpuslice-n1-"; !strings.Contains(ev, want) || !strings.Contains(ev, "ns/late on GPU 0") {
				t.Fatalf("events %q lack %q naming ns/late on GPU 0", ev, want)
			}
			rw := httptest.NewRecorder()
			e.metrics.Handler().ServeHTTP(rw, httptest.NewRequest("GET", "/metrics", nil))
			if want := `gpuslice_repartition_run_results_total{result="cancelled"} 1`; !strings.Contains(rw.Body.String(), want) {
				t.Errorf("metrics lack %q", want)
			}
		})
	}
}
