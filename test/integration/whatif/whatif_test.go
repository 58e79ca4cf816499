// Package whatif tests the kubectl plugin: `kubectl gpuslice whatif` (pkg/cli, pkg/whatif)
// against a real kube-apiserver (test/framework): a cluster with only GPU
// feature discovery labels and allocatable (gpuslice not installed), a
// snapshot of it taken with kubectl, and the same cluster once gpuslice's
// GPUNodes are published. Every figure is checked against a replay of the
// same pods through pkg/sim on the nodes' true topologies. nodes_test.go
// tests `kubectl gpuslice nodes` and `top` (pkg/gpuview) likewise.
package whatif

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	schedconfig "k8s.io/kubernetes/pkg/scheduler/apis/config"
	"sigs.k8s.io/yaml"

	gpusliceapi "github.com/gpuslice/gpuslice/pkg/apis/gpuslice/v1alpha1"
	"github.com/gpuslice/gpuslice/pkg/cli"
	"github.com/gpuslice/gpuslice/pkg/generated/clientset/versioned"
	"github.com/gpuslice/gpuslice/pkg/localcluster/controlplane"
	"github.com/gpuslice/gpuslice/pkg/sim"
	"github.com/gpuslice/gpuslice/pkg/topology"
	"github.com/gpuslice/gpuslice/pkg/topology/fixtures"
	"github.com/gpuslice/gpuslice/test/framework"
)

const (
	a100     = "NVIDIA A100-SXM4-40GB"
	t4       = "Tesla T4"
	gpuTaint = "nvidia.com/gpu"
)

// clusterNode is one node of the test cluster: its true topology (nil for a
// CPU node) and the labels GPU feature discovery and the MIG manager would
// put on it.
type clusterNode struct {
	spec         fixtures.Spec
	layout       string // nvidia.com/mig.config
	instanceType string
	tainted      bool
}

var nodes = []clusterNode{
	{spec: fixtures.Spec{Name: "a100-bal-0", Product: a100, GPUs: 2, MIG: []string{"1g.5gb", "1g.5gb", "2g.10gb", "3g.20gb"}}, layout: "all-balanced", instanceType: "p4d.24xlarge"},
	{spec: fixtures.Spec{Name: "a100-bal-1", Product: a100, GPUs: 2, MIG: []string{"1g.5gb", "1g.5gb", "2g.10gb", "3g.20gb"}}, layout: "all-balanced", instanceType: "p4d.24xlarge"},
	{spec: fixtures.Spec{Name: "a100-small-0", Product: a100, GPUs: 1, MIG: slices.Repeat([]string{"1g.5gb"}, 7)}, layout: "all-1g.5gb", instanceType: "p4d.24xlarge"},
	{spec: fixtures.Spec{Name: "t4-0", Product: t4, GPUs: 4, Strategy: topology.MIGStrategyNone}, instanceType: "g4dn.12xlarge", tainted: true},
	{spec: fixtures.Spec{Name: "t4-1", Product: t4, GPUs: 4, Strategy: topology.MIGStrategyNone}, instanceType: "g4dn.12xlarge", tainted: true},
	{spec: fixtures.Spec{Name: "t4-shared-0", Product: t4, GPUs: 2, Strategy: topology.MIGStrategyNone, Replicas: 4}, instanceType: "g4dn.2xlarge"},
	{spec: fixtures.Spec{Name: "cpu-0"}, instanceType: "m5.8xlarge"},
}

// The price file: g4dn.2xlarge is left out on purpose (an unpriced node).
const prices = "p4d.24xlarge: 32.77\ng4dn.12xlarge: 3.912\nm5.8xlarge: 1.536\n"

var price = map[string]float64{"p4d.24xlarge": 32.77, "g4dn.12xlarge": 3.912, "m5.8xlarge": 1.536}

// clusterPod is one pod: its GPU request, where it runs today ("" for
// pending), and whether it tolerates the GPU taint or needs an A100.
type clusterPod struct {
	name, resource string
	count          int64
	node           string
	tolerates      bool
	needsA100      bool
	succeeded      bool
}

