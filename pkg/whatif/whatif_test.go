package whatif

import (
	"bytes"
	"context"
	"encoding/json"
	"image/png"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8stypes "k8s.io/apimachinery/pkg/types"
	schedconfig "k8s.io/kubernetes/pkg/scheduler/apis/config"
	"sigs.k8s.io/yaml"

	"github.com/gpuslice/gpuslice/manifests"
	"github.com/gpuslice/gpuslice/pkg/sim"
)

func options(t *testing.T) Options {
	t.Helper()
	stock, err := sim.StockConfig("")
	if err != nil {
		t.Fatal(err)
	}
	base, err := sim.Profile(stock, "default-scheduler")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := sim.LoadConfigMap(manifests.SchedulerConfigMap())
	if err != nil {
		t.Fatal(err)
	}
	binpack, err := sim.Profile(cfg, "gpuslice-binpack")
	if err != nil {
		t.Fatal(err)
	}
	return Options{Inferrer: inferrer(t), Baseline: base, Profiles: []*schedconfig.KubeSchedulerProfile{base, binpack}, Seed: 1}
}

func gpuPod(name, node, res string, n int64, created int) *v1.Pod {
	q := *resource.NewQuantity(n, resource.DecimalSI)
	rl := v1.ResourceList{v1.ResourceCPU: resource.MustParse("1")}
	lim := v1.ResourceList{}
	if res != "" {
		rl[v1.ResourceName(res)], lim[v1.ResourceName(res)] = q, q
	}
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ml", UID: k8stypes.UID("ml-" + name),
			CreationTimestamp: metav1.NewTime(time.Unix(1_800_000_000+int64(created), 0))},
		Spec:   v1.PodSpec{NodeName: node, Containers: []v1.Container{{Name: "c", Resources: v1.ResourceRequirements{Requests: rl, Limits: lim}}}},
		Status: v1.PodStatus{Phase: v1.PodRunning},
	}
}

// smallCluster: two A100 nodes of 7 x 1g.5gb (GFD labels only), a CPU node,
// a small pod on each A100 node today, a finished pod, a pod with an
// invalid request and CPU pods.
func smallCluster() *Cluster {
	labels := func(name string) map[string]string {
		return map[string]string{LabelProduct: a100, LabelCount: "1", LabelMIGConfig: "all-1g.5gb", LabelInstanceType: "p4d.24xlarge", "kubernetes.io/hostname": name}
	}
	c := &Cluster{}
	for _, name := range []string{"a", "b"} {
		c.Nodes = append(c.Nodes, gfdNode(name, labels(name), map[string]int64{"nvidia.com/mig-1g.5gb": 7, "pods": 110}))
	}
	c.Nodes = append(c.Nodes, gfdNode("cpu", map[string]string{"kubernetes.io/hostname": "cpu"}, map[string]int64{"pods": 110}))
	done := gpuPod("done", "a", "nvidia.com/mig-1g.5gb", 1, 0)
	done.Status.Phase = v1.PodSucceeded
	bad := gpuPod("bad", "", "nvidia.com/mig-9g.99gb", 1, 5)
	c.Pods = []*v1.Pod{
		gpuPod("second", "b", "nvidia.com/mig-1g.5gb", 1, 2),
		gpuPod("first", "a", "nvidia.com/mig-1g.5gb", 1, 1),
		done, bad,
		gpuPod("cpu-on-a", "a", "", 0, 3),
		gpuPod("cpu-pending", "", "", 0, 4),
	}
	return c
}

