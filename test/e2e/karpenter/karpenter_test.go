// Package karpenter runs gpuslice with the real Karpenter (its KWOK cloud
// provider) and kube-controller-manager on a real control plane: nodes come
// from Karpenter, become simulated GPU nodes (fake NVML and kubelet, real
// exporter code), and go when Karpenter consolidates or deletes them.
package karpenter

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/gpuslice/gpuslice/pkg/allocator"
	gpusliceapi "github.com/gpuslice/gpuslice/pkg/apis/gpuslice/v1alpha1"
	"github.com/gpuslice/gpuslice/pkg/assignment"
	"github.com/gpuslice/gpuslice/pkg/autoscale/instancetypes"
	versioned "github.com/gpuslice/gpuslice/pkg/generated/clientset/versioned"
	"github.com/gpuslice/gpuslice/pkg/localcluster"
	"github.com/gpuslice/gpuslice/pkg/localcluster/controlplane"
	"github.com/gpuslice/gpuslice/pkg/nodetaint"
	"github.com/gpuslice/gpuslice/pkg/podrequest"
	"github.com/gpuslice/gpuslice/test/e2e"
	"github.com/gpuslice/gpuslice/test/framework/gpucluster"
)

const (
	ns               = "autoscale"
	heartbeatTimeout = 5 * time.Second
	scheduler        = "gpuslice-binpack"
	// staleDeadline is the bound: a pod whose only candidate node
	// is stale gets a new node within it.
	staleDeadline = 60 * time.Second
)

// skipOrFail skips when the autoscaler binaries are not built (fails in CI).
func skipOrFail(t *testing.T, err error) {
	t.Helper()
	if errors.Is(err, localcluster.ErrAutoscalerMissing) && os.Getenv("CI") != "true" {
		t.Skip(err.Error())
	}
	t.Fatal(err)
}

func podSpec(res corev1.ResourceName, n int64) corev1.PodSpec {
	limits := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("256Mi"), res: *resource.NewQuantity(n, resource.DecimalSI)}
	return corev1.PodSpec{
		SchedulerName:                 scheduler,
		TerminationGracePeriodSeconds: ptr.To[int64](5),
		Containers:                    []corev1.Container{{Name: "main", Image: "registry.k8s.io/pause:3.10", Resources: corev1.ResourceRequirements{Limits: limits, Requests: limits}}},
	}
}

func deployment(name string, replicas int32, res corev1.ResourceName) *appsv1.Deployment {
	l := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: l},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: l}, Spec: podSpec(res, 1)},
		},
	}
}

type env struct {
	t     *testing.T
	ctx   context.Context
	kube  kubernetes.Interface
	gpu   versioned.Interface
	agent *localcluster.NodeAgent
	karp  *localcluster.Karpenter
}

// pods lists the namespace's pods.
func (e *env) pods() []corev1.Pod {
	e.t.Helper()
	l, err := e.kube.CoreV1().Pods(ns).List(e.ctx, metav1.ListOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return l.Items
}

// waitFor polls cond every 250 ms until it holds or timeout; on timeout it
// fails with what the last call said.
func (e *env) waitFor(what string, timeout time.Duration, cond func() (bool, string)) time.Duration {
	e.t.Helper()
	start := time.Now()
	last := ""
	err := wait.PollUntilContextTimeout(e.ctx, 250*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		ok, msg := cond()
		last = msg
		return ok, nil
	})
	if err != nil {
		e.t.Fatalf("%s: not within %s: %s\n%s\nkarpenter:\n%s", what, timeout, last, e.describe(), e.karp.Process.Tail(25))
	}
	d := time.Since(start)
	e.t.Logf("%s: %s", what, d.Round(100*time.Millisecond))
	return d
}