var pods = []clusterPod{
	{name: "p00", resource: "nvidia.com/mig-1g.5gb", count: 1, node: "a100-bal-0"},
	{name: "p01", resource: "nvidia.com/mig-1g.5gb", count: 1, node: "a100-bal-1"},
	{name: "p02", resource: "nvidia.com/mig-1g.5gb", count: 1, node: "a100-small-0"},
	{name: "p03", resource: "nvidia.com/mig-3g.20gb", count: 1, node: "a100-bal-1"},
	{name: "p04", resource: "nvidia.com/gpu", count: 1, node: "t4-0", tolerates: true},
	{name: "p05", resource: "nvidia.com/gpu", count: 1, node: "t4-1", tolerates: true},
	{name: "p06", resource: "nvidia.com/gpu", count: 1, node: "t4-shared-0"},
	{name: "p07", resource: "nvidia.com/mig-1g.5gb", count: 1, node: "a100-bal-0", needsA100: true},
	{name: "p08", resource: "nvidia.com/mig-3g.20gb", count: 1}, // pending
	{name: "p09", resource: "nvidia.com/gpu", count: 2, node: "t4-0", tolerates: true},
	{name: "p10", resource: "nvidia.com/mig-2g.10gb", count: 1, node: "a100-bal-0"},
	{name: "p11", resource: "nvidia.com/mig-3g.20gb", count: 4}, // pending, fits nowhere
	{name: "done", resource: "nvidia.com/gpu", count: 1, node: "t4-1", tolerates: true, succeeded: true},
	{name: "cpu-a", resource: "", node: "cpu-0"},
	{name: "cpu-b", resource: "", node: "a100-bal-0"},
}

