package whatif

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/gpuslice/gpuslice/pkg/allocator"
	gpusliceapi "github.com/gpuslice/gpuslice/pkg/apis/gpuslice/v1alpha1"
	"github.com/gpuslice/gpuslice/pkg/assignment"
	"github.com/gpuslice/gpuslice/pkg/explain"
	"github.com/gpuslice/gpuslice/pkg/generated/clientset/versioned"
	"github.com/gpuslice/gpuslice/pkg/localcluster/controlplane"
	"github.com/gpuslice/gpuslice/pkg/topology"
	"github.com/gpuslice/gpuslice/pkg/topology/fixtures"
	"github.com/gpuslice/gpuslice/test/framework"
)

const (
	profile3g = "nvidia.com/mig-3g.20gb"
	profile1g = "nvidia.com/mig-1g.5gb"
	profile2g = "nvidia.com/mig-2g.10gb"
)

// TestExplain writes GPU nodes, their GPUNodes and Leases and pods to a real
// kube-apiserver and checks `kubectl gpuslice explain`: a pending pod's
// reason per node (full per the kubelet's read-back, full per a predicted
// assignment, stale heartbeat, Degraded, no GPUNode) and what would fit it;
// bound pods whose kubelet pick equals the prediction, is an equal twin or
// differs; a CPU pod, a pod of another scheduler and a missing pod.
func TestExplain(t *testing.T) {
	cp := framework.StartControlPlane(t, controlplane.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	kube := cp.Client()
	installCRDs(ctx, t, cp)
	gpu := versioned.NewForConfigOrDie(cp.Config())
	cat := topology.NewCatalog()
	for _, ns := range []string{"ml", "gpuslice-system"} {
		if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	layout := []string{"1g.5gb", "1g.5gb", "2g.10gb", "3g.20gb"}
	topos := map[string]*topology.Node{}
	gns := map[string]*gpusliceapi.GPUNode{}
	for _, n := range []struct {
		name      string
		state     gpusliceapi.NodeState
		leaseAge  time.Duration
		noGPUNode bool
	}{
		{name: "a100-kubelet", state: gpusliceapi.StateReady},
		{name: "a100-predicted", state: gpusliceapi.StateReady},
		{name: "a100-stale", state: gpusliceapi.StateReady, leaseAge: 10 * time.Minute},
		{name: "a100-degraded", state: gpusliceapi.StateDegraded},
		{name: "a100-bare", noGPUNode: true},
	} {
		spec := fixtures.Spec{Name: n.name, Product: a100, GPUs: 1, MIG: layout}
		topo, obj, res := nodeObject(t, cat, clusterNode{spec: spec})
		if _, err := controlplane.CreateReadyNode(ctx, kube, obj, res); err != nil {
			t.Fatal(err)
		}
		topos[n.name] = topo
		if n.noGPUNode {
			continue
		}
		s := gpusliceapi.SpecFromTopology(topo)
		s.State = n.state
		if n.state == gpusliceapi.StateDegraded {
			s.Message = "GPU 0 lost (XID 79)"
		}
		gns[n.name] = &gpusliceapi.GPUNode{ObjectMeta: metav1.ObjectMeta{Name: n.name}, Spec: s}
		renew := metav1.NewMicroTime(time.Now().Add(-n.leaseAge))
		if _, err := kube.CoordinationV1().Leases("gpuslice-system").Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: n.name}, Spec: coordinationv1.LeaseSpec{RenewTime: &renew},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	mig := func(node, profile string, i int) string {
		var ids []string
		for _, in := range topos[node].GPUs[0].Instances {
			if in.Profile == profile {
				ids = append(ids, in.DeviceID)
			}
		}
		return ids[i]
	}

	// a100-kubelet's 3g slice is held per the kubelet's read-back;
	// a100-predicted's only per a bound pod's predicted assignment.
	held := gpuPod(ctx, t, kube, "held", profile3g, "a100-kubelet")
	gns["a100-kubelet"].Spec.Allocations = append(gns["a100-kubelet"].Spec.Allocations, podAllocation(held, profile3g, mig("a100-kubelet", "3g.20gb", 0)))
	predicted := gpuPod(ctx, t, kube, "predicted", profile3g, "a100-predicted")
	annotateAssignment(ctx, t, kube, predicted, "a100-predicted", profile3g, mig("a100-predicted", "3g.20gb", 0))

	// Bound pods whose prediction the kubelet met, met with a twin, or not.
	same := gpuPod(ctx, t, kube, "same", profile1g, "a100-kubelet")
	annotateAssignment(ctx, t, kube, same, "a100-kubelet", profile1g, mig("a100-kubelet", "1g.5gb", 0))
	twin := gpuPod(ctx, t, kube, "twin", profile1g, "a100-kubelet")
	annotateAssignment(ctx, t, kube, twin, "a100-kubelet", profile1g, mig("a100-kubelet", "1g.5gb", 0))
	gns["a100-kubelet"].Spec.Allocations = append(gns["a100-kubelet"].Spec.Allocations,
		podAllocation(same, profile1g, mig("a100-kubelet", "1g.5gb", 0)),
		podAllocation(twin, profile1g, mig("a100-kubelet", "1g.5gb", 1)))
	// An unrealistic kubelet (another resource than predicted) stands for
	// any pick gpuslice did not predict.
	differ := gpuPod(ctx, t, kube, "differ", profile2g, "a100-predicted")
	annotateAssignment(ctx, t, kube, differ, "a100-predicted", profile2g, mig("a100-predicted", "2g.10gb", 0))
	gns["a100-predicted"].Spec.Allocations = append(gns["a100-predicted"].Spec.Allocations, podAllocation(differ, profile1g, mig("a100-predicted", "1g.5gb", 1)))
	for _, gn := range gns {
		if _, err := gpu.GpusliceV1alpha1().GPUNodes().Create(ctx, gn, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	pending := gpuPod(ctx, t, kube, "want-3g", profile3g, "")
	pending.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable,
		Message: "0/5 nodes are available: 5 gpuslice: no free nvidia.com/mig-3g.20gb."}}
	if _, err := kube.CoreV1().Pods("ml").UpdateStatus(ctx, pending, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	r := runExplain(t, cp, "want-3g")
	if r.Status != explain.StatusPending || !strings.HasPrefix(r.Unschedulable, "0/5 nodes are available") {
		t.Fatalf("status %q, unschedulable %q", r.Status, r.Unschedulable)
	}
	want := map[string]string{
		"a100-kubelet":   "gpuslice: no free nvidia.com/mig-3g.20gb: 1 of 1 in use",
		"a100-predicted": "gpuslice: no free nvidia.com/mig-3g.20gb: 1 of 1 in use",
		"a100-stale":     "gpuslice: GPU topology of node a100-stale is stale: last exporter heartbeat 10m", // and some seconds
		"a100-degraded":  "gpuslice: GPU topology of node a100-degraded is degraded: GPU 0 lost (XID 79)",
		"a100-bare":      "gpuslice: no GPU topology published for node a100-bare (is the gpuslice exporter running there?)",
	}
	if len(r.Nodes) != len(want) {
		t.Errorf("%d node verdicts, want %d: %+v", len(r.Nodes), len(want), r.Nodes)
	}
	for _, v := range r.Nodes {
		w, ok := want[v.Node]
		got := v.GPUs
		if v.Node == "a100-stale" && strings.HasSuffix(got, " ago (limit 40s)") {
			got = got[:len(w)]
		}
		if !ok || got != w || len(v.Other) != 0 {
			t.Errorf("node %s: %q %v, want %q", v.Node, v.GPUs, v.Other, w)
		}
	}
	for _, w := range []string{
		"fits on a100-kubelet once one of these pods leaves: ml/held",
		"fits on a100-predicted once one of these pods leaves: ml/predicted",
	} {
		if !slices.Contains(r.WouldFit, w) {
			t.Errorf("would fit %q lacks %q", r.WouldFit, w)
		}
	}
	if len(r.FitsNow) != 0 {
		t.Errorf("fits now on %v", r.FitsNow)
	}
	text := string(runCLI(t, cp, "explain", "-n", "ml", "want-3g"))
	t.Logf("explain ml/want-3g:\n%s", text)
	if !strings.Contains(text, "a100-stale") || !strings.Contains(text, "What would fit it:") {
		t.Errorf("text output:\n%s", text)
	}

	for _, c := range []struct{ pod, match string }{{"same", explain.MatchEqual}, {"twin", explain.MatchTwin}, {"differ", explain.MatchDifferent}} {
		r := runExplain(t, cp, c.pod)
		if r.Status != explain.StatusBound || r.Bound == nil || r.Bound.Match != c.match || r.Bound.AssignmentSource != string(assignment.Predicted) || len(r.Bound.Kubelet) != 1 {
			t.Errorf("%s: %+v %+v, want match %s", c.pod, r, r.Bound, c.match)
		}
	}
	text = string(runCLI(t, cp, "explain", "-n", "ml", "twin"))
	t.Logf("explain ml/twin:\n%s", text)
	if !strings.Contains(text, "Match:      equal twin") {
		t.Errorf("text output:\n%s", text)
	}

	// A CPU pod and a pod of the default scheduler: said so, no error.
	gpuPod(ctx, t, kube, "cpu", "", "")
	if r := runExplain(t, cp, "cpu"); r.Status != explain.StatusNoGPU {
		t.Errorf("cpu pod: %+v", r)
	}
	if _, err := kube.CoreV1().Pods("ml").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "default-sched", Namespace: "ml"}, Spec: podSpec(profile1g, "")}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if r := runExplain(t, cp, "default-sched"); r.Status != explain.StatusNotGPUSlice {
		t.Errorf("default-scheduler pod: %+v", r)
	}
	if _, err := tryCLI(cp, "explain", "-n", "ml", "nobody"); err == nil || !strings.Contains(err.Error(), "pod ml/nobody not found") {
		t.Errorf("missing pod: %v", err)
	}
}

func runExplain(t *testing.T, cp *controlplane.ControlPlane, pod string) explain.Report {
	t.Helper()
	var r explain.Report
	out := runCLI(t, cp, "explain", "-n", "ml", pod, "-o", "json")
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("explain %s -o json: %v\n%s", pod, err, out)
	}
	return r
}

