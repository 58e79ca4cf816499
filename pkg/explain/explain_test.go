package explain

import (
	"slices"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/gpuslice/gpuslice/pkg/allocator"
	"github.com/gpuslice/gpuslice/pkg/apis/config"
	gpusliceapi "github.com/gpuslice/gpuslice/pkg/apis/gpuslice/v1alpha1"
	"github.com/gpuslice/gpuslice/pkg/assignment"
	"github.com/gpuslice/gpuslice/pkg/topology"
	"github.com/gpuslice/gpuslice/pkg/topology/fixtures"
	"github.com/gpuslice/gpuslice/pkg/topology/migparted"
)

const (
	a100    = "NVIDIA A100-SXM4-40GB"
	mig3g   = "nvidia.com/mig-3g.20gb"
	mig1g   = "nvidia.com/mig-1g.5gb"
	leaseNS = "gpuslice-system"
)

var (
	now    = time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	layout = []string{"1g.5gb", "1g.5gb", "2g.10gb", "3g.20gb"}
)

func args() *config.GPUSliceArgs {
	return &config.GPUSliceArgs{HeartbeatTimeout: metav1.Duration{Duration: 40 * time.Second}, LeaseNamespace: leaseNS}
}

func gpuNode(name string, gpus int, state gpusliceapi.NodeState) (*gpusliceapi.GPUNode, *topology.Node) {
	topo := fixtures.MustBuild(topology.NewCatalog(), fixtures.Spec{Name: name, Product: a100, GPUs: gpus, MIG: layout})
	s := gpusliceapi.SpecFromTopology(topo)
	s.State = state
	if state != gpusliceapi.StateReady {
		s.Message = "XID 79 on GPU 0"
	}
	return &gpusliceapi.GPUNode{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: s}, topo
}

func lease(name string, age time.Duration) *coordinationv1.Lease {
	t := metav1.NewMicroTime(now.Add(-age))
	return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: leaseNS}, Spec: coordinationv1.LeaseSpec{RenewTime: &t}}
}

func node(name string, gpuResources bool) *v1.Node {
	n := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/hostname": name}}}
	if gpuResources {
		n.Status.Allocatable = v1.ResourceList{mig3g: resource.MustParse("2")}
	}
	return n
}

func pod(name, nodeName, res string) *v1.Pod {
	q := resource.MustParse("1")
	p := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ml", UID: types.UID("uid-" + name)},
		Spec:       v1.PodSpec{SchedulerName: "gpuslice-binpack", NodeName: nodeName, Containers: []v1.Container{{Name: "main"}}},
	}
	if res != "" {
		p.Spec.Containers[0].Resources = v1.ResourceRequirements{Requests: v1.ResourceList{v1.ResourceName(res): q}, Limits: v1.ResourceList{v1.ResourceName(res): q}}
	}
	if nodeName != "" {
		p.Status.Phase = v1.PodRunning
	}
	return p
}

// instances are the device IDs of a profile's instances on GPU gi.
func instances(topo *topology.Node, gi int, profile string) []string {
	var out []string
	for _, in := range topo.GPUs[gi].Instances {
		if in.Profile == profile {
			out = append(out, in.DeviceID)
		}
	}
	return out
}

func allocation(p *v1.Pod, res string, ids ...string) gpusliceapi.PodAllocation {
	return gpusliceapi.PodAllocation{PodUID: string(p.UID), Namespace: p.Namespace, Name: p.Name, Containers: []gpusliceapi.ContainerAllocation{{
		Name: "main", Devices: []gpusliceapi.ResourceDevices{{Resource: res, DeviceIDs: ids}},
	}}}
}

func annotate(t *testing.T, p *v1.Pod, src assignment.Source, nodeName, res string, ids ...string) {
	t.Helper()
	pl := &allocator.Placement{Node: nodeName, Containers: []allocator.ContainerDevices{{Name: "main", Devices: []allocator.ResourceDevices{{Resource: res, DeviceIDs: ids}}}}}
	a := assignment.FromPlacement(pl)
	if src == assignment.Kubelet {
		a = assignment.Observed(pl)
	}
	v, err := a.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if p.Annotations == nil {
		p.Annotations = map[string]string{}
	}
	p.Annotations[assignment.Annotation] = v
}

func verdict(t *testing.T, r *Report, name string) NodeVerdict {
	t.Helper()
	for _, v := range r.Nodes {
		if v.Node == name {
			return v
		}
	}
	t.Fatalf("no verdict for node %s in %+v", name, r.Nodes)
	return NodeVerdict{}
}