func TestWhatif(t *testing.T) {
	cp := framework.StartControlPlane(t, controlplane.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	kube := cp.Client()
	cat := topology.NewCatalog()
	dir := t.TempDir()
	pricesPath := filepath.Join(dir, "prices.yaml")
	if err := os.WriteFile(pricesPath, []byte(prices), 0o644); err != nil {
		t.Fatal(err)
	}

	// (b) gpuslice not installed: nodes carry GFD labels and allocatable.
	topos := map[string]*topology.Node{}
	for _, n := range nodes {
		topo, obj, res := nodeObject(t, cat, n)
		topos[n.spec.Name] = topo
		if _, err := controlplane.CreateReadyNode(ctx, kube, obj, res); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ml"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, p := range pods {
		createPod(ctx, t, kube, p)
	}

	live := runWhatif(t, cp, "--prices", pricesPath, "-o", "json")
	t.Logf("whatif -o json (GFD labels only):\n%s", runCLI(t, cp, "whatif", "--prices", pricesPath, "-o", "json"))
	want := expected(ctx, t, kube, topos, true)
	checkReport(t, "labels", live, want, "labels+allocatable")

	// The table names every profile and the wide form every GPU node with
	// how its topology was inferred.
	table := string(runCLI(t, cp, "whatif", "--prices", pricesPath, "-o", "wide"))
	for _, s := range []string{"default-scheduler", "gpuslice-binpack", "gpuslice-fragmentation-aware", "gpuslice-spread", "a100-bal-0", "layout all-balanced resolved", "t4-shared-0", "time-sliced x4"} {
		if !strings.Contains(table, s) {
			t.Errorf("wide table lacks %q:\n%s", s, table)
		}
	}
	t.Logf("whatif -o wide (GFD labels only):\n%s", table)

	// (c) a snapshot taken with kubectl gives the same report, and without
	// prices the dollars are null.
	snap := filepath.Join(dir, "snapshot.yaml")
	out, err := exec.CommandContext(ctx, cp.KubectlPath(), "--kubeconfig", cp.KubeconfigPath(), "get", "nodes,pods", "-A", "-o", "yaml").Output()
	if err != nil {
		t.Fatalf("kubectl get: %v", err)
	}
	if err := os.WriteFile(snap, out, 0o644); err != nil {
		t.Fatal(err)
	}
	fromSnap := runWhatif(t, cp, "--snapshot", snap, "--prices", pricesPath, "-o", "json")
	if !reflect.DeepEqual(fromSnap, live) {
		t.Errorf("snapshot report differs from the live one:\n%v\n%v", fromSnap, live)
	}
	unpriced := runWhatif(t, cp, "--snapshot", snap, "-o", "json")
	wantUnpriced := expected(ctx, t, kube, topos, false)
	checkReport(t, "snapshot without prices", unpriced, wantUnpriced, "labels+allocatable")

	// (a) gpuslice installed: GPUNodes give the exact topologies. a100-bal-1
	// loses its layout label, so only its GPUNode can say what it is.
	installCRDs(ctx, t, cp)
	gpu := versioned.NewForConfigOrDie(cp.Config())
	for _, n := range nodes {
		if n.spec.Product == "" {
			continue
		}
		spec := gpusliceapi.SpecFromTopology(topos[n.spec.Name])
		spec.State = gpusliceapi.StateReady
		gn := &gpusliceapi.GPUNode{ObjectMeta: metav1.ObjectMeta{Name: n.spec.Name}, Spec: spec}
		if _, err := gpu.GpusliceV1alpha1().GPUNodes().Create(ctx, gn, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	node, err := kube.CoreV1().Nodes().Get(ctx, "a100-bal-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	delete(node.Labels, "nvidia.com/mig.config")
	if _, err := kube.CoreV1().Nodes().Update(ctx, node, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	plotPath := filepath.Join(dir, "whatif.png")
	exact := runWhatif(t, cp, "--prices", pricesPath, "-o", "json", "--plot", plotPath)
	checkReport(t, "GPUNodes", exact, want, "exact")
	f, err := os.Open(plotPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("--plot: %v", err)
	}
	if b := img.Bounds(); b.Dx() < 600 || b.Dy() < 300 {
		t.Errorf("--plot is %v, too small to read", b)
	}
	t.Logf("whatif (GPUNodes):\n%s", runCLI(t, cp, "whatif", "--prices", pricesPath))

	// Bad input is an error with a message, not a panic.
	for _, args := range [][]string{
		{"whatif", "-o", "xml"},
		{"whatif", "--snapshot", filepath.Join(dir, "missing.yaml")},
		{"whatif", "--snapshot", pricesPath},
		{"whatif", "--prices", snap},
		{"whatif", "--profiles", "gpuslice-nope"},
		{"whatif", "--plot", filepath.Join(dir, "x.jpg")},
	} {
		if _, err := tryCLI(cp, args...); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}

// nodeObject returns a node's true topology, its Node object with GFD labels,
// and what its device plugin advertises.
func nodeObject(t *testing.T, cat *topology.Catalog, n clusterNode) (*topology.Node, *corev1.Node, corev1.ResourceList) {
	t.Helper()
	labels := map[string]string{"kubernetes.io/hostname": n.spec.Name, "node.kubernetes.io/instance-type": n.instanceType}
	obj := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.spec.Name, Labels: labels}}
	if n.spec.Product == "" {
		return nil, obj, nil
	}
	topo := fixtures.MustBuild(cat, n.spec)
	caps, err := topo.Capacity()
	if err != nil {
		t.Fatal(err)
	}
	res := corev1.ResourceList{}
	for name, c := range caps {
		res[corev1.ResourceName(name)] = *resource.NewQuantity(c, resource.DecimalSI)
	}
	labels["nvidia.com/gpu.product"] = strings.ReplaceAll(n.spec.Product, " ", "-")
	labels["nvidia.com/gpu.count"] = fmt.Sprint(n.spec.GPUs)
	labels["nvidia.com/mig.strategy"] = string(topo.MIGStrategy)
	if n.layout != "" {
		labels["nvidia.com/mig.config"] = n.layout
		labels["nvidia.com/mig.config.state"] = "success"
	}
	if n.spec.Replicas > 0 {
		labels["nvidia.com/gpu.replicas"] = fmt.Sprint(n.spec.Replicas)
		labels["nvidia.com/gpu.sharing-strategy"] = "time-slicing"
	}
	if n.tainted {
		obj.Spec.Taints = []corev1.Taint{{Key: gpuTaint, Value: "present", Effect: corev1.TaintEffectNoSchedule}}
	}
	return topo, obj, res
}

func createPod(ctx context.Context, t *testing.T, kube kubernetes.Interface, p clusterPod) {
	t.Helper()
	req := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("8Gi")}
	lim := corev1.ResourceList{}
	if p.resource != "" {
		q := *resource.NewQuantity(p.count, resource.DecimalSI)
		req[corev1.ResourceName(p.resource)], lim[corev1.ResourceName(p.resource)] = q, q
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: p.name, Namespace: "ml"},
		Spec: corev1.PodSpec{
			NodeName:   p.node,
			Containers: []corev1.Container{{Name: "main", Image: "registry.k8s.io/pause:3.10", Resources: corev1.ResourceRequirements{Requests: req, Limits: lim}}},
		},
	}
	if p.tolerates {
		pod.Spec.Tolerations = []corev1.Toleration{{Key: gpuTaint, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}}
	}
	if p.needsA100 {
		pod.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
			NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{
				Key: "nvidia.com/gpu.product", Operator: corev1.NodeSelectorOpIn, Values: []string{"NVIDIA-A100-SXM4-40GB"},
			}}}},
		}}}
	}
	created, err := kube.CoreV1().Pods("ml").Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	phase := corev1.PodRunning
	switch {
	case p.succeeded:
		phase = corev1.PodSucceeded
	case p.node == "":
		phase = corev1.PodPending
	}
	created.Status.Phase = phase
	if _, err := kube.CoreV1().Pods("ml").UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// report is the JSON contract of whatif -o json, the fields the test reads.