// running reports whether every pod of the app label is bound and Running,
// and there are want of them.
func (e *env) running(app string, want int) (bool, string) {
	n, bound := 0, 0
	for _, p := range e.pods() {
		if p.Labels["app"] != app || p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded {
			continue
		}
		n++
		if p.Spec.NodeName != "" && p.Status.Phase == corev1.PodRunning {
			bound++
		}
	}
	return n == want && bound == want, fmt.Sprintf("%s: %d pods, %d bound and running, want %d", app, n, bound, want)
}

// describe lists the nodes with their taints and the pending pods with why
// the scheduler left them pending, for failure messages.
func (e *env) describe() string {
	var b strings.Builder
	if nodes, err := e.kube.CoreV1().Nodes().List(e.ctx, metav1.ListOptions{}); err == nil {
		for _, n := range nodes.Items {
			_, sim := e.agent.Node(n.Name)
			fmt.Fprintf(&b, "node %s (%s, simulated %v, deleting %v): taints %v\n", n.Name, n.Labels[corev1.LabelInstanceTypeStable], sim, n.DeletionTimestamp != nil, n.Spec.Taints)
		}
	}
	for _, p := range e.pods() {
		switch {
		case p.Spec.NodeName == "":
			fmt.Fprintf(&b, "pending pod %s: nominated %q, %s\n", p.Name, p.Status.NominatedNodeName, localcluster.Unschedulable(&p))
		case p.Status.Phase != corev1.PodRunning:
			fmt.Fprintf(&b, "pod %s bound to %s, phase %s %s\n", p.Name, p.Spec.NodeName, p.Status.Phase, p.Status.Message)
		}
	}
	return b.String()
}

func (e *env) nodeOfApp(app string) map[string]int {
	out := map[string]int{}
	for _, p := range e.pods() {
		if p.Labels["app"] == app && p.Spec.NodeName != "" && p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning {
			out[p.Spec.NodeName]++
		}
	}
	return out
}

func (e *env) node(name string) (*corev1.Node, bool) {
	n, err := e.kube.CoreV1().Nodes().Get(e.ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, false
	}
	return n, true
}

func (e *env) instanceType(node string) string {
	if n, ok := e.node(node); ok {
		return n.Labels[corev1.LabelInstanceTypeStable]
	}
	return ""
}

func hasTaint(n *corev1.Node, key, value string) bool {
	for _, t := range n.Spec.Taints {
		if t.Key == key && (value == "" || t.Value == value) {
			return true
		}
	}
	return false
}

// check runs the end-to-end checker on the current state: no device held by
// two live pods (in the scheduler's view or the kubelet's), every bound GPU
// pod assigned exactly its request, the kubelet's pick agreeing. Pods that
// are leaving (deleting, finished) and nodes that are going are left out;
// pending pods are not checked for fitting (the autoscaler is bringing
// their nodes).
func (e *env) check() []string {
	gns, err := e.gpu.GpusliceV1alpha1().GPUNodes().List(e.ctx, metav1.ListOptions{})
	if err != nil {
		return nil
	}
	nodes := map[string]e2e.NodeView{}
	reported := map[types.UID][]allocator.ResourceDevices{}
	for i := range gns.Items {
		gn := &gns.Items[i]
		if _, ok := e.agent.Node(gn.Name); !ok {
			continue
		}
		nodes[gn.Name] = e2e.NodeView{Topology: gn.Spec.Topology(), Usable: gn.Spec.State == gpusliceapi.StateReady}
		for _, pa := range gn.Spec.Allocations {
			var devs []allocator.ResourceDevices
			for _, c := range pa.Containers {
				for _, d := range c.Devices {
					devs = append(devs, allocator.ResourceDevices{Resource: d.Resource, DeviceIDs: d.DeviceIDs})
				}
			}
			reported[types.UID(pa.PodUID)] = devs
		}
	}
	var pods []e2e.PodView
	for _, p := range e.pods() {
		if p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded || p.Spec.NodeName == "" {
			continue
		}
		if _, ok := nodes[p.Spec.NodeName]; !ok {
			continue
		}
		req, err := podrequest.Parse(&p, podrequest.Options{})
		if err != nil {
			return []string{fmt.Sprintf("pod %s: %v", p.Name, err)}
		}
		v := e2e.PodView{Name: p.Name, Node: p.Spec.NodeName, Request: req}
		if p.Status.Phase == corev1.PodFailed {
			v.Failed = p.Status.Message
		}
		if a, err := assignment.FromPod(&p); err == nil && a != nil {
			v.Assigned = a.Placement().Devices()
		}
		if sn, ok := e.agent.Node(p.Spec.NodeName); ok {
			if cds, ok := sn.Kubelet.Devices(p.UID); ok {
				pl := &allocator.Placement{}
				for _, cd := range cds {
					pl.Containers = append(pl.Containers, allocator.ContainerDevices{Name: cd.Name, Devices: cd.Devices})
				}
				if v.Given = pl.Devices(); v.Given == nil {
					v.Given = []allocator.ResourceDevices{}
				}
			}
		}
		if r, ok := reported[p.UID]; ok {
			v.Reported = r
		}
		pods = append(pods, v)
	}
	return e2e.Check(nodes, pods)
}