func TestAnalyzeSmallCluster(t *testing.T) {
	ctx := context.Background()
	o := options(t)
	r, err := Analyze(ctx, smallCluster(), o)
	if err != nil {
		t.Fatal(err)
	}
	cur := r.Current
	if cur.GPUNodes != 2 || cur.GPUs != 2 || cur.GPUPods != 2 || cur.PendingGPUPods != 0 || cur.GPUNodesWithPods != 2 || cur.GPUsUsed != 2 || cur.DollarsPerMonth != nil {
		t.Errorf("current %+v", cur)
	}
	if len(r.SkippedPods) != 1 || r.SkippedPods[0].Pod != "ml/bad" || !strings.Contains(r.SkippedPods[0].Reason, "9g.99gb") {
		t.Errorf("skipped %+v, want ml/bad with its reason", r.SkippedPods)
	}
	if len(r.Profiles) != 2 {
		t.Fatalf("profiles %v", r.ProfileNames())
	}
	stock, binpack := r.Profiles[0], r.Profiles[1]
	if stock.Name != "default-scheduler" || binpack.Name != "gpuslice-binpack" {
		t.Fatalf("profiles %v", r.ProfileNames())
	}
	// LeastAllocated spreads the two pods; gpuslice packs them on one node.
	if stock.GPUNodesUsed != 2 || binpack.GPUNodesUsed != 1 || binpack.GPUNodesFreed != 1 || binpack.GPUsFreed != 1 {
		t.Errorf("stock %+v, binpack %+v", stock, binpack)
	}
	// Creation order: "first" is placed first.
	if pl := binpack.Result.Placements; len(pl) != 2 || pl[0].Name != "first" || pl[1].Name != "second" {
		t.Errorf("placements %+v, want first then second", pl)
	}
	for _, n := range r.Nodes {
		if n.Confidence != Labels {
			t.Errorf("node %s: %s %s", n.Name, n.Confidence, n.Source)
		}
	}

	// JSON: one object; dollars null without prices, numbers with.
	var buf bytes.Buffer
	if err := r.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), `"dollarsPerMonth": null`) {
		t.Errorf("no null dollars without prices:\n%s", buf.String())
	}
	o.Prices = Prices{"p4d.24xlarge": 10}
	r, err = Analyze(ctx, smallCluster(), o)
	if err != nil {
		t.Fatal(err)
	}
	if d := r.Profiles[1].DollarsPerMonth; d == nil || *d != 10*HoursPerMonth {
		t.Errorf("binpack dollars %v, want %v", d, 10*HoursPerMonth)
	}
	if d := r.Current.DollarsPerMonth; d == nil || *d != 2*10*HoursPerMonth {
		t.Errorf("today's dollars %v", d)
	}
	var decoded struct {
		Profiles []map[string]any `json:"profiles"`
	}
	buf.Reset()
	if err := r.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(buf.Bytes(), &decoded); err != nil || len(decoded.Profiles) != 2 {
		t.Fatalf("JSON: %v %s", err, buf.String())
	}
	buf.Reset()
	if err := r.WriteYAML(&buf); err != nil || !strings.Contains(buf.String(), "gpuNodesUsed: 1") {
		t.Errorf("YAML: %v\n%s", err, buf.String())
	}
	buf.Reset()
	if err := r.WriteTable(&buf, true); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"gpuslice-binpack", "$7,300", "labels+allocatable: layout all-1g.5gb resolved", "ml/bad"} {
		if !strings.Contains(buf.String(), s) {
			t.Errorf("table lacks %q:\n%s", s, buf.String())
		}
	}
	buf.Reset()
	if err := r.WritePNG(&buf); err != nil {
		t.Fatal(err)
	}
	if img, err := png.Decode(&buf); err != nil || img.Bounds().Dx() < 600 {
		t.Errorf("PNG: %v", err)
	}
}