type report struct {
	Current struct {
		GPUNodes         int      `json:"gpuNodes"`
		GPUs             int      `json:"gpus"`
		GPUPods          int      `json:"gpuPods"`
		PendingGPUPods   int      `json:"pendingGPUPods"`
		GPUNodesWithPods int      `json:"gpuNodesWithPods"`
		GPUsUsed         int      `json:"gpusUsed"`
		DollarsPerMonth  *float64 `json:"dollarsPerMonth"`
	} `json:"current"`
	Profiles []profile `json:"profiles"`
	Nodes    []struct {
		Name       string `json:"name"`
		Confidence string `json:"confidence"`
		GPUs       int    `json:"gpus"`
	} `json:"nodes"`
}

type profile struct {
	Name            string   `json:"name"`
	GPUNodesUsed    *int     `json:"gpuNodesUsed"`
	GPUNodesFreed   *int     `json:"gpuNodesFreed"`
	GPUsUsed        *int     `json:"gpusUsed"`
	PodsUnplaced    *int     `json:"podsUnplaced"`
	DollarsPerMonth *float64 `json:"dollarsPerMonth"`
	UnpricedNodes   int      `json:"unpricedNodes"`
}

func runCLI(t *testing.T, cp *controlplane.ControlPlane, args ...string) []byte {
	t.Helper()
	out, err := tryCLI(cp, args...)
	if err != nil {
		t.Fatalf("kubectl gpuslice %v: %v", args, err)
	}
	return out
}

func tryCLI(cp *controlplane.ControlPlane, args ...string) ([]byte, error) {
	var out, errOut bytes.Buffer
	cmd := cli.NewCommand(genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut})
	cmd.SetArgs(append([]string{"--kubeconfig", cp.KubeconfigPath()}, args...))
	err := cmd.ExecuteContext(context.Background())
	return out.Bytes(), err
}