func podSpec(res, node string) corev1.PodSpec {
	c := corev1.Container{Name: "main", Image: "registry.k8s.io/pause:3.10"}
	if res != "" {
		q := resource.MustParse("1")
		c.Resources = corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceName(res): q}, Limits: corev1.ResourceList{corev1.ResourceName(res): q}}
	}
	return corev1.PodSpec{NodeName: node, Containers: []corev1.Container{c}}
}

// gpuPod creates a pod of the gpuslice-binpack profile, bound to node
// (Running) or pending.
func gpuPod(ctx context.Context, t *testing.T, kube kubernetes.Interface, name, res, node string) *corev1.Pod {
	t.Helper()
	spec := podSpec(res, node)
	spec.SchedulerName = "gpuslice-binpack"
	p, err := kube.CoreV1().Pods("ml").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ml"}, Spec: spec}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Status.Phase = corev1.PodPending
	if node != "" {
		p.Status.Phase = corev1.PodRunning
	}
	if p, err = kube.CoreV1().Pods("ml").UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	return p
}

func annotateAssignment(ctx context.Context, t *testing.T, kube kubernetes.Interface, p *corev1.Pod, node, res string, ids ...string) {
	t.Helper()
	a := assignment.FromPlacement(&allocator.Placement{Node: node, Containers: []allocator.ContainerDevices{{Name: "main", Devices: []allocator.ResourceDevices{{Resource: res, DeviceIDs: ids}}}}})
	patch, err := a.PatchFor(p.UID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kube.CoreV1().Pods(p.Namespace).Patch(ctx, p.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

func podAllocation(p *corev1.Pod, res string, ids ...string) gpusliceapi.PodAllocation {
	return gpusliceapi.PodAllocation{PodUID: string(p.UID), Namespace: p.Namespace, Name: p.Name, Containers: []gpusliceapi.ContainerAllocation{{
		Name: "main", Devices: []gpusliceapi.ResourceDevices{{Resource: res, DeviceIDs: ids}},
	}}}
}
