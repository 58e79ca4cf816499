package gpuview

import (
	"fmt"
	"time"

	"math"
	"slices"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/gpuslice/gpuslice/pkg/allocator"
	gpusliceapi "github.com/gpuslice/gpuslice/pkg/apis/gpuslice/v1alpha1"
	"github.com/gpuslice/gpuslice/pkg/assignment"
	"github.com/gpuslice/gpuslice/pkg/topology"
	"github.com/gpuslice/gpuslice/pkg/topology/fixtures"
)

func gpuNode(t *testing.T, spec fixtures.Spec, state gpusliceapi.NodeState) (*gpusliceapi.GPUNode, *topology.Node) {
	t.Helper()
	topo := fixtures.MustBuild(topology.NewCatalog(), spec)
	s := gpusliceapi.SpecFromTopology(topo)
	s.State = state
	return &gpusliceapi.GPUNode{ObjectMeta: metav1.ObjectMeta{Name: spec.Name}, Spec: s}, topo
}

func pod(name, node, res string, n int64) *v1.Pod {
	q := *resource.NewQuantity(n, resource.DecimalSI)
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ml", UID: types.UID("uid-" + name)},
		Spec: v1.PodSpec{NodeName: node, Containers: []v1.Container{{Name: "main", Resources: v1.ResourceRequirements{
			Requests: v1.ResourceList{v1.ResourceName(res): q}, Limits: v1.ResourceList{v1.ResourceName(res): q},
		}}}},
		Status: v1.PodStatus{Phase: v1.PodRunning},
	}
}

// instance returns the device ID of the first instance of a profile on GPU gi.
func instance(topo *topology.Node, gi int, profile string) string {
	for _, in := range topo.GPUs[gi].Instances {
		if in.Profile == profile {
			return in.DeviceID
		}
	}
	panic("no " + profile)
}

func allocation(p *v1.Pod, res string, ids ...string) gpusliceapi.PodAllocation {
	return gpusliceapi.PodAllocation{PodUID: string(p.UID), Namespace: p.Namespace, Name: p.Name, Containers: []gpusliceapi.ContainerAllocation{{
		Name: "main", Devices: []gpusliceapi.ResourceDevices{{Resource: res, DeviceIDs: ids}},
	}}}
}

