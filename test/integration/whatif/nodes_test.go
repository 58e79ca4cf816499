package whatif

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gpuslice/gpuslice/pkg/allocator"
	gpusliceapi "github.com/gpuslice/gpuslice/pkg/apis/gpuslice/v1alpha1"
	"github.com/gpuslice/gpuslice/pkg/assignment"
	"github.com/gpuslice/gpuslice/pkg/generated/clientset/versioned"
	"github.com/gpuslice/gpuslice/pkg/gpuview"
	"github.com/gpuslice/gpuslice/pkg/localcluster/controlplane"
	"github.com/gpuslice/gpuslice/pkg/sim"
	"github.com/gpuslice/gpuslice/pkg/topology"
	"github.com/gpuslice/gpuslice/pkg/topology/fixtures"
	"github.com/gpuslice/gpuslice/test/framework"
)

// TestNodesAndTop places pods with pkg/sim's replay, writes them to a real
// kube-apiserver as bound pods with the devices the kubelet reported
// (GPUNode allocations) or, for one pod, only the scheduler's assignment
// annotation, and checks `kubectl gpuslice nodes` and `top` against the
// replay: every device held by the pod the replay gave it, and the totals
// equal to the replay's.
func TestNodesAndTop(t *testing.T) {
	cp := framework.StartControlPlane(t, controlplane.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	kube := cp.Client()
	cat := topology.NewCatalog()

	// Before gpuslice is installed, nodes and top say so.
	for _, args := range [][]string{{"nodes"}, {"top"}} {
		if _, err := tryCLI(cp, args...); err == nil || !strings.Contains(err.Error(), "not installed") {
			t.Errorf("%v without the CRD: %v", args, err)
		}
	}
	installCRDs(ctx, t, cp)
	gpu := versioned.NewForConfigOrDie(cp.Config())

	specs := []fixtures.Spec{
		{Name: "a100-0", Product: a100, GPUs: 2, MIG: []string{"1g.5gb", "1g.5gb", "2g.10gb", "3g.20gb"}},
		{Name: "a100-1", Product: a100, GPUs: 2, MIG: []string{"1g.5gb", "1g.5gb", "2g.10gb", "3g.20gb"}},
		{Name: "t4-0", Product: t4, GPUs: 2, Strategy: topology.MIGStrategyNone, Replicas: 4},
		{Name: "t4-1", Product: t4, GPUs: 2, Strategy: topology.MIGStrategyNone, Replicas: 4},
	}
	in := sim.ReplayInput{Seed: 7, DefaultPolicy: topology.PolicyDistributed}
	topos := map[string]*topology.Node{}
	for _, s := range specs {
		_, obj, res := nodeObject(t, cat, clusterNode{spec: s})
		node, err := controlplane.CreateReadyNode(ctx, kube, obj, res)
		if err != nil {
			t.Fatal(err)
		}
		topos[s.Name] = fixtures.MustBuild(cat, s)
		in.Nodes = append(in.Nodes, sim.Node{Node: node, Topology: topos[s.Name]})
	}
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ml"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	workload := []clusterPod{
		{name: "w0", resource: "nvidia.com/mig-1g.5gb", count: 1},
		{name: "w1", resource: "nvidia.com/mig-3g.20gb", count: 1},
		{name: "w2", resource: "nvidia.com/gpu", count: 1},
		{name: "w3", resource: "nvidia.com/mig-2g.10gb", count: 1},
		{name: "w4", resource: "nvidia.com/gpu", count: 2}, // two replicas on distinct GPUs (gpuslice's default)
		{name: "w5", resource: "nvidia.com/mig-1g.5gb", count: 1},
	}
	for _, w := range workload {
		createPod(ctx, t, kube, w) // pending: the replay below places them
	}
	list, err := kube.CoreV1().Pods("ml").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*corev1.Pod{}
	for i := range list.Items {
		p := &list.Items[i]
		byName[p.Name] = p
	}
	for _, w := range workload {
		in.Pods = append(in.Pods, byName[w.name])
	}
	cfg, err := sim.LoadConfigMapFile("../../../manifests/scheduler/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	prof, err := sim.Profile(cfg, "gpuslice-binpack")
	if err != nil {
		t.Fatal(err)
	}
	res, err := sim.Replay(ctx, prof, in)
	if err != nil {
		t.Fatal(err)
	}
	if res.Unplaced != 0 {
		t.Fatalf("replay left %d pods unplaced: %+v", res.Unplaced, res.Placements)
	}

	// Bind the pods where the replay put them. w5's devices are known only
	// from the scheduler's annotation; the kubelet reported the others.
	allocs := map[string][]gpusliceapi.PodAllocation{}
	for _, pl := range res.Placements {
		p := byName[pl.Name]
		if pl.Name == "w5" {
			a := assignment.FromPlacement(&allocator.Placement{Node: pl.Node, Containers: []allocator.ContainerDevices{{Name: "main", Devices: pl.Devices}}})
			v, err := a.Encode()
			if err != nil {
				t.Fatal(err)
			}
			p.Annotations = map[string]string{assignment.Annotation: v}
			if p, err = kube.CoreV1().Pods("ml").Update(ctx, p, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		} else {
			a := gpusliceapi.PodAllocation{PodUID: string(p.UID), Namespace: "ml", Name: p.Name, Containers: []gpusliceapi.ContainerAllocation{{Name: "main"}}}
			for _, rd := range pl.Devices {
				a.Containers[0].Devices = append(a.Containers[0].Devices, gpusliceapi.ResourceDevices{Resource: rd.Resource, DeviceIDs: rd.DeviceIDs})
			}
			allocs[pl.Node] = append(allocs[pl.Node], a)
		}
		if err := kube.CoreV1().Pods("ml").Bind(ctx, &corev1.Binding{
			ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: "ml"},
			Target:     corev1.ObjectReference{Kind: "Node", Name: pl.Node},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// A GPU pod bound without any device record, and one pending.
	createPod(ctx, t, kube, clusterPod{name: "mystery", resource: "nvidia.com/gpu", count: 1, node: "t4-1"})
	createPod(ctx, t, kube, clusterPod{name: "waiting", resource: "nvidia.com/mig-1g.5gb", count: 1})

	// One GPU the replay left empty is unhealthy; one node reconfigures.
	var sick struct {
		node string
		gpu  int
	}
	for _, n := range res.Nodes {
		for gi, g := range n.GPUs {
			if g.Used == 0 && sick.node == "" {
				sick.node, sick.gpu = n.Name, gi
			}
		}
	}
	for _, s := range specs {
		spec := gpusliceapi.SpecFromTopology(topos[s.Name])
		spec.State, spec.Allocations = gpusliceapi.StateReady, allocs[s.Name]
		if s.Name == sick.node {
			spec.GPUs[sick.gpu].Healthy, spec.GPUs[sick.gpu].UnhealthyReason = false, "XID 79"
		}
		if s.Name == "a100-1" {
			spec.State, spec.Message = gpusliceapi.StateReconfiguring, "nvidia.com/mig.config.state=pending"
		}
		gn := &gpusliceapi.GPUNode{ObjectMeta: metav1.ObjectMeta{Name: s.Name}, Spec: spec}
		if _, err := gpu.GpusliceV1alpha1().GPUNodes().Create(ctx, gn, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	// nodes -o json: every device the replay gave a pod is held by that pod.
	var view gpuview.Cluster
	if err := json.Unmarshal(runCLI(t, cp, "nodes", "-o", "json"), &view); err != nil {
		t.Fatal(err)
	}
	holder := map[string][]string{}
	for _, n := range view.Nodes {
		if len(n.Problems) > 0 {
			t.Errorf("node %s problems: %v", n.Name, n.Problems)
		}
		for _, g := range n.GPUs {
			for _, s := range g.Slots {
				holder[s.DeviceID] = s.Pods
			}
		}
	}
	for _, pl := range res.Placements {
		want := "ml/" + pl.Name
		if pl.Name == "w5" {
			want += " (predicted)"
		}
		for _, rd := range pl.Devices {
			for _, id := range rd.DeviceIDs {
				base, _, _ := topology.SplitReplicaID(id)
				if !slices.Contains(holder[base], want) {
					t.Errorf("device %s of %s: held by %v, want %s", base, pl.Name, holder[base], want)
				}
			}
		}
	}
	if !slices.Equal(view.PendingGPUPods, []string{"ml/waiting"}) {
		t.Errorf("pending %v", view.PendingGPUPods)
	}

	// The slot map as text, for one node and for all.
	text := string(runCLI(t, cp, "nodes"))
	for _, s := range []string{"a100-0", "t4-1", "(predicted)", "GPU pods without reported devices: ml/mystery", "pending GPU pods: ml/waiting", "Reconfiguring", "UNHEALTHY (XID 79)"} {
		if !strings.Contains(text, s) {
			t.Errorf("nodes output lacks %q:\n%s", s, text)
		}
	}
	one := string(runCLI(t, cp, "nodes", "t4-0"))
	if !strings.HasPrefix(one, "t4-0 ") || strings.Contains(one, "a100-0") {
		t.Errorf("nodes t4-0:\n%s", one)
	}
	if _, err := tryCLI(cp, "nodes", "nope"); err == nil {
		t.Error("nodes nope: no error")
	}
	if _, err := tryCLI(cp, "nodes", "--color", "sometimes"); err == nil {
		t.Error("nodes --color sometimes: no error")
	}
	if strings.Contains(text, "\x1b[") {
		t.Error("colour written to a non-terminal")
	}
	coloured := string(runCLI(t, cp, "nodes", "--color", "always"))
	for _, s := range []string{"\x1b[32mfree\x1b[0m", "\x1b[31mUNHEALTHY (XID 79)\x1b[0m", "\x1b[33mml/w5 (predicted)\x1b[0m", "\x1b[33mReconfiguring\x1b[0m"} {
		if !strings.Contains(coloured, s) {
			t.Errorf("--color always lacks %q", s)
		}
	}
	t.Logf("kubectl gpuslice nodes:\n%s", text)

	// top: the replay's totals, less the unhealthy GPU.
	var tot gpuview.Totals
	if err := json.Unmarshal(runCLI(t, cp, "top", "-o", "json"), &tot); err != nil {
		t.Fatal(err)
	}
	var capacity, stranded float64
	gpus, empty, emptyNodes := 0, 0, 0
	for _, n := range res.Nodes {
		if !n.InUse() {
			emptyNodes++
		}
		for gi, g := range n.GPUs {
			gpus++
			if n.Name == sick.node && gi == sick.gpu {
				continue
			}
			capacity += g.Capacity
			if g.Used == 0 {
				empty++
			} else {
				stranded += g.Capacity - g.Used
			}
		}
	}
	want := gpuview.Totals{
		GPUNodes: len(specs), GPUs: gpus, Capacity: capacity, Used: res.UsedGPUEquivalents, Free: capacity - res.UsedGPUEquivalents,
		Stranded: stranded, EmptyGPUs: empty, EmptyNodes: emptyNodes, UnhealthyGPUs: 1, NotReadyNodes: 1, PendingGPUPods: 1,
	}
	round := func(x gpuview.Totals) string {
		r := func(v float64) float64 { return math.Round(v*1e6) / 1e6 }
		x.Capacity, x.Used, x.Free, x.Stranded = r(x.Capacity), r(x.Used), r(x.Free), r(x.Stranded)
		return fmt.Sprintf("%+v", x)
	}
	if round(tot) != round(want) {
		t.Errorf("top %s\nwant %s", round(tot), round(want))
	}
	if sick.node == "" {
		t.Error("the replay left no GPU empty: the scenario does not test empty or unhealthy GPUs")
	}
	t.Logf("kubectl gpuslice top -o wide:\n%s", runCLI(t, cp, "top", "-o", "wide"))
}