// TestKarpenterProvisionsConsolidatesAndUnsticks starts from a cluster with
// no node: Karpenter provisions nodes for pending MIG, time-sliced and
// whole-GPU pods scheduled by gpuslice; empty nodes are consolidated
// (WhenEmpty, consolidateAfter 0s, budget 100 %); a pod whose only candidate
// node has a stale exporter gets a new node within 60 s (gpuslice taints the
// stale node); a node deleted under running pods is drained and every
// evicted pod of a controller comes back and is bound. A checker samples the
// cluster throughout: no device is ever double-booked.
func TestKarpenterProvisionsConsolidatesAndUnsticks(t *testing.T) {
	began := time.Now()
	set, err := instancetypes.Default()
	if err != nil {
		t.Fatal(err)
	}
	gc := gpucluster.Start(t, controlplane.Options{}, ns)
	cp, ctx, kube, gpu := gc.CP, gc.Ctx, gc.Kube, gc.GPU
	if _, err := localcluster.StartControllerManager(ctx, cp, ""); err != nil {
		skipOrFail(t, err)
	}
	config := localcluster.SchedulerConfig(cp.KubeconfigPath(), heartbeatTimeout)
	tainting := strings.ReplaceAll(config, "      leaseNamespace: gpuslice-system\n", "      leaseNamespace: gpuslice-system\n      taintUnusableNodes: true\n")
	if tainting == config {
		t.Fatal("scheduler config: no leaseNamespace line to add taintUnusableNodes after")
	}
	sched, err := localcluster.StartScheduler(ctx, t.TempDir(), tainting)
	if err != nil {
		t.Fatal(err)
	}
	defer sched.Stop()
	agent, err := localcluster.StartNodeAgent(ctx, kube, gpu, set, localcluster.SimOptions{HeartbeatInterval: time.Second, PollInterval: 250 * time.Millisecond, Resync: 10 * time.Second, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	karp, err := localcluster.StartKarpenter(ctx, cp, localcluster.KarpenterOptions{
		Types: set,
		NodePools: instancetypes.NodePoolOptions{
			ConsolidationPolicy: instancetypes.WhenEmpty,
			BudgetNodes:         "100%",
			StartupTaints:       []corev1.Taint{nodetaint.Taint("")},
		},
	})
	if err != nil {
		skipOrFail(t, err)
	}
	e := &env{t: t, ctx: ctx, kube: kube, gpu: gpu, agent: agent, karp: karp}
	t.Logf("control plane, kube-controller-manager, gpuslice-scheduler and Karpenter up in %s", time.Since(began).Round(100*time.Millisecond))

	// The checker samples the cluster every second until the end.
	var (
		violMu     sync.Mutex
		violations []string
		samples    int
	)
	sampleCtx, stopSampling := context.WithCancel(ctx)
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for sampleCtx.Err() == nil {
			probs := e.check()
			violMu.Lock()
			samples++
			for _, p := range probs {
				violations = append(violations, time.Since(began).Round(time.Second).String()+": "+p)
			}
			violMu.Unlock()
			select {
			case <-sampleCtx.Done():
			case <-time.After(time.Second):
			}
		}
	}()
	defer func() {
		stopSampling()
		<-sampled
		violMu.Lock()
		defer violMu.Unlock()
		if len(violations) > 0 {
			t.Errorf("%d checker violations over %d samples:\n%s", len(violations), samples, strings.Join(violations, "\n"))
		} else {
			t.Logf("checker: %d samples, no device double-booked, every bound pod assigned its request", samples)
		}
		if errs := agent.Errors(); len(errs) > 0 {
			t.Errorf("node agent: %s", strings.Join(errs, "; "))
		}
		t.Logf("%d nodes adopted in all; wall time %s", agent.Adopted(), time.Since(began).Round(100*time.Millisecond))
	}()

	// 1. Pending MIG, time-sliced and whole-GPU pods on an empty cluster.
	for _, d := range []*appsv1.Deployment{
		deployment("mig", 3, "nvidia.com/mig-1g.5gb"),
		deployment("notebooks", 3, "nvidia.com/gpu.shared"),
	} {
		if _, err := kube.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	jobSpec := podSpec("nvidia.com/gpu", 1)
	jobSpec.RestartPolicy = corev1.RestartPolicyNever
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "train", Namespace: ns},
		Spec: batchv1.JobSpec{
			Parallelism: ptr.To[int32](2), Completions: ptr.To[int32](2),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "train"}, Annotations: map[string]string{localcluster.RunForAnnotation: "15s"}},
				Spec:       jobSpec,
			},
		},
	}
	if _, err := kube.BatchV1().Jobs(ns).Create(ctx, job, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitFor("nodes provisioned and every pod bound and running", 2*time.Minute, func() (bool, string) {
		var msgs []string
		ok := true
		for app, n := range map[string]int{"mig": 3, "notebooks": 3, "train": 2} {
			r, msg := e.running(app, n)
			ok = ok && r
			msgs = append(msgs, msg)
		}
		return ok, strings.Join(msgs, "; ")
	})
	want := map[string]string{"mig": "p4d.24xlarge", "notebooks": "g5.12xlarge", "train": "p5.48xlarge"}
	appNode := map[string]string{}
	for app, typ := range want {
		on := e.nodeOfApp(app)
		if len(on) != 1 {
			t.Fatalf("%s pods on %d nodes (%v), want one: gpuslice packs them", app, len(on), on)
		}
		for n := range on {
			if got := e.instanceType(n); got != typ {
				t.Errorf("%s pods on %s of type %s, want %s (the only type advertising their resource)", app, n, got, typ)
			}
			appNode[app] = n
		}
	}

	// 2. Empty nodes are consolidated: the notebooks go, the job finishes.
	if _, err := kube.AppsV1().Deployments(ns).Patch(ctx, "notebooks", types.MergePatchType, []byte(`{"spec":{"replicas":0}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	consolidated := time.Now()
	e.waitFor("empty g5 (notebooks scaled to 0) and p5 (job done) nodes consolidated", 2*time.Minute, func() (bool, string) {
		_, g5 := e.node(appNode["notebooks"])
		_, p5 := e.node(appNode["train"])
		return !g5 && !p5, fmt.Sprintf("g5 node present %v, p5 node present %v", g5, p5)
	})
	t.Logf("consolidation of the two empty nodes took %s after the scale-down", time.Since(consolidated).Round(100*time.Millisecond))
	if d, err := kube.BatchV1().Jobs(ns).Get(ctx, "train", metav1.GetOptions{}); err != nil || d.Status.Succeeded != 2 {
		t.Errorf("job train: %v succeeded, err %v", d.Status.Succeeded, err)
	}
	if _, ok := e.node(appNode["mig"]); !ok {
		t.Fatalf("the p4d node %s running the MIG pods was removed", appNode["mig"])
	}

	// 3. A stale node: its exporter stops; gpuslice taints it; a new MIG pod
	// whose only candidate it is gets a new node within 60 s.
	stale := appNode["mig"]
	sn, ok := agent.Node(stale)
	if !ok {
		t.Fatalf("no simulated node %s", stale)
	}
	sn.StopExporter()
	e.waitFor("stale node tainted "+nodetaint.Key+"="+nodetaint.ReasonStale, heartbeatTimeout+20*time.Second, func() (bool, string) {
		n, ok := e.node(stale)
		return ok && hasTaint(n, nodetaint.Key, nodetaint.ReasonStale), fmt.Sprintf("taints %v", n.Spec.Taints)
	})
	claimsBefore, err := karp.NodeClaims(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kube.AppsV1().Deployments(ns).Patch(ctx, "mig", types.MergePatchType, []byte(`{"spec":{"replicas":4}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	took := e.waitFor("the pod whose only candidate is stale bound to a new node", staleDeadline, func() (bool, string) {
		on := e.nodeOfApp("mig")
		return len(on) == 2 && on[stale] == 3, fmt.Sprintf("mig pods per node %v", on)
	})
	claimsAfter, err := karp.NodeClaims(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(claimsAfter) <= len(claimsBefore) {
		t.Errorf("NodeClaims %d before, %d after: Karpenter launched nothing", len(claimsBefore), len(claimsAfter))
	}
	t.Logf("stale node: new node and pod bound %s after the scale-up (limit %s)", took.Round(100*time.Millisecond), staleDeadline)
	fresh := ""
	for n := range e.nodeOfApp("mig") {
		if n != stale {
			fresh = n
		}
	}
	// The exporter comes back: the taint goes.
	if err := sn.StartExporter(ctx); err != nil {
		t.Fatal(err)
	}
	e.waitFor("taint removed once the exporter is back", 30*time.Second, func() (bool, string) {
		n, ok := e.node(stale)
		return ok && !hasTaint(n, nodetaint.Key, ""), fmt.Sprintf("taints %v", n.Spec.Taints)
	})

	// 4. A node deleted under running pods (its NodeClaim deleted, as an
	// operator or a disruption would): Karpenter drains it, the evicted
	// pods' ReplicaSet recreates them, and they are bound again.
	old := map[types.UID]bool{}
	for _, p := range e.pods() {
		if p.Spec.NodeName == stale {
			old[p.UID] = true
		}
	}
	claim := ""
	for _, c := range claimsAfter {
		if name, _, _ := unstructuredString(c.Object, "status", "nodeName"); name == stale {
			claim = c.GetName()
		}
	}
	if claim == "" {
		t.Fatalf("no NodeClaim for node %s", stale)
	}
	if err := karp.DeleteNodeClaim(ctx, claim); err != nil {
		t.Fatal(err)
	}
	e.waitFor("drained node gone and every evicted MIG pod back and bound", 2*time.Minute, func() (bool, string) {
		if _, ok := e.node(stale); ok {
			return false, "node " + stale + " still there"
		}
		for _, p := range e.pods() {
			if old[p.UID] {
				return false, "evicted pod " + p.Name + " still exists"
			}
		}
		return e.running("mig", 4)
	})
	t.Logf("MIG pods now on %v (the node that came for the stale one was %s)", e.nodeOfApp("mig"), fresh)
}

func unstructuredString(obj map[string]any, fields ...string) (string, bool, error) {
	cur := any(obj)
	for _, f := range fields {
		m, ok := cur.(map[string]any)
		if !ok {
			return "", false, nil
		}
		cur, ok = m[f]
		if !ok {
			return "", false, nil
		}
	}
	s, ok := cur.(string)
	return s, ok, nil
}