// runWhatif runs whatif and decodes its JSON, checking the contract: one
// object whose every profile has all the figures, dollars present or null.
func runWhatif(t *testing.T, cp *controlplane.ControlPlane, args ...string) report {
	t.Helper()
	raw := runCLI(t, cp, append([]string{"whatif"}, args...)...)
	var generic map[string]any
	if err := json.Unmarshal(raw, &generic); err != nil {
		t.Fatalf("whatif -o json is not one JSON object: %v\n%s", err, raw)
	}
	profiles, ok := generic["profiles"].([]any)
	if !ok || len(profiles) == 0 {
		t.Fatalf("no profiles list: %s", raw)
	}
	for _, p := range profiles {
		m, _ := p.(map[string]any)
		for _, k := range []string{"name", "gpuNodesUsed", "gpuNodesFreed", "gpusUsed", "podsUnplaced", "dollarsPerMonth"} {
			if _, ok := m[k]; !ok {
				t.Errorf("profile %v lacks %s", m["name"], k)
			}
		}
	}
	var r report
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// expected replays the GPU pods read back from the API server through
// pkg/sim, on the nodes' true topologies, and returns the report whatif must
// give.
func expected(ctx context.Context, t *testing.T, kube kubernetes.Interface, topos map[string]*topology.Node, priced bool) report {
	t.Helper()
	nodeList, err := kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	podList, err := kube.CoreV1().Pods("ml").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	in := sim.ReplayInput{Seed: 1, DefaultPolicy: topology.PolicyDistributed}
	byName := map[string]*corev1.Node{}
	for i := range nodeList.Items {
		n := &nodeList.Items[i]
		byName[n.Name] = n
		in.Nodes = append(in.Nodes, sim.Node{Node: n, Topology: topos[n.Name]})
	}
	sort.Slice(in.Nodes, func(i, j int) bool { return in.Nodes[i].Node.Name < in.Nodes[j].Node.Name })
	spec := map[string]clusterPod{}
	for _, p := range pods {
		spec[p.name] = p
	}
	var gpuPods []*corev1.Pod
	for i := range podList.Items {
		p := &podList.Items[i]
		switch s := spec[p.Name]; {
		case s.succeeded:
		case s.resource == "":
			in.Fixed = append(in.Fixed, p)
		default:
			gpuPods = append(gpuPods, p)
		}
	}
	// Creation order; pods created within the same second by name.
	sort.SliceStable(gpuPods, func(i, j int) bool {
		a, b := gpuPods[i], gpuPods[j]
		if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
			return a.CreationTimestamp.Before(&b.CreationTimestamp)
		}
		return a.Name < b.Name
	})
	in.Pods = gpuPods

	var want report
	today := map[string]bool{}
	for _, p := range pods {
		if p.resource != "" && !p.succeeded {
			want.Current.GPUPods++
			if p.node == "" {
				want.Current.PendingGPUPods++
			} else {
				today[p.node] = true
			}
		}
	}
	want.Current.GPUNodesWithPods = len(today)
	for _, n := range nodes {
		if n.spec.Product != "" {
			want.Current.GPUNodes++
			want.Current.GPUs += n.spec.GPUs
		}
	}
	monthly := func(names []string) (float64, int) {
		d, unpriced := 0.0, 0
		for _, name := range names {
			p, ok := price[byName[name].Labels["node.kubernetes.io/instance-type"]]
			if !ok {
				unpriced++
				continue
			}
			d += p * 730
		}
		return math.Round(d*100) / 100, unpriced
	}
	if priced {
		d, _ := monthly(slices.Collect(func(yield func(string) bool) {
			for n := range today {
				if !yield(n) {
					return
				}
			}
		}))
		want.Current.DollarsPerMonth = &d
	}

	stock, err := sim.StockConfig("")
	if err != nil {
		t.Fatal(err)
	}
	shipped, err := sim.LoadConfigMapFile(filepath.Join("..", "..", "..", "manifests", "scheduler", "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	profiles := []*schedconfig.KubeSchedulerProfile{}
	for _, cfg := range []*schedconfig.KubeSchedulerConfiguration{stock, shipped} {
		ps, err := sim.Profiles(cfg)
		if err != nil {
			t.Fatal(err)
		}
		profiles = append(profiles, ps...)
	}
	// Today: the bound GPU pods on their nodes.
	held := in
	held.Pods, held.Fixed = nil, slices.Clone(in.Fixed)
	for _, p := range gpuPods {
		if p.Spec.NodeName != "" {
			held.Fixed = append(held.Fixed, p)
		}
	}
	cur, err := sim.Replay(ctx, profiles[0], held)
	if err != nil {
		t.Fatal(err)
	}
	if len(cur.FixedRejected) != 0 {
		t.Fatalf("today's pods do not fit their nodes: %+v", cur.FixedRejected)
	}
	want.Current.GPUsUsed = cur.GPUsUsed

	results, err := sim.ReplayProfiles(ctx, profiles, in)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range results {
		var used []string
		for _, n := range r.Nodes {
			if n.InUse() {
				used = append(used, n.Name)
			}
		}
		p := profile{Name: r.Profile, GPUNodesUsed: ptr(r.GPUNodesUsed), GPUNodesFreed: ptr(len(today) - r.GPUNodesUsed), GPUsUsed: ptr(r.GPUsUsed), PodsUnplaced: ptr(r.Unplaced)}
		if priced {
			d, unpriced := monthly(used)
			p.DollarsPerMonth, p.UnpricedNodes = &d, unpriced
		}
		want.Profiles = append(want.Profiles, p)
	}
	return want
}

func ptr[T any](v T) *T { return &v }

// checkReport compares whatif's report with the direct replay, and checks
// every GPU node's topology came from the expected source.
func checkReport(t *testing.T, name string, got, want report, confidence string) {
	t.Helper()
	gc, wc := got.Current, want.Current
	gd, wd := fmtDollars(gc.DollarsPerMonth), fmtDollars(wc.DollarsPerMonth)
	gc.DollarsPerMonth, wc.DollarsPerMonth = nil, nil
	if gc != wc || gd != wd {
		t.Errorf("%s: current %+v %s, want %+v %s", name, gc, gd, wc, wd)
	}
	if len(got.Profiles) != len(want.Profiles) {
		t.Fatalf("%s: profiles %v, want %v", name, got.Profiles, want.Profiles)
	}
	for i, w := range want.Profiles {
		g := got.Profiles[i]
		gs, ws := fmt.Sprintf("%s %d %d %d %d %v %d", g.Name, *g.GPUNodesUsed, *g.GPUNodesFreed, *g.GPUsUsed, *g.PodsUnplaced, fmtDollars(g.DollarsPerMonth), g.UnpricedNodes),
			fmt.Sprintf("%s %d %d %d %d %v %d", w.Name, *w.GPUNodesUsed, *w.GPUNodesFreed, *w.GPUsUsed, *w.PodsUnplaced, fmtDollars(w.DollarsPerMonth), w.UnpricedNodes)
		if gs != ws {
			t.Errorf("%s: profile %d is %q, the direct replay gives %q", name, i, gs, ws)
		}
	}
	// The scenario must tell the profiles apart, or the comparison proves
	// little: packing uses fewer GPU nodes than the stock scheduler.
	if *want.Profiles[0].GPUNodesUsed <= *want.Profiles[1].GPUNodesUsed {
		t.Errorf("%s: default-scheduler uses %d GPU nodes, gpuslice-binpack %d: the scenario does not show packing", name, *want.Profiles[0].GPUNodesUsed, *want.Profiles[1].GPUNodesUsed)
	}
	if *want.Profiles[0].PodsUnplaced == 0 {
		t.Errorf("%s: no unplaced pod in the scenario", name)
	}
	gpuNodes := 0
	for _, n := range got.Nodes {
		gpuNodes++
		if n.Confidence != confidence {
			t.Errorf("%s: node %s confidence %q, want %q", name, n.Name, n.Confidence, confidence)
		}
	}
	if gpuNodes != want.Current.GPUNodes {
		t.Errorf("%s: %d GPU nodes reported, want %d", name, gpuNodes, want.Current.GPUNodes)
	}
}

func fmtDollars(d *float64) string {
	if d == nil {
		return "null"
	}
	return fmt.Sprintf("%.2f", *d)
}

// installCRDs creates the CRDs of manifests/crds and waits until they are
// established. (pkg/localcluster.InstallCRDs does the same, but that package
// links the exporter's go-nvml, whose unresolved symbols fail to load in a
// binary that also links the kubectl plugin: cli-runtime's kustomize imports
// the standard plugin package, which makes the test binary bind every
// symbol at start.)
func installCRDs(ctx context.Context, t *testing.T, cp *controlplane.ControlPlane) {
	t.Helper()
	root, err := controlplane.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(root, "manifests", "crds", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no CRDs under manifests/crds: %v", err)
	}
	client := apiextensionsclient.NewForConfigOrDie(cp.Config())
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := yaml.UnmarshalStrict(data, crd); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if _, err := client.ApiextensionsV1().CustomResourceDefinitions().Create(ctx, crd, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
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
			t.Fatalf("CRD %s not established: %v", crd.Name, err)
		}
	}
}
