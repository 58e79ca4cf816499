package controller

import (
	"context"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	gpusliceapi "github.com/gpuslice/gpuslice/pkg/apis/gpuslice/v1alpha1"
	"github.com/gpuslice/gpuslice/pkg/assignment"
	gpufake "github.com/gpuslice/gpuslice/pkg/generated/clientset/versioned/fake"
	"github.com/gpuslice/gpuslice/pkg/repartition"
	"github.com/gpuslice/gpuslice/pkg/topology"
	"github.com/gpuslice/gpuslice/pkg/topology/fixtures"
)

type drainEnv struct {
	t       *testing.T
	ctx     context.Context
	kube    *fake.Clientset
	c       *Controller
	rec     *record.FakeRecorder
	metrics *Metrics
	now     time.Time
}

// newDrainEnv is a controller on fake clients with these nodes (annotation
// value by node name; "-" for none) and a GPUNode per node.
func newDrainEnv(t *testing.T, annotations map[string]string) *drainEnv {
	t.Helper()
	cat := topology.NewCatalog()
	var objs []runtime.Object
	gpu := gpufake.NewSimpleClientset()
	for name, v := range annotations {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
		if v != "-" {
			n.Annotations = map[string]string{assignment.DrainAnnotation: v}
		}
		objs = append(objs, n)
		topo := fixtures.MustBuild(cat, fixtures.Spec{Name: name, Product: "NVIDIA H100 80GB HBM3", GPUs: 2,
			MIG: []string{"1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb"}})
		spec := gpusliceapi.SpecFromTopology(topo)
		spec.State = gpusliceapi.StateReady
		if _, err := gpu.GpusliceV1alpha1().GPUNodes().Create(context.Background(), &gpusliceapi.GPUNode{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	kube := fake.NewClientset(objs...)
	e := &drainEnv{t: t, ctx: klog.NewContext(context.Background(), klog.Background()), kube: kube, rec: record.NewFakeRecorder(100), metrics: NewMetrics(),
		now: time.Unix(1_800_000_000, 0)}
	pc := repartition.DefaultConfig()
	pc.MaxDrainingGPUs = 2
	c, err := New(kube, gpu, Options{ConfigMapNamespace: "gpu-operator", ConfigMapName: "mig", Nodes: labels.Everything(), SchedulerNames: []string{"gpuslice"},
		Window: time.Minute, Timeout: time.Minute, Planner: pc, Catalog: cat, Recorder: e.rec, Metrics: e.metrics, Now: func() time.Time { return e.now }})
	if err != nil {
		t.Fatal(err)
	}
	e.c = c
	return e
}

// snap reads the API as a sync does.
func (e *drainEnv) snap() *snapshot {
	e.t.Helper()
	s, err := e.c.read(e.ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

// reconcile runs the annotation reconcile on a fresh read and returns how
// many node updates it made.
func (e *drainEnv) reconcile() int {
	e.t.Helper()
	e.kube.ClearActions()
	if err := e.c.reconcileDrains(e.ctx, e.snap()); err != nil {
		e.t.Fatal(err)
	}
	n := 0
	for _, a := range e.kube.Actions() {
		if a.GetVerb() == "update" && a.GetResource().Resource == "nodes" {
			n++
		}
	}
	return n
}

// annotations are the drain annotations of the nodes ("-": none).
func (e *drainEnv) annotations() map[string]string {
	e.t.Helper()
	l, err := e.kube.CoreV1().Nodes().List(e.ctx, metav1.ListOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]string{}
	for _, n := range l.Items {
		v, ok := n.Annotations[assignment.DrainAnnotation]
		if !ok {
			v = "-"
		}
		out[n.Name] = v
	}
	return out
}

func (e *drainEnv) events() []string {
	var out []string
	for len(e.rec.Events) > 0 {
		out = append(out, <-e.rec.Events)
	}
	return out
}

func (e *drainEnv) expect(want map[string]string) {
	e.t.Helper()
	got := e.annotations()
	for n, v := range want {
		if got[n] != v {
			e.t.Fatalf("annotations %v, want %v", got, want)
		}
	}
}

func drainOn(node string, gpu int, since time.Time, pods ...string) repartition.Drain {
	return repartition.Drain{Node: node, GPU: gpu, Since: since, From: map[string]int{"1g.10gb": 7}, To: map[string]int{"3g.40gb": 2}, Serves: pods}
}

func TestDrainAnnotationFollowsThePlan(t *testing.T) {
	e := newDrainEnv(t, map[string]string{"n1": "x,1", "n2": "-", "n3": "1"})

	// Before its first plan a controller (a new leader) writes nothing:
	// the drains the annotations show are the planner's to adopt.
	if n := e.reconcile(); n != 0 {
		t.Fatalf("%d writes before the first plan", n)
	}
	e.expect(map[string]string{"n1": "x,1", "n2": "-", "n3": "1"})

	// A drain on n1: the malformed value is overwritten, n3's drain (not in
	// the plan) is removed, n2 is not written.
	e.c.recordDrains(&repartition.Plan{Drains: []repartition.Drain{drainOn("n1", 0, e.now, "ns/a", "ns/b")}}, e.now)
	if n := e.reconcile(); n != 2 {
		t.Fatalf("%d writes, want 2 (n1 and n3)", n)
	}
	e.expect(map[string]string{"n1": "0", "n2": "-", "n3": "-"})
	ev := strings.Join(e.events(), "\n")
	if want := "Normal Draining draining GPU 0 of node n1 for a MIG layout change: 7×1g.10gb → 2×3g.40gb for 2 pending pods"; !strings.Contains(ev, want) {
		t.Fatalf("events %q lack %q", ev, want)
	}
	if strings.Contains(ev, "DrainLifted") {
		t.Fatalf("a drain this controller never held reported lifted: %q", ev)
	}
	if st := e.c.Stats(); st.DrainsStarted != 1 || st.Draining != 1 || st.DrainsLifted != 0 {
		t.Fatalf("stats %+v", st)
	}

	// The same plan again: nothing written, no event.
	e.now = e.now.Add(time.Minute)
	e.c.recordDrains(&repartition.Plan{Drains: []repartition.Drain{drainOn("n1", 0, e.now.Add(-time.Minute), "ns/a", "ns/b")}}, e.now)
	if n := e.reconcile(); n != 0 {
		t.Fatalf("%d writes when nothing changed", n)
	}
	if ev := e.events(); len(ev) != 0 {
		t.Fatalf("events when nothing changed: %q", ev)
	}

	// A second drain on n1 and one on n2.
	e.c.recordDrains(&repartition.Plan{Drains: []repartition.Drain{drainOn("n1", 0, e.now.Add(-time.Minute), "ns/a"), drainOn("n1", 1, e.now, "ns/b"), drainOn("n2", 1, e.now.Add(-2*time.Hour), "ns/c")}}, e.now)
	if n := e.reconcile(); n != 2 {
		t.Fatalf("%d writes, want 2", n)
	}
	e.expect(map[string]string{"n1": "0,1", "n2": "1", "n3": "-"})
	if st := e.c.Stats(); st.DrainsStarted != 3 || st.Draining != 3 {
		t.Fatalf("stats %+v", st)
	}
	e.events()

	// The plan drops n1's drains (no demand left) and gives n2's up after
	// MaxDrainTime (it began two hours ago): the annotations go, with why.
	e.now = e.now.Add(time.Minute)
	e.c.recordDrains(&repartition.Plan{}, e.now)
	if n := e.reconcile(); n != 2 {
		t.Fatalf("%d writes, want 2", n)
	}
	e.expect(map[string]string{"n1": "-", "n2": "-", "n3": "-"})
	ev = strings.Join(e.events(), "\n")
	for _, want := range []string{
		"Normal DrainLifted lifted the drain of GPU 0 of node n1 (MIG layout unchanged): no pending pod waits for its new layout any more",
		"Normal DrainLifted lifted the drain of GPU 1 of node n2 (MIG layout unchanged): given up after 1h0m0s: its pods did not end",
	} {
		if !strings.Contains(ev, want) {
			t.Errorf("events %q lack %q", ev, want)
		}
	}
	if st := e.c.Stats(); st.DrainsStarted != 3 || st.DrainsLifted != 3 || st.Draining != 0 {
		t.Fatalf("stats %+v", st)
	}
	w := httptest.NewRecorder()
	e.metrics.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	for _, want := range []string{"gpuslice_repartition_drains_started_total 3", "gpuslice_repartition_drains_lifted_total 3", "gpuslice_repartition_gpus_draining 0"} {
		if !strings.Contains(w.Body.String(), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if n := e.reconcile(); n != 0 {
		t.Fatalf("%d writes when nothing changed", n)
	}
}

func TestInputReadsTheDrainAnnotation(t *testing.T) {
	e := newDrainEnv(t, map[string]string{"n1": "1", "n2": "0,x", "n3": "-"})
	in := e.c.input(klog.Background(), e.snap(), e.now)
	got := map[string][]int{}
	for _, ns := range in.Nodes {
		got[ns.Topology.Name] = ns.Draining
	}
	if len(got) != 3 || !slices.Equal(got["n1"], []int{1}) || got["n2"] != nil || got["n3"] != nil {
		t.Fatalf("Draining %v, want n1 [1], a malformed n2 and n3 none", got)
	}
}

// A drained GPU that empties changes: it stays drained while its run is in
// flight (no pod may land on it before MIG manager rebuilds it), is not
// shown to the planner as a drain then, and its annotation goes when the
// run ends, without a DrainLifted event.
func TestDrainHeldWhileItsRunIsInFlight(t *testing.T) {
	e := newDrainEnv(t, map[string]string{"n1": "-"})
	e.c.recordDrains(&repartition.Plan{Drains: []repartition.Drain{drainOn("n1", 0, e.now, "ns/a")}}, e.now)
	if n := e.reconcile(); n != 1 {
		t.Fatalf("%d writes, want 1", n)
	}
	e.events()

	snap := e.snap()
	topo := snap.gpuNodes["n1"].Spec.Topology()
	np := repartition.NodePlan{Node: "n1", Changes: []repartition.Change{{GPU: 0, From: map[string]int{"1g.10gb": 7}, To: map[string]int{"3g.40gb": 2}}},
		Layout: map[int]map[string]int{0: {"3g.40gb": 2}, 1: {"1g.10gb": 7}}, Serves: []string{"ns/a"}, Proposed: topo}
	plan := &repartition.Plan{Nodes: []repartition.NodePlan{np}}
	e.c.recordDrains(plan, e.now)
	if err := e.c.start(e.ctx, snap, &plan.Nodes[0], e.now); err != nil {
		t.Fatal(err)
	}
	if n := e.reconcile(); n != 0 {
		t.Fatalf("%d writes while the run is in flight", n)
	}
	e.expect(map[string]string{"n1": "0"})
	for _, ns := range e.c.input(klog.Background(), e.snap(), e.now).Nodes {
		if len(ns.Draining) != 0 {
			t.Fatalf("a GPU held for its run is shown to the planner as a drain: %v", ns.Draining)
		}
	}

	e.c.finish("n1", true, "", nil)
	if n := e.reconcile(); n != 1 {
		t.Fatalf("%d writes after the run, want 1", n)
	}
	e.expect(map[string]string{"n1": "-"})
	for _, ev := range e.events() {
		if strings.Contains(ev, "DrainLifted") {
			t.Fatalf("a drain that ended in a change reported lifted: %q", ev)
		}
	}
	if st := e.c.Stats(); st.DrainsLifted != 0 || st.Draining != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestLiftDrainsRemovesOnlyItsOwn(t *testing.T) {
	e := newDrainEnv(t, map[string]string{"n1": "-", "n2": "-"})
	e.c.recordDrains(&repartition.Plan{Drains: []repartition.Drain{drainOn("n1", 0, e.now), drainOn("n1", 1, e.now), drainOn("n2", 1, e.now)}}, e.now)
	if n := e.reconcile(); n != 2 {
		t.Fatalf("%d writes, want 2", n)
	}
	e.events()
	// Someone else's GPU on n2 (another controller would be a bug, but
	// LiftDrains removes only what it listed).
	n2, _ := e.kube.CoreV1().Nodes().Get(e.ctx, "n2", metav1.GetOptions{})
	n2.Annotations[assignment.DrainAnnotation] = "0,1"
	if _, err := e.kube.CoreV1().Nodes().Update(e.ctx, n2, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := e.c.LiftDrains(e.ctx, "gpuslice-repartitioner stopped"); err != nil {
		t.Fatal(err)
	}
	e.expect(map[string]string{"n1": "-", "n2": "0"})
	ev := strings.Join(e.events(), "\n")
	if want := "DrainLifted lifted the drain of GPU 1 of node n1 (MIG layout unchanged): gpuslice-repartitioner stopped"; !strings.Contains(ev, want) {
		t.Fatalf("events %q lack %q", ev, want)
	}
	if st := e.c.Stats(); st.DrainsLifted != 3 || st.Draining != 0 {
		t.Fatalf("stats %+v", st)
	}
	// Until it plans again, it writes nothing.
	if n := e.reconcile(); n != 0 {
		t.Fatalf("%d writes after lifting", n)
	}
}