// TestBuild: a MIG node where the kubelet reported one pod, the scheduler's
// annotation gives another and a third has neither; a time-sliced node with
// an unhealthy GPU and a MIG manager at work; a pending pod.
func TestBuild(t *testing.T) {
	migGN, migTopo := gpuNode(t, fixtures.Spec{Name: "a100", Product: "NVIDIA A100-SXM4-40GB", GPUs: 2, MIG: []string{"1g.5gb", "1g.5gb", "2g.10gb", "3g.20gb"}}, gpusliceapi.StateReady)
	tsGN, tsTopo := gpuNode(t, fixtures.Spec{Name: "t4", Product: "Tesla T4", GPUs: 2, Strategy: topology.MIGStrategyNone, Replicas: 4}, gpusliceapi.StateReady)
	tsGN.Spec.GPUs[1].Healthy, tsGN.Spec.GPUs[1].UnhealthyReason = false, "XID 79"

	reported := pod("reported", "a100", "nvidia.com/mig-3g.20gb", 1)
	migGN.Spec.Allocations = []gpusliceapi.PodAllocation{allocation(reported, "nvidia.com/mig-3g.20gb", instance(migTopo, 0, "3g.20gb"))}
	predicted := pod("predicted", "a100", "nvidia.com/mig-1g.5gb", 1)
	a := assignment.FromPlacement(&allocator.Placement{Node: "a100", Containers: []allocator.ContainerDevices{{Name: "main", Devices: []allocator.ResourceDevices{{Resource: "nvidia.com/mig-1g.5gb", DeviceIDs: []string{instance(migTopo, 0, "1g.5gb")}}}}}})
	v, err := a.Encode()
	if err != nil {
		t.Fatal(err)
	}
	predicted.Annotations = map[string]string{assignment.Annotation: v}
	unknown := pod("unknown", "a100", "nvidia.com/mig-1g.5gb", 1)
	shared := pod("shared", "t4", "nvidia.com/gpu", 2)
	g0 := tsTopo.GPUs[0].UUID
	tsGN.Spec.Allocations = []gpusliceapi.PodAllocation{allocation(shared, "nvidia.com/gpu", topology.ReplicaID(g0, 0), topology.ReplicaID(g0, 1))}
	pending := pod("pending", "", "nvidia.com/gpu", 1)
	done := pod("done", "t4", "nvidia.com/gpu", 1)
	done.Status.Phase = v1.PodSucceeded
	cpu := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "cpu", Namespace: "ml"}, Spec: v1.PodSpec{NodeName: "a100", Containers: []v1.Container{{Name: "c"}}}}
	t4Node := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "t4", Labels: map[string]string{"nvidia.com/mig.config.state": "pending"}}}

	c := Build([]*gpusliceapi.GPUNode{tsGN, migGN}, []*v1.Pod{reported, predicted, unknown, shared, pending, done, cpu}, []*v1.Node{t4Node}, Options{})
	if len(c.Nodes) != 2 || c.Nodes[0].Name != "a100" || c.Nodes[1].Name != "t4" {
		t.Fatalf("nodes %+v", c.Nodes)
	}
	if !slices.Equal(c.PendingGPUPods, []string{"ml/pending"}) {
		t.Errorf("pending %v", c.PendingGPUPods)
	}
	mig, ts := c.Nodes[0], c.Nodes[1]
	if len(mig.Problems) != 0 || len(ts.Problems) != 0 {
		t.Fatalf("problems: %v %v", mig.Problems, ts.Problems)
	}
	if mig.Reconfiguring || !ts.Reconfiguring {
		t.Errorf("reconfiguring: a100 %v, t4 %v", mig.Reconfiguring, ts.Reconfiguring)
	}
	if !slices.Equal(mig.Unattributed, []string{"ml/unknown"}) {
		t.Errorf("unattributed %v", mig.Unattributed)
	}
	line := mig.GPUs[0].Line()
	for _, want := range []string{"[1g.5gb: ml/predicted (predicted)]", "[1g.5gb: free]", "[2g.10gb: free]", "[3g.20gb: ml/reported]"} {
		if !strings.Contains(line, want) {
			t.Errorf("GPU 0 line %q lacks %q", line, want)
		}
	}
	if !mig.GPUs[1].Empty() || mig.GPUs[0].Empty() {
		t.Errorf("a100 GPU emptiness wrong: %+v", mig.GPUs)
	}
	// 1g (1 of 7 compute slices) + 3g (3 of 7).
	if got := mig.GPUs[0].Used; math.Abs(got-4.0/7) > 1e-9 {
		t.Errorf("a100 GPU 0 used %v, want 4/7", got)
	}
	if s := ts.GPUs[0].Slots[0]; s.Used != 2 || s.Replicas != 4 || !slices.Equal(s.Pods, []string{"ml/shared"}) || !strings.Contains(ts.GPUs[0].Line(), "[GPU x4: 2/4 ml/shared]") {
		t.Errorf("time-sliced slot %+v, line %q", s, ts.GPUs[0].Line())
	}
	if !strings.Contains(ts.GPUs[1].Line(), "UNHEALTHY (XID 79)") {
		t.Errorf("unhealthy GPU line %q", ts.GPUs[1].Line())
	}

	tot := c.Totals()
	// Healthy capacity: a100's 2 GPUs (7 of 7 compute slices each in this
	// layout: 1+1+2+3) and t4's healthy GPU.
	if tot.GPUNodes != 2 || tot.GPUs != 4 || tot.UnhealthyGPUs != 1 || tot.PendingGPUPods != 1 || tot.NotReadyNodes != 0 {
		t.Errorf("totals %+v", tot)
	}
	if math.Abs(tot.Capacity-3) > 1e-9 || math.Abs(tot.Used-(4.0/7+0.5)) > 1e-9 || math.Abs(tot.Free-(tot.Capacity-tot.Used)) > 1e-9 {
		t.Errorf("capacity %v used %v free %v", tot.Capacity, tot.Used, tot.Free)
	}
	if math.Abs(tot.Stranded-(3.0/7+0.5)) > 1e-9 || tot.EmptyGPUs != 1 || tot.EmptyNodes != 0 {
		t.Errorf("stranded %v empty GPUs %d nodes %d", tot.Stranded, tot.EmptyGPUs, tot.EmptyNodes)
	}
}