func TestAnalyzeRejectsBadOptions(t *testing.T) {
	ctx := context.Background()
	o := options(t)
	for name, mod := range map[string]func(*Options){
		"no inferrer": func(o *Options) { o.Inferrer = nil },
		"no profiles": func(o *Options) { o.Profiles = nil },
		"no baseline": func(o *Options) { o.Baseline = nil },
	} {
		oo := o
		mod(&oo)
		if _, err := Analyze(ctx, smallCluster(), oo); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	c := smallCluster()
	c.Nodes = append(c.Nodes, c.Nodes[0])
	if _, err := Analyze(ctx, c, o); err == nil {
		t.Error("a node listed twice: no error")
	}
}

func TestReadSnapshot(t *testing.T) {
	c := smallCluster()
	list := map[string]any{"apiVersion": "v1", "kind": "List", "items": []any{}}
	items := []any{}
	for _, n := range c.Nodes {
		n := n.DeepCopy()
		n.Kind, n.APIVersion = "Node", "v1"
		items = append(items, n)
	}
	for _, p := range c.Pods {
		p := p.DeepCopy()
		p.Kind, p.APIVersion = "Pod", "v1"
		items = append(items, p)
	}
	items = append(items, map[string]any{"apiVersion": "v1", "kind": "Service", "metadata": map[string]any{"name": "ignored"}})
	list["items"] = items
	data, err := yaml.Marshal(list)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ReadSnapshot(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Nodes) != len(c.Nodes) || len(got.Pods) != len(c.Pods) || len(got.GPUNodes) != 0 {
		t.Errorf("read %d nodes %d pods %d GPUNodes", len(got.Nodes), len(got.Pods), len(got.GPUNodes))
	}
	r1, err := Analyze(context.Background(), got, options(t))
	if err != nil {
		t.Fatal(err)
	}
	r2, err := Analyze(context.Background(), c, options(t))
	if err != nil {
		t.Fatal(err)
	}
	for i := range r1.Profiles {
		a, b := r1.Profiles[i], r2.Profiles[i]
		if a.GPUNodesUsed != b.GPUNodesUsed || a.GPUsUsed != b.GPUsUsed || a.PodsUnplaced != b.PodsUnplaced {
			t.Errorf("%s: snapshot %+v, objects %+v", a.Name, a, b)
		}
	}

	for name, bad := range map[string]string{
		"not yaml":  "{{{",
		"not list":  "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n",
		"no nodes":  "apiVersion: v1\nkind: List\nitems: []\n",
		"bad node":  "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Node, metadata: {name: 3}}\n",
		"bad item":  "apiVersion: v1\nkind: List\nitems:\n- 42\n",
		"empty doc": "",
	} {
		if _, err := ReadSnapshot([]byte(bad)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestParsePrices(t *testing.T) {
	p, err := ParsePrices([]byte("p4d.24xlarge: 32.77\ng4dn.xlarge: 0.526\n"))
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := p.Lookup("p4d.24xlarge"); !ok || v != 32.77 {
		t.Errorf("lookup %v %v", v, ok)
	}
	if _, ok := p.Lookup(""); ok {
		t.Error("empty instance type has a price")
	}
	if _, err := ParsePrices([]byte(`{"p5.48xlarge": 98.32}`)); err != nil {
		t.Errorf("JSON: %v", err)
	}
	types := "# comment\ntypes:\n- name: p4d.24xlarge\n  gpus: 8\n  setup: {migConfig: all-balanced}\n  price: {usdPerHour: 21.96, region: us-east-1}\n- name: g5.12xlarge\n  price: {usdPerHour: 5.672}\n"
	p, err = ParsePrices([]byte(types))
	if err != nil {
		t.Fatal(err)
	}
	if len(p) != 2 || p["p4d.24xlarge"] != 21.96 || p["g5.12xlarge"] != 5.672 {
		t.Errorf("instance-type file read as %v", p)
	}
	for name, bad := range map[string]string{
		"type without price": "types:\n- name: a\n",
		"type without name":  "types:\n- price: {usdPerHour: 1}\n",
		"negative type":      "types:\n- name: a\n  price: {usdPerHour: -3}\n",
		"negative":           "a: -1\n",
		"not number":         "a: cheap\n",
		"list":               "- a\n",
		"empty":              "",
		"nested":             "a: {b: 1}\n",
	} {
		if _, err := ParsePrices([]byte(bad)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestThousands(t *testing.T) {
	for in, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 101400: "101,400", 1234567: "1,234,567", -4500: "-4,500"} {
		if got := thousands(in); got != want {
			t.Errorf("thousands(%d) = %q, want %q", in, got, want)
		}
	}
}

// TestAnalyzeNotHeld: a running pod that its node, as inferred, cannot hold
// is reported, not silently dropped from today's figures.
func TestAnalyzeNotHeld(t *testing.T) {
	c := smallCluster()
	c.Pods = append(c.Pods, gpuPod("too-big", "a", "nvidia.com/mig-1g.5gb", 8, 9))
	r, err := Analyze(context.Background(), c, options(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Current.NotHeld) != 1 || r.Current.NotHeld[0].Pod != "ml/too-big" {
		t.Fatalf("not held %+v", r.Current.NotHeld)
	}
	var buf bytes.Buffer
	if err := r.WriteTable(&buf, false); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "1 running GPU pods do not fit their node as modelled") {
		t.Errorf("table does not warn:\n%s", buf.String())
	}
}