// TestPending: one node full of 3g slices (one held per the kubelet, one
// only per the scheduler's annotation), one stale, one degraded, one with
// no GPUNode, one cordoned; then what would fit.
func TestPending(t *testing.T) {
	full, fullTopo := gpuNode("full", 1, gpusliceapi.StateReady)
	stale, _ := gpuNode("stale", 1, gpusliceapi.StateReady)
	degraded, _ := gpuNode("degraded", 1, gpusliceapi.StateDegraded)
	free, _ := gpuNode("cordoned", 1, gpusliceapi.StateReady)
	reported := pod("reported", "full", mig3g)
	full.Spec.Allocations = []gpusliceapi.PodAllocation{allocation(reported, mig3g, instances(fullTopo, 0, "3g.20gb")...)}
	cordoned := node("cordoned", true)
	cordoned.Spec.Unschedulable = true
	in := Input{
		GPUNodes: []*gpusliceapi.GPUNode{full, stale, degraded, free},
		Leases:   []*coordinationv1.Lease{lease("full", time.Second), lease("stale", 5*time.Minute), lease("degraded", time.Second), lease("cordoned", time.Second)},
		Nodes:    []*v1.Node{node("full", true), node("stale", true), node("degraded", true), cordoned, node("nogpunode", true), node("cpu", false)},
		Args:     args(),
		Now:      now,
	}
	pending := pod("pending", "", mig3g)
	pending.Status.Conditions = []v1.PodCondition{{Type: v1.PodScheduled, Status: v1.ConditionFalse, Reason: "Unschedulable", Message: "0/6 nodes are available"}}
	in.Pod, in.Pods = pending, []*v1.Pod{reported, pending, pod("cpu-only", "full", "")}

	r, err := Explain(in)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != StatusPending || r.Unschedulable != "0/6 nodes are available" {
		t.Fatalf("status %q, unschedulable %q", r.Status, r.Unschedulable)
	}
	var names []string
	for _, v := range r.Nodes {
		names = append(names, v.Node)
	}
	if want := []string{"cordoned", "degraded", "full", "nogpunode", "stale"}; !slices.Equal(names, want) {
		t.Fatalf("nodes %v, want %v (cpu has no GPU resource)", names, want)
	}
	for _, c := range []struct{ node, want string }{
		{"full", "gpuslice: no free nvidia.com/mig-3g.20gb: 1 of 1 in use"},
		{"stale", "gpuslice: GPU topology of node stale is stale: last exporter heartbeat 5m0s ago (limit 40s)"},
		{"degraded", "gpuslice: GPU topology of node degraded is degraded: XID 79 on GPU 0"},
		{"nogpunode", "gpuslice: no GPU topology published for node nogpunode"},
		{"cordoned", ""},
	} {
		if got := verdict(t, r, c.node).GPUs; !strings.HasPrefix(got, c.want) || (c.want == "" && got != "") {
			t.Errorf("node %s: %q, want %q", c.node, got, c.want)
		}
	}
	if v := verdict(t, r, "cordoned"); !slices.Equal(v.Other, []string{"node is cordoned (unschedulable)"}) || v.Fits() {
		t.Errorf("cordoned: %+v", v)
	}
	if len(r.FitsNow) != 0 {
		t.Errorf("fits now on %v", r.FitsNow)
	}
	want := []string{
		"fits on full once one of these pods leaves: ml/reported",
		"fits on stale once it takes GPU pods again (GPU topology of node stale is stale: last exporter heartbeat 5m0s ago (limit 40s))",
		"fits on degraded once it takes GPU pods again (GPU topology of node degraded is degraded: XID 79 on GPU 0)",
	}
	slices.Sort(want)
	got := slices.Sorted(slices.Values(r.WouldFit))
	if !slices.Equal(got, want) {
		t.Errorf("would fit:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// Uncordoned, the free node fits now; and a pod only the scheduler's
	// annotation places holds its slice.
	in.Nodes[3] = node("cordoned", true)
	predicted := pod("predicted", "cordoned", mig3g)
	annotate(t, predicted, assignment.Predicted, "cordoned", mig3g, instances(fullTopo, 0, "3g.20gb")...)
	r, err = Explain(in)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r.FitsNow, []string{"cordoned"}) || len(r.WouldFit) != 0 {
		t.Errorf("fits now %v, would fit %v", r.FitsNow, r.WouldFit)
	}
	in.Pods = append(in.Pods, predicted)
	r, err = Explain(in)
	if err != nil {
		t.Fatal(err)
	}
	if got := verdict(t, r, "cordoned").GPUs; !strings.HasPrefix(got, "gpuslice: no free "+mig3g) {
		t.Errorf("the predicted pod's slice: %q", got)
	}
}

// TestNotOffered: a profile no node has names the mig-parted layouts that
// offer it on the cluster's product.
func TestNotOffered(t *testing.T) {
	gn, _ := gpuNode("a", 1, gpusliceapi.StateReady)
	parted, err := migparted.Default()
	if err != nil {
		t.Fatal(err)
	}
	p := pod("big", "", "nvidia.com/mig-7g.40gb")
	r, err := Explain(Input{Pod: p, Pods: []*v1.Pod{p}, GPUNodes: []*gpusliceapi.GPUNode{gn}, Leases: []*coordinationv1.Lease{lease("a", 0)},
		Nodes: []*v1.Node{node("a", true)}, Args: args(), Now: now, MIGParted: parted})
	if err != nil {
		t.Fatal(err)
	}
	if got := verdict(t, r, "a"); got.GPUs != "gpuslice: node offers no nvidia.com/mig-7g.40gb" || !got.Unresolvable {
		t.Errorf("verdict %+v", got)
	}
	if len(r.WouldFit) != 1 || !strings.HasPrefix(r.WouldFit[0], "no node offers nvidia.com/mig-7g.40gb; mig-parted layouts that do") ||
		!strings.Contains(r.WouldFit[0], "all-7g.40gb ("+a100+")") || strings.Contains(r.WouldFit[0], "all-1g.5gb") {
		t.Errorf("would fit %q", r.WouldFit)
	}
}

func TestNotOurs(t *testing.T) {
	cpu := pod("cpu", "", "")
	r, err := Explain(Input{Pod: cpu, Args: args(), Now: now})
	if err != nil || r.Status != StatusNoGPU {
		t.Fatalf("cpu pod: %+v, %v", r, err)
	}
	other := pod("other", "", mig3g)
	other.Spec.SchedulerName = ""
	r, err = Explain(Input{Pod: other, Now: now})
	if err != nil || r.Status != StatusNotGPUSlice || r.SchedulerName != v1.DefaultSchedulerName {
		t.Fatalf("default-scheduler pod: %+v, %v", r, err)
	}
	bad := pod("bad", "", "nvidia.com/mig-9g.1tb")
	r, err = Explain(Input{Pod: bad, Args: args(), Now: now})
	if err != nil || r.Status != StatusInvalid || !strings.Contains(r.Summary, "9g.1tb") {
		t.Fatalf("invalid request: %+v, %v", r, err)
	}
	if _, err := Explain(Input{Now: now}); err == nil {
		t.Fatal("no pod explained without error")
	}
}

// TestBound compares the annotation with the kubelet's read-back.
func TestBound(t *testing.T) {
	gn, topo := gpuNode("n", 2, gpusliceapi.StateReady)
	g0 := instances(topo, 0, "1g.5gb")
	g1 := instances(topo, 1, "1g.5gb")
	g0two := instances(topo, 0, "2g.10gb")
	cases := []struct {
		name      string
		src       assignment.Source
		annotated []string
		res       string
		kubelet   []string // nil: not reported
		match     string
		note      string
	}{
		{name: "equal", src: assignment.Predicted, annotated: g0[:1], res: mig1g, kubelet: g0[:1], match: MatchEqual},
		{name: "twin same GPU", src: assignment.Predicted, annotated: g0[:1], res: mig1g, kubelet: g0[1:2], match: MatchTwin},
		{name: "twin other GPU", src: assignment.Predicted, annotated: g0[:1], res: mig1g, kubelet: g1[:1], match: MatchTwin},
		{name: "different", src: assignment.Predicted, annotated: g0[:1], res: mig1g, kubelet: g0two, match: MatchDifferent},
		{name: "not reported", src: assignment.Predicted, annotated: g0[:1], res: mig1g, match: MatchUnknown, note: "not reported yet"},
		{name: "rewritten", src: assignment.Kubelet, annotated: g1[:1], res: mig1g, kubelet: g1[:1], match: MatchUnknown, note: "prediction itself is not kept"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := gn.DeepCopy()
			p := pod("p", "n", c.res)
			annotate(t, p, c.src, "n", c.res, c.annotated...)
			if c.kubelet != nil {
				res := c.res
				if c.match == MatchDifferent {
					res = "nvidia.com/mig-2g.10gb"
				}
				g.Spec.Allocations = []gpusliceapi.PodAllocation{allocation(p, res, c.kubelet...)}
			}
			r, err := Explain(Input{Pod: p, Pods: []*v1.Pod{p}, GPUNodes: []*gpusliceapi.GPUNode{g}, Args: args(), Now: now})
			if err != nil {
				t.Fatal(err)
			}
			if r.Status != StatusBound || r.Bound == nil {
				t.Fatalf("report %+v", r)
			}
			b := r.Bound
			if b.Match != c.match || !strings.Contains(b.Note, c.note) {
				t.Errorf("match %q note %q, want %q, %q", b.Match, b.Note, c.match, c.note)
			}
			if b.AssignmentSource != string(c.src) || len(b.Assignment) != 1 || !slices.Equal(b.Assignment[0].DeviceIDs, c.annotated) {
				t.Errorf("assignment %s %+v", b.AssignmentSource, b.Assignment)
			}
			if (c.kubelet == nil) != (len(b.Kubelet) == 0) || (c.kubelet != nil && !slices.Equal(b.Kubelet[0].DeviceIDs, c.kubelet)) {
				t.Errorf("kubelet %+v, want %v", b.Kubelet, c.kubelet)
			}
		})
	}
}