// TestBuildReportsBadData: a device reported twice and an invalid topology
// are problems on the node, not panics.
func TestBuildReportsBadData(t *testing.T) {
	gn, topo := gpuNode(t, fixtures.Spec{Name: "n", Product: "NVIDIA A100-SXM4-40GB", GPUs: 1, MIG: []string{"3g.20gb", "3g.20gb"}}, gpusliceapi.StateReady)
	p1, p2 := pod("p1", "n", "nvidia.com/mig-3g.20gb", 1), pod("p2", "n", "nvidia.com/mig-3g.20gb", 1)
	id := topo.GPUs[0].Instances[0].DeviceID
	gn.Spec.Allocations = []gpusliceapi.PodAllocation{allocation(p1, "nvidia.com/mig-3g.20gb", id), allocation(p2, "nvidia.com/mig-3g.20gb", id), allocation(pod("p3", "n", "x", 1), "nvidia.com/mig-3g.20gb", "MIG-nope")}
	bad, _ := gpuNode(t, fixtures.Spec{Name: "bad", Product: "NVIDIA A100-SXM4-40GB", GPUs: 1}, gpusliceapi.StateDegraded)
	bad.Spec.GPUs[0].UUID = ""
	c := Build([]*gpusliceapi.GPUNode{gn, bad}, []*v1.Pod{p1, p2}, nil, Options{})
	if len(c.Nodes[1].Problems) != 2 {
		t.Errorf("problems %v, want the double booking and the unknown device", c.Nodes[1].Problems)
	}
	if len(c.Nodes[0].Problems) != 1 || len(c.Nodes[0].GPUs) != 0 {
		t.Errorf("invalid topology: %+v", c.Nodes[0])
	}
	if tot := c.Totals(); tot.NotReadyNodes != 1 {
		t.Errorf("totals %+v", tot)
	}
}

func TestBuildMIGDemandAndRepartition(t *testing.T) {
	gn, _ := gpuNode(t, fixtures.Spec{Name: "a100", Product: "NVIDIA A100-SXM4-40GB", GPUs: 1, MIG: []string{"3g.20gb", "3g.20gb"}}, gpusliceapi.StateReady)
	node := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "a100", Labels: map[string]string{
		topology.MIGConfigLabel: "gpuslice-a100-1-1", topology.MIGConfigStateLabel: "pending"}}}
	since := time.Unix(1_800_000_000, 0).UTC()
	var pods []*v1.Pod
	for i, s := range []time.Time{since, since.Add(time.Minute), since.Add(2 * time.Minute)} {
		p := pod(fmt.Sprint("want", i), "", "nvidia.com/mig-7g.40gb", 1)
		v, err := (&assignment.Demand{Profiles: map[string]int{"7g.40gb": 1}, Since: s}).Encode()
		if err != nil {
			t.Fatal(err)
		}
		p.Annotations = map[string]string{assignment.DemandAnnotation: v}
		pods = append(pods, p)
	}
	pods = append(pods, pod("other", "", "nvidia.com/mig-7g.40gb", 1)) // pending, not recorded
	c := Build([]*gpusliceapi.GPUNode{gn}, pods, []*v1.Node{node}, Options{})
	if len(c.MIGDemand) != 1 || c.MIGDemand[0].Pods != 3 || c.MIGDemand[0].Instances != 3 || !c.MIGDemand[0].Oldest.Equal(since) {
		t.Fatalf("MIG demand %+v", c.MIGDemand)
	}
	if got, want := c.MIGDemand[0].Line(since.Add(150*time.Second)), "MIG demand: 3 pods want 7g.40gb (3 instances, oldest 2m30s)"; got != want {
		t.Fatalf("line %q, want %q", got, want)
	}
	n := c.Nodes[0]
	if !n.Reconfiguring || n.MIGConfig != "gpuslice-a100-1-1" || n.MIGConfigState != "pending" {
		t.Fatalf("node %+v", n)
	}
}

func TestBuildDrainingGPU(t *testing.T) {
	gn, _ := gpuNode(t, fixtures.Spec{Name: "a100", Product: "NVIDIA A100-SXM4-40GB", GPUs: 2, MIG: []string{"3g.20gb", "3g.20gb"}}, gpusliceapi.StateReady)
	node := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "a100", Annotations: map[string]string{assignment.DrainAnnotation: "1"}}}
	c := Build([]*gpusliceapi.GPUNode{gn}, nil, []*v1.Node{node}, Options{})
	gs := c.Nodes[0].GPUs
	if len(gs) != 2 || gs[0].Draining || !gs[1].Draining {
		t.Fatalf("draining: %+v", gs)
	}
	if line := gs[1].StyledLine(nil); !strings.HasSuffix(line, "draining: no new pod until its MIG layout changes") {
		t.Errorf("line %q", line)
	}
	node.Annotations[assignment.DrainAnnotation] = "x"
	if c := Build([]*gpusliceapi.GPUNode{gn}, nil, []*v1.Node{node}, Options{}); c.Nodes[0].GPUs[1].Draining {
		t.Error("a malformed annotation drains nothing, yet GPU 1 shows draining")
	}
}
