package gpuslice

import (
	"context"
	"fmt"
	"maps"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	corelisters "k8s.io/client-go/listers/core/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	schedconfig "k8s.io/kubernetes/pkg/scheduler/apis/config"
	internalcache "k8s.io/kubernetes/pkg/scheduler/backend/cache"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins/defaultbinder"
	plfeature "k8s.io/kubernetes/pkg/scheduler/framework/plugins/feature"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins/noderesources"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins/queuesort"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins/tainttoleration"
	frameworkruntime "k8s.io/kubernetes/pkg/scheduler/framework/runtime"
	tf "k8s.io/kubernetes/pkg/scheduler/testing/framework"

	"github.com/gpuslice/gpuslice/pkg/assignment"
	"github.com/gpuslice/gpuslice/pkg/cache"
	"github.com/gpuslice/gpuslice/pkg/topology"
	"github.com/gpuslice/gpuslice/pkg/topology/fixtures"
)

// demandEnv is a framework with GPUSlice filtering first, then the default
// TaintToleration and NodeResourcesFit, over a snapshot of Node objects.
type demandEnv struct {
	fw     framework.Framework
	pl     *Plugin
	shared *Shared
	nodes  map[string]*v1.Node
}

func cpuNode(name string, milliCPU int64, taints ...v1.Taint) *v1.Node {
	alloc := v1.ResourceList{
		v1.ResourceCPU:    *resource.NewMilliQuantity(milliCPU, resource.DecimalSI),
		v1.ResourceMemory: resource.MustParse("64Gi"),
		v1.ResourcePods:   resource.MustParse("110"),
	}
	return &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1.NodeSpec{Taints: taints}, Status: v1.NodeStatus{Allocatable: alloc, Capacity: alloc}}
}

func newDemandEnv(t testing.TB, c *cache.Cache, nodes ...*v1.Node) *demandEnv {
	t.Helper()
	args := testArgs("binpack")
	shared := testShared(c, args)
	shared.demand = newDemandRecorder(nil)
	shared.clock = func() time.Time { return now }
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	factory, built := pluginFactory(shared, args)
	fit := func(ctx context.Context, _ runtime.Object, h fwk.Handle) (fwk.Plugin, error) {
		return noderesources.NewFit(ctx, &schedconfig.NodeResourcesFitArgs{ScoringStrategy: &schedconfig.ScoringStrategy{
			Type: schedconfig.LeastAllocated, Resources: []schedconfig.ResourceSpec{{Name: "cpu", Weight: 1}}}}, h, plfeature.Features{})
	}
	taint := func(ctx context.Context, obj runtime.Object, h fwk.Handle) (fwk.Plugin, error) {
		return tainttoleration.New(ctx, obj, h, plfeature.Features{})
	}
	client := fake.NewSimpleClientset()
	fw, err := tf.NewFramework(ctx, []tf.RegisterPluginFunc{
		tf.RegisterQueueSortPlugin(queuesort.Name, queuesort.New),
		tf.RegisterBindPlugin(defaultbinder.Name, defaultbinder.New),
		tf.RegisterPluginAsExtensions(Name, factory, "PreFilter", "Filter", "PostFilter"),
		tf.RegisterPluginAsExtensions(tainttoleration.Name, taint, "Filter"),
		tf.RegisterPluginAsExtensions(noderesources.Name, fit, "PreFilter", "Filter"),
	}, "gpuslice-test",
		frameworkruntime.WithClientSet(client),
		frameworkruntime.WithInformerFactory(informers.NewSharedInformerFactory(client, 0)),
		frameworkruntime.WithSnapshotSharedLister(internalcache.NewSnapshot(nil, nodes)))
	if err != nil {
		t.Fatal(err)
	}
	env := &demandEnv{fw: fw, pl: *built, shared: shared, nodes: map[string]*v1.Node{}}
	for _, n := range nodes {
		env.nodes[n.Name] = n
	}
	return env
}

// schedule runs one scheduling cycle of pod over every node and, when no
// node takes it, PostFilter; it returns the nodes that took it.
func (e *demandEnv) schedule(t testing.TB, pod *v1.Pod) []string {
	t.Helper()
	pod = defaulted(pod)
	ctx := context.Background()
	cs := framework.NewCycleState()
	if _, st, _ := e.fw.RunPreFilterPlugins(ctx, cs, pod); !st.IsSuccess() {
		if _, pst := e.fw.RunPostFilterPlugins(ctx, cs, pod, framework.NewDefaultNodeToStatus()); pst.IsSuccess() {
			t.Fatalf("PostFilter made the pod schedulable: %v", pst)
		}
		return nil
	}
	var fits []string
	for name := range e.nodes {
		ni, err := e.fw.SnapshotSharedLister().NodeInfos().Get(name)
		if err != nil {
			t.Fatal(err)
		}
		if st := e.fw.RunFilterPlugins(ctx, cs, pod, ni); st.IsSuccess() {
			fits = append(fits, name)
		}
	}
	if len(fits) == 0 {
		if _, st := e.fw.RunPostFilterPlugins(ctx, cs, pod, framework.NewDefaultNodeToStatus()); st.IsSuccess() || st.Message() != "" {
			t.Fatalf("PostFilter = %v %q, want Unschedulable without a message", st.Code(), st.Message())
		}
	}
	return fits
}

// fill reserves the pod's devices on node through Filter and Reserve.
func (e *demandEnv) fill(t testing.TB, pod *v1.Pod, node string) {
	t.Helper()
	cs := cycle(t, e.pl, pod)
	if st := e.pl.Filter(context.Background(), cs, pod, nodeInfo(node)); !st.IsSuccess() {
		t.Fatal(st)
	}
	if st := e.pl.Reserve(context.Background(), cs, pod, node); !st.IsSuccess() {
		t.Fatal(st)
	}
}

// defaulted is the pod as the API server stores it: requests default to
// limits (NodeResourcesFit counts requests).
func defaulted(p *v1.Pod) *v1.Pod {
	p = p.DeepCopy()
	for i := range p.Spec.Containers {
		r := &p.Spec.Containers[i].Resources
		if r.Requests == nil {
			r.Requests = v1.ResourceList{}
		}
		for name, q := range r.Limits {
			if _, ok := r.Requests[name]; !ok {
				r.Requests[name] = q
			}
		}
	}
	return p
}

func withCPU(p *v1.Pod, milli int64) *v1.Pod {
	p.Spec.Containers[0].Resources.Requests = v1.ResourceList{v1.ResourceCPU: *resource.NewMilliQuantity(milli, resource.DecimalSI)}
	return p
}

var migA100 = fixtures.Spec{Name: "mig", Product: "NVIDIA A100-SXM4-40GB", GPUs: 1, MIG: []string{"1g.5gb", "1g.5gb", "2g.10gb", "3g.20gb"}}

func TestPostFilterRecordsMIGDemand(t *testing.T) {
	c := newCache(t, migA100)
	e := newDemandEnv(t, c, cpuNode("mig", 8000))
	e.fill(t, gpuPod("holder", map[string]int64{"nvidia.com/mig-3g.20gb": 1}), "mig")

	prio := int32(7)
	pod := withCPU(gpuPod("want3g", map[string]int64{"nvidia.com/mig-3g.20gb": 1}), 1000)
	pod.Spec.Priority = &prio
	if fits := e.schedule(t, pod); len(fits) != 0 {
		t.Fatalf("pod fits %v", fits)
	}
	rec, ok := e.shared.MIGDemand()[pod.UID]
	if !ok {
		t.Fatal("a pod rejected only for want of a 3g.20gb instance is not recorded")
	}
	if want := map[string]int{"3g.20gb": 1}; !maps.Equal(rec.Profiles, want) || rec.Priority != 7 || !rec.Since.Equal(now) || rec.Name != "want3g" {
		t.Fatalf("record %+v, want profiles %v, priority 7, since %v", rec, want, now)
	}

	// A later failed cycle keeps the first-seen time.
	e.shared.clock = func() time.Time { return now.Add(time.Minute) }
	e.schedule(t, pod)
	if rec := e.shared.MIGDemand()[pod.UID]; !rec.Since.Equal(now) {
		t.Fatalf("since moved to %v", rec.Since)
	}

	// Two instances of 1g.5gb with both taken: count 2.
	e.fill(t, gpuPod("h1", map[string]int64{"nvidia.com/mig-1g.5gb": 2}), "mig")
	two := gpuPod("two1g", map[string]int64{"nvidia.com/mig-1g.5gb": 2})
	e.schedule(t, two)
	if rec := e.shared.MIGDemand()[two.UID]; !maps.Equal(rec.Profiles, map[string]int{"1g.5gb": 2}) {
		t.Fatalf("record %+v, want 1g.5gb: 2", rec)
	}

	// Bound: gone. Deleted: gone.
	bound := pod.DeepCopy()
	bound.Spec.NodeName = "mig"
	e.shared.ObservePod(klog.Background(), bound)
	if _, ok := e.shared.MIGDemand()[pod.UID]; ok {
		t.Fatal("record kept after the pod was bound")
	}
	e.shared.ForgetPod(two)
	if len(e.shared.MIGDemand()) != 0 {
		t.Fatalf("records left after delete: %v", e.shared.MIGDemand())
	}
}

func TestPostFilterIgnoresOtherCauses(t *testing.T) {
	stale := fixtures.Spec{Name: "stale", Product: "NVIDIA A100-SXM4-40GB", GPUs: 1, MIG: []string{"3g.20gb", "3g.20gb"}}
	timeSliced := fixtures.Spec{Name: "ts", Product: "NVIDIA H100 80GB HBM3", GPUs: 2}
	mig3 := func(name string) *v1.Pod { return gpuPod(name, map[string]int64{"nvidia.com/mig-3g.20gb": 1}) }
	tests := []struct {
		name  string
		specs []fixtures.Spec
		nodes []*v1.Node
		fill  map[string]*v1.Pod // node -> pod that takes its devices
		pod   *v1.Pod
		stale bool
	}{
		{
			name: "CPU", specs: []fixtures.Spec{migA100}, nodes: []*v1.Node{cpuNode("mig", 2000)},
			fill: map[string]*v1.Pod{"mig": mig3("holder")}, pod: withCPU(mig3("p"), 4000),
		},
		{
			name: "taint", specs: []fixtures.Spec{migA100},
			nodes: []*v1.Node{cpuNode("mig", 8000, v1.Taint{Key: "team", Value: "other", Effect: v1.TaintEffectNoSchedule})},
			fill:  map[string]*v1.Pod{"mig": mig3("holder")}, pod: mig3("p"),
		},
		{
			name: "whole GPU", specs: []fixtures.Spec{timeSliced}, nodes: []*v1.Node{cpuNode("ts", 8000)},
			fill: map[string]*v1.Pod{"ts": gpuPod("holder", map[string]int64{"nvidia.com/gpu": 2})},
			pod:  gpuPod("p", map[string]int64{"nvidia.com/gpu": 1}),
		},
		{
			// A MIG profile on a node whose GPU has MIG off: MIG mode is
			// never changed, so no layout offers it there.
			name: "MIG off", specs: []fixtures.Spec{timeSliced}, nodes: []*v1.Node{cpuNode("ts", 8000)},
			pod: mig3("p"),
		},
		{
			name: "MIG and a whole GPU", specs: []fixtures.Spec{migA100}, nodes: []*v1.Node{cpuNode("mig", 8000)},
			fill: map[string]*v1.Pod{"mig": mig3("holder")},
			pod:  gpuPod("p", map[string]int64{"nvidia.com/mig-3g.20gb": 1, "nvidia.com/gpu": 1}),
		},
		{
			// Its free 3g.20gb instances would take the pod, but its
			// exporter's heartbeat is old.
			name: "stale node", specs: []fixtures.Spec{stale}, nodes: []*v1.Node{cpuNode("stale", 8000)},
			pod: mig3("p"), stale: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newCache(t, tc.specs...)
			if tc.stale {
				c = cache.New(cache.Options{StaleAfter: 40 * time.Second, Now: func() time.Time { return now }})
				c.SetTopology("stale", &cache.Topology{Node: fixtures.MustBuild(topology.NewCatalog(), stale), State: "Ready"})
				c.SetHeartbeat("stale", now.Add(-5*time.Minute))
			}
			e := newDemandEnv(t, c, tc.nodes...)
			for node, p := range tc.fill {
				e.fill(t, p, node)
			}
			// A record from an earlier cycle goes too.
			e.shared.demand.set(tc.pod, map[string]int{"3g.20gb": 1}, now)
			if fits := e.schedule(t, tc.pod); len(fits) != 0 {
				t.Fatalf("pod fits %v", fits)
			}
			if got := e.shared.MIGDemand(); len(got) != 0 {
				t.Fatalf("recorded %v for a pod refused for %s", got, tc.name)
			}
		})
	}
}

func TestPostFilterKeepsRecordWhileReconfiguring(t *testing.T) {
	c := newCache(t, migA100)
	e := newDemandEnv(t, c, cpuNode("mig", 8000))
	e.fill(t, gpuPod("holder", map[string]int64{"nvidia.com/mig-3g.20gb": 1}), "mig")
	pod := gpuPod("p", map[string]int64{"nvidia.com/mig-3g.20gb": 1})
	e.schedule(t, pod)
	if _, ok := e.shared.MIGDemand()[pod.UID]; !ok {
		t.Fatal("not recorded")
	}
	c.SetTopology("mig", &cache.Topology{Node: fixtures.MustBuild(topology.NewCatalog(), migA100), State: "Reconfiguring", Message: "MIG manager"})
	e.schedule(t, pod)
	if _, ok := e.shared.MIGDemand()[pod.UID]; !ok {
		t.Fatal("record dropped while the only candidate node reconfigures")
	}
}

func TestDemandWriterWritesOncePerChange(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pod := gpuPod("p", map[string]int64{"nvidia.com/mig-3g.20gb": 1})
	client := fake.NewSimpleClientset(pod)
	indexer := toolscache.NewIndexer(toolscache.MetaNamespaceKeyFunc, toolscache.Indexers{})
	if err := indexer.Add(pod); err != nil {
		t.Fatal(err)
	}
	r := newDemandRecorder(nil)
	w := newDemandWriter(client, corelisters.NewPodLister(indexer), r, nil)
	logger := klog.Background()
	// step processes what is queued (waiting for the rate limiter's delay)
	// and refreshes the lister from the API, as the informer would.
	step := func() {
		t.Helper()
		deadline := time.Now().Add(2 * time.Second)
		for w.queue.Len() == 0 {
			if time.Now().After(deadline) {
				t.Fatal("nothing queued")
			}
			time.Sleep(time.Millisecond)
		}
		w.processNext(ctx, logger)
		cur, err := client.CoreV1().Pods("default").Get(ctx, "p", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := indexer.Update(cur); err != nil {
			t.Fatal(err)
		}
	}
	idle := func() {
		t.Helper()
		time.Sleep(30 * time.Millisecond)
		if n := w.queue.Len(); n != 0 {
			t.Fatalf("%d queued without a change", n)
		}
	}
	annotation := func() *assignment.Demand {
		t.Helper()
		cur, _, _ := indexer.GetByKey("default/p")
		d, err := assignment.DemandFromPod(cur.(*v1.Pod))
		if err != nil {
			t.Fatal(err)
		}
		return d
	}

	r.set(pod, map[string]int{"3g.20gb": 1}, now)
	step()
	if got := annotation(); got == nil || !maps.Equal(got.Profiles, map[string]int{"3g.20gb": 1}) || !got.Since.Equal(now) {
		t.Fatalf("annotation %+v", got)
	}
	// The same demand again (every failed cycle says it): no write.
	r.set(pod, map[string]int{"3g.20gb": 1}, now.Add(time.Minute))
	idle()
	// A queued pod whose annotation already says its record: no write.
	w.queue.Add(demandKey{Namespace: "default", Name: "p", UID: pod.UID})
	w.processNext(ctx, logger)
	// Changed profiles: one write, since kept.
	r.set(pod, map[string]int{"3g.20gb": 1, "1g.5gb": 2}, now.Add(2*time.Minute))
	step()
	if got := annotation(); !maps.Equal(got.Profiles, map[string]int{"3g.20gb": 1, "1g.5gb": 2}) || !got.Since.Equal(now) {
		t.Fatalf("annotation %+v", got)
	}
	// No longer MIG demand: the annotation goes.
	r.clear(pod.UID)
	step()
	if got := annotation(); got != nil {
		t.Fatalf("annotation %+v after clear", got)
	}
	if n := w.writes.Load(); n != 3 {
		t.Fatalf("%d writes, want 3 (set, change, removal)", n)
	}
	// Bound pods are left alone.
	r.set(pod, map[string]int{"3g.20gb": 1}, now)
	bound, _, _ := indexer.GetByKey("default/p")
	b := bound.(*v1.Pod).DeepCopy()
	b.Spec.NodeName = "n"
	if err := indexer.Update(b); err != nil {
		t.Fatal(err)
	}
	for w.queue.Len() == 0 {
		time.Sleep(time.Millisecond)
	}
	w.processNext(ctx, logger)
	if n := w.writes.Load(); n != 3 {
		t.Fatalf("%d writes, want none for a bound pod", n)
	}
	var patches int
	for _, a := range client.Actions() {
		if a.GetVerb() == "patch" {
			patches++
		}
	}
	if patches != 3 {
		t.Fatalf("%d patches sent, want 3", patches)
	}
}

// BenchmarkFailedCycle500Nodes is what a failed cycle of a pod that wants a
// 3g.20gb instance costs on 500 A100 MIG nodes whose 3g.20gb instances are
// all taken: GPUSlice's PreFilter and the framework's Filter chain
// (GPUSlice first, TaintToleration, NodeResourcesFit) on every node, then,
// except in "filter-only", GPUSlice's PostFilter. In "demand" the first
// candidate confirms; in "tainted" every node carries a taint the pod does
// not tolerate, so PostFilter probes all 500 and records nothing (its worst
// case).
func BenchmarkFailedCycle500Nodes(b *testing.B) {
	var specs []fixtures.Spec
	for i := 0; i < 500; i++ {
		specs = append(specs, fixtures.Spec{Name: fmt.Sprintf("mig-%03d", i), Product: "NVIDIA A100-SXM4-40GB", GPUs: 8, MIG: []string{"1g.5gb", "1g.5gb", "2g.10gb", "3g.20gb"}})
	}
	for _, mode := range []string{"filter-only", "demand", "tainted"} {
		b.Run(mode, func(b *testing.B) {
			var nodes []*v1.Node
			for _, s := range specs {
				n := cpuNode(s.Name, 64000)
				if mode == "tainted" {
					n.Spec.Taints = []v1.Taint{{Key: "team", Value: "other", Effect: v1.TaintEffectNoSchedule}}
				}
				nodes = append(nodes, n)
			}
			e := newDemandEnv(b, newCache(b, specs...), nodes...)
			for i, s := range specs {
				e.fill(b, gpuPod(fmt.Sprint("fill-", i), map[string]int64{"nvidia.com/mig-3g.20gb": 8}), s.Name)
			}
			pod := defaulted(gpuPod("bench", map[string]int64{"nvidia.com/mig-3g.20gb": 1}))
			infos := make([]fwk.NodeInfo, len(nodes))
			for i, n := range nodes {
				ni, err := e.fw.SnapshotSharedLister().NodeInfos().Get(n.Name)
				if err != nil {
					b.Fatal(err)
				}
				infos[i] = ni
			}
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				cs := framework.NewCycleState()
				if _, st, _ := e.fw.RunPreFilterPlugins(ctx, cs, pod); !st.IsSuccess() {
					b.Fatal(st)
				}
				for _, ni := range infos {
					if st := e.fw.RunFilterPlugins(ctx, cs, pod, ni); st.IsSuccess() {
						b.Fatal("fits")
					}
				}
				if mode != "filter-only" {
					e.fw.RunPostFilterPlugins(ctx, cs, pod, framework.NewDefaultNodeToStatus())
				}
			}
			b.StopTimer()
			_, recorded := e.shared.MIGDemand()[pod.UID]
			if recorded != (mode == "demand") {
				b.Fatalf("recorded %v in mode %s", recorded, mode)
			}
		})
	}
}
