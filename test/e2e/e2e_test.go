package e2e

import (
	"context"
	"fmt"
	"math/rand"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/gpuslice/gpuslice/pkg/allocator"
	gpusliceapi "github.com/gpuslice/gpuslice/pkg/apis/gpuslice/v1alpha1"
	"github.com/gpuslice/gpuslice/pkg/assignment"
	versioned "github.com/gpuslice/gpuslice/pkg/generated/clientset/versioned"
	"github.com/gpuslice/gpuslice/pkg/localcluster"
	"github.com/gpuslice/gpuslice/pkg/localcluster/controlplane"
	"github.com/gpuslice/gpuslice/pkg/podrequest"
	"github.com/gpuslice/gpuslice/pkg/topology"
	"github.com/gpuslice/gpuslice/pkg/topology/fixtures"
	"github.com/gpuslice/gpuslice/test/framework/gpucluster"
)

const (
	ns               = "e2e"
	heartbeatTimeout = 6 * time.Second
	reconfNode       = "a30-reconf"
	reconfTaint      = "gpuslice.io/reconfiguring"
)

var balanced = []string{"1g.5gb", "1g.5gb", "2g.10gb", "3g.20gb"}

// nodeSpecs: 20 nodes of five kinds.
func nodeSpecs() []fixtures.Spec {
	var out []fixtures.Spec
	for i := 0; i < 6; i++ {
		out = append(out, fixtures.Spec{Name: fmt.Sprintf("a100-mig-%d", i), Product: "NVIDIA A100-SXM4-40GB", GPUs: 2, MIG: balanced})
	}
	for i := 0; i < 3; i++ {
		out = append(out, fixtures.Spec{Name: fmt.Sprintf("a30-%d", i), Product: "NVIDIA A30", GPUs: 2, MIG: []string{"1g.6gb", "1g.6gb", "2g.12gb"}})
	}
	out = append(out, fixtures.Spec{Name: reconfNode, Product: "NVIDIA A30", GPUs: 1, MIG: []string{"1g.6gb", "1g.6gb", "2g.12gb"}})
	for i := 0; i < 6; i++ {
		out = append(out, fixtures.Spec{Name: fmt.Sprintf("h100-ts-%d", i), Product: "NVIDIA H100 80GB HBM3", GPUs: 2, Replicas: 4, RenameByDefault: true, Policy: topology.PolicyPacked})
	}
	for i := 0; i < 4; i++ {
		out = append(out, fixtures.Spec{Name: fmt.Sprintf("h200-%d", i), Product: "NVIDIA H200", GPUs: 2})
	}
	return out
}

var requestKinds = []map[string]int64{
	{"nvidia.com/mig-1g.5gb": 1}, {"nvidia.com/mig-2g.10gb": 1}, {"nvidia.com/mig-3g.20gb": 1},
	{"nvidia.com/mig-1g.6gb": 1}, {"nvidia.com/mig-2g.12gb": 1},
	{"nvidia.com/gpu.shared": 1}, {"nvidia.com/gpu.shared": 2}, {"nvidia.com/gpu": 1}, {"nvidia.com/gpu": 2},
	{"nvidia.com/mig-1g.5gb": 1, "nvidia.com/mig-2g.10gb": 1},
	nil, // CPU only
}

func gpuPod(name string, res map[string]int64) *corev1.Pod {
	limits := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m")}
	for r, n := range res {
		limits[corev1.ResourceName(r)] = *resource.NewQuantity(n, resource.DecimalSI)
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PodSpec{
			SchedulerName: "gpuslice-binpack",
			Containers:    []corev1.Container{{Name: "main", Image: "registry.k8s.io/pause:3.10", Resources: corev1.ResourceRequirements{Limits: limits, Requests: limits}}},
		},
	}
}

type env struct {
	t      *testing.T
	ctx    context.Context
	cp     *controlplane.ControlPlane
	kube   kubernetes.Interface
	gpu    versioned.Interface
	nodes  map[string]*localcluster.SimNode
	config string
	sched  *localcluster.Scheduler
	rng    *rand.Rand
	seq    int
	live   []string
}

func (e *env) startScheduler() {
	e.t.Helper()
	s, err := localcluster.StartScheduler(e.ctx, e.t.TempDir(), e.config)
	if err != nil {
		e.t.Fatal(err)
	}
	e.sched = s
}

func (e *env) create(p *corev1.Pod) {
	e.t.Helper()
	if _, err := e.kube.CoreV1().Pods(ns).Create(e.ctx, p, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
	e.live = append(e.live, p.Name)
}

// churn adds n random pods and deletes d random live ones.
func (e *env) churn(n, d int) {
	e.t.Helper()
	for i := 0; i < d && len(e.live) > 0; i++ {
		k := e.rng.Intn(len(e.live))
		_ = e.kube.CoreV1().Pods(ns).Delete(e.ctx, e.live[k], *metav1.NewDeleteOptions(0))
		e.live = append(e.live[:k], e.live[k+1:]...)
	}
	for i := 0; i < n; i++ {
		e.seq++
		e.create(gpuPod(fmt.Sprintf("p%03d", e.seq), requestKinds[e.rng.Intn(len(requestKinds))]))
	}
}

// settle waits until every live pod is Running, unschedulable or rejected,
// and stays so for 2 s.
func (e *env) settle() {
	e.t.Helper()
	last, since := "", time.Now()
	err := wait.PollUntilContextTimeout(e.ctx, 250*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		list, err := e.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		running, pending := 0, 0
		for _, p := range list.Items {
			switch {
			case p.DeletionTimestamp != nil:
				return false, nil
			case p.Status.Phase == corev1.PodRunning || p.Status.Phase == corev1.PodFailed:
				running++
			case p.Spec.NodeName == "" && localcluster.Unschedulable(&p) != "":
				pending++
			default:
				return false, nil
			}
		}
		state := fmt.Sprint(running, "/", pending)
		if state != last {
			last, since = state, time.Now()
		}
		return time.Since(since) > 2*time.Second, nil
	})
	if err != nil {
		e.t.Fatalf("pods did not settle: %v (last running/pending %s)", err, last)
	}
}

// check gathers the cluster's state and applies the invariants.
func (e *env) check(phase string) { e.checkWithin(phase, 0) }

// checkWithin is check, where pending pods that fit may take up to limit to
// be bound (the scheduler's watches catching up after a control-plane
// restart); any other violation fails at once. It returns how long the
// invariants took to hold.
func (e *env) checkWithin(phase string, limit time.Duration) time.Duration {
	e.t.Helper()
	start := time.Now()
	for {
		// Let the exporters publish the kubelets' latest picks.
		time.Sleep(1500 * time.Millisecond)
		problems, pods := e.invariants()
		if len(problems) == 0 {
			bound := 0
			for _, p := range pods {
				if p.Node != "" {
					bound++
				}
			}
			e.t.Logf("phase %s: %d pods, %d bound, invariants hold", phase, len(pods), bound)
			return time.Since(start)
		}
		onlyPending := true
		for _, p := range problems {
			if !strings.HasPrefix(p, "pending pod ") || !strings.Contains(p, " fits on ") {
				onlyPending = false
			}
		}
		if onlyPending && time.Since(start) < limit {
			continue
		}
		msg := fmt.Sprintf("phase %s: %d invariant violations:\n%s", phase, len(problems), strings.Join(problems, "\n"))
		for _, p := range problems {
			if f := strings.Fields(p); strings.HasPrefix(p, "pending pod ") && strings.Contains(p, " fits on ") {
				msg += "\n" + e.diagnose(f[2], f[len(f)-1]) // pending pod NAME (REQ) fits on NODE
			}
		}
		e.t.Fatal(msg)
	}
}

// invariants checks the end-to-end invariants (Check) on what the API and
// the fake kubelets hold now, and returns the violations and the pods.
func (e *env) invariants() ([]string, []PodView) {
	e.t.Helper()
	gns, err := e.gpu.GpusliceV1alpha1().GPUNodes().List(e.ctx, metav1.ListOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	nodes := map[string]NodeView{}
	reported := map[types.UID][]allocator.ResourceDevices{}
	for i := range gns.Items {
		gn := &gns.Items[i]
		usable := gn.Spec.State == gpusliceapi.StateReady && gn.Name != reconfNode
		nodes[gn.Name] = NodeView{Topology: gn.Spec.Topology(), Usable: usable}
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
	// Stale nodes are not usable either.
	for name, sn := range e.nodes {
		if nv, ok := nodes[name]; ok {
			l, err := e.kube.CoordinationV1().Leases(localcluster.LeaseNamespace).Get(e.ctx, name, metav1.GetOptions{})
			if err != nil || time.Since(l.Spec.RenewTime.Time) > heartbeatTimeout {
				nv.Usable = false
				nodes[name] = nv
			}
			_ = sn
		}
	}
	list, err := e.kube.CoreV1().Pods(ns).List(e.ctx, metav1.ListOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	var pods []PodView
	for i := range list.Items {
		p := &list.Items[i]
		req, err := podrequest.Parse(p, podrequest.Options{})
		if err != nil {
			e.t.Fatal(err)
		}
		// A pending pod is judged by gpuslice's rule: its sharing (default
		// DistinctGPUs).
		if !req.Empty() && p.Spec.SchedulerName != "default-scheduler" {
			if req.Sharing, err = assignment.Sharing(p, podrequest.SharingDistinct); err != nil {
				e.t.Fatal(err)
			}
		}
		v := PodView{Name: p.Name, Node: p.Spec.NodeName, Request: req, OnlyNode: p.Spec.NodeSelector["kubernetes.io/hostname"]}
		if p.Status.Phase == corev1.PodFailed {
			v.Failed = p.Status.Message
		}
		if a, err := assignment.FromPod(p); err == nil && a != nil {
			v.Assigned, v.AssignedHeld = a.Placement().Devices(), a.Held()
		}
		if sn := e.nodes[p.Spec.NodeName]; sn != nil {
			if cds, ok := sn.Kubelet.Devices(p.UID); ok {
				pl := &allocator.Placement{}
				for _, cd := range cds {
					pl.Containers = append(pl.Containers, allocator.ContainerDevices{Name: cd.Name, Devices: cd.Devices})
				}
				v.Given = pl.Devices()
				if v.Given == nil {
					v.Given = []allocator.ResourceDevices{}
				}
			}
		}
		if r, ok := reported[p.UID]; ok {
			v.Reported = r
		}
		pods = append(pods, v)
	}
	return Check(nodes, pods), pods
}

// podsOn is the set of GPU pods bound to node.
func (e *env) podsOn(node string) map[string]bool {
	list, err := e.kube.CoreV1().Pods(ns).List(e.ctx, metav1.ListOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]bool{}
	for i := range list.Items {
		p := &list.Items[i]
		if req, err := podrequest.Parse(p, podrequest.Options{}); err == nil && !req.Empty() && p.Spec.NodeName == node {
			out[p.Name] = true
		}
	}
	return out
}

func (e *env) nodeOf(pod string) string {
	p, err := e.kube.CoreV1().Pods(ns).Get(e.ctx, pod, metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return p.Spec.NodeName
}

// diagnose describes why a pending pod may not be bound to node: its
// scheduling condition, the node's Lease, GPUNode and allocatable, and the
// scheduler cache's view of the node.
func (e *env) diagnose(pod, node string) string {
	var b strings.Builder
	now := time.Now()
	if p, err := e.kube.CoreV1().Pods(ns).Get(e.ctx, pod, metav1.GetOptions{}); err == nil {
		for _, c := range p.Status.Conditions {
			fmt.Fprintf(&b, "pod %s condition %s=%s reason %s at %s: %s\n", pod, c.Type, c.Status, c.Reason, c.LastTransitionTime.Format(time.RFC3339Nano), c.Message)
		}
	}
	if l, err := e.kube.CoordinationV1().Leases(localcluster.LeaseNamespace).Get(e.ctx, node, metav1.GetOptions{}); err == nil && l.Spec.RenewTime != nil {
		fmt.Fprintf(&b, "lease %s renewed %s ago (rv %s)\n", node, now.Sub(l.Spec.RenewTime.Time).Round(time.Millisecond), l.ResourceVersion)
	} else {
		fmt.Fprintf(&b, "lease %s: %v\n", node, err)
	}
	if gn, err := e.gpu.GpusliceV1alpha1().GPUNodes().Get(e.ctx, node, metav1.GetOptions{}); err == nil {
		fmt.Fprintf(&b, "GPUNode %s rv %s state %s (%s), %d allocations\n", node, gn.ResourceVersion, gn.Spec.State, gn.Spec.Message, len(gn.Spec.Allocations))
		for _, a := range gn.Spec.Allocations {
			fmt.Fprintf(&b, "  GPUNode allocation %s/%s %s: %v\n", a.Namespace, a.Name, a.PodUID, a.Containers)
		}
	} else {
		fmt.Fprintf(&b, "GPUNode %s: %v\n", node, err)
	}
	if pods, err := e.kube.CoreV1().Pods(ns).List(e.ctx, metav1.ListOptions{}); err == nil {
		for _, p := range pods.Items {
			if p.Spec.NodeName != node {
				continue
			}
			fmt.Fprintf(&b, "  live pod %s %s phase %s deleting %v\n", p.Name, p.UID, p.Status.Phase, p.DeletionTimestamp != nil)
			if sn := e.nodes[node]; sn != nil {
				if cds, ok := sn.Kubelet.Devices(p.UID); ok {
					fmt.Fprintf(&b, "    kubelet gave %v\n", cds)
				}
			}
		}
	}
	if n, err := e.kube.CoreV1().Nodes().Get(e.ctx, node, metav1.GetOptions{}); err == nil {
		fmt.Fprintf(&b, "node %s allocatable %v taints %v\n", node, n.Status.Allocatable, n.Spec.Taints)
	}
	if e.sched != nil && e.sched.Shared != nil {
		v := e.sched.Shared.NodeView(node)
		fmt.Fprintf(&b, "scheduler cache: usable=%v cause=%q reason=%q generation=%d\n", v.Freshness.Usable, v.Freshness.Cause, v.Freshness.Reason, v.Generation)
		fmt.Fprintf(&b, "scheduler cache holds GPUNode rv %s\n", e.sched.Shared.TopologyVersion(node))
		for _, pi := range e.sched.Shared.PodsOn(node) {
			fmt.Fprintf(&b, "  cache pod %s/%s %s phase %v predicted %v: %v\n", pi.Namespace, pi.Name, pi.UID, pi.Phase, pi.Predicted, pi.Devices)
		}
		if v.State != nil {
			fmt.Fprintf(&b, "scheduler cache snapshot totals: %+v\n", v.State.Totals())
		}
	}
	return b.String()
}

// newEnv starts a control plane with the CRDs, the Lease and test
// namespaces and the simulated nodes of nodeSpecs (the reconfiguration node
// tainted: it takes only pods that tolerate it); its context ends with the
// test. The scheduler is the caller's.
func newEnv(t *testing.T, seed int64) *env {
	t.Helper()
	gc := gpucluster.Start(t, controlplane.Options{}, ns)
	ctx, gpu := gc.Ctx, gc.GPU
	e := &env{t: t, ctx: ctx, cp: gc.CP, kube: gc.Kube, gpu: gpu, nodes: map[string]*localcluster.SimNode{}, rng: rand.New(rand.NewSource(seed))}
	for i, spec := range nodeSpecs() {
		sn, err := localcluster.StartSimNode(ctx, e.kube, gpu, spec, localcluster.SimOptions{HeartbeatInterval: time.Second, PollInterval: 250 * time.Millisecond, Resync: 10 * time.Second, Seed: int64(i)})
		if err != nil {
			t.Fatal(err)
		}
		e.nodes[spec.Name] = sn
	}
	taint(t, ctx, e.kube, reconfNode)
	return e
}

func TestEndToEnd(t *testing.T) {
	start := time.Now()
	e := newEnv(t, 42)
	ctx, cp := e.ctx, e.cp
	e.config = localcluster.SchedulerConfig(cp.KubeconfigPath(), heartbeatTimeout)
	e.startScheduler()
	defer func() { e.sched.Stop() }()
	t.Logf("cluster of %d simulated nodes up in %s", len(e.nodes), time.Since(start).Round(time.Millisecond))

	var whileDown []string         // pods created while h100-ts-0's exporter was down
	var heldBefore map[string]bool // pods on h100-ts-0 when its exporter came back
	phases := []struct {
		name string
		run  func()
	}{
		{"arrivals", func() { e.churn(50, 0) }},
		{"churn", func() { e.churn(40, 20) }},
		{"scheduler restart", func() {
			e.sched.Stop()
			e.churn(30, 15)
			e.startScheduler()
		}},
		{"exporter killed", func() {
			victim := e.nodes["h100-ts-0"]
			victim.StopExporter()
			time.Sleep(heartbeatTimeout + 2*time.Second)
			from := e.seq
			e.churn(30, 15)
			for i := from + 1; i <= e.seq; i++ {
				whileDown = append(whileDown, fmt.Sprintf("p%03d", i))
			}
			pinned := gpuPod("pinned-h100-ts-0", map[string]int64{"nvidia.com/gpu.shared": 1})
			pinned.Spec.NodeSelector = map[string]string{"kubernetes.io/hostname": "h100-ts-0"}
			e.create(pinned)
		}},
		{"scheduler restart 2", func() {
			e.sched.Stop()
			e.churn(30, 20)
			e.startScheduler()
		}},
		{"exporter back", func() {
			heldBefore = e.podsOn("h100-ts-0")
			if err := e.nodes["h100-ts-0"].StartExporter(ctx); err != nil {
				t.Fatal(err)
			}
			e.churn(30, 20)
		}},
		{"MIG layout change with pods pending", func() {
			four := gpuPod("needs-4g", map[string]int64{"nvidia.com/mig-4g.24gb": 1})
			four.Spec.Tolerations = []corev1.Toleration{{Key: reconfTaint, Operator: corev1.TolerationOpExists}}
			e.create(four)
			e.settle()
			if e.nodeOf("needs-4g") != "" {
				t.Fatal("a 4g.24gb pod was bound before any node offered the profile")
			}
			if err := e.nodes[reconfNode].SetLayout(ctx, []string{"4g.24gb"}); err != nil {
				t.Fatal(err)
			}
			e.churn(30, 20)
		}},
		{"scheduler restart 3", func() {
			e.sched.Stop()
			e.churn(30, 20)
			e.startScheduler()
		}},
		{"departures", func() { e.churn(30, 40) }},
	}
	for _, ph := range phases {
		ph.run()
		e.settle()
		e.check(ph.name)
		switch ph.name {
		case "exporter killed":
			for _, name := range whileDown {
				p, err := e.kube.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
				if err != nil || p.Spec.NodeName != "h100-ts-0" {
					continue
				}
				// CPU-only pods may go anywhere; GPU pods must not.
				if req, err := podrequest.Parse(p, podrequest.Options{}); err == nil && !req.Empty() {
					t.Fatalf("GPU pod %s (%s) placed on h100-ts-0 while its exporter was down", name, req)
				}
			}
			if e.nodeOf("pinned-h100-ts-0") != "" {
				t.Fatal("pod pinned to h100-ts-0 bound while the node's topology was stale")
			}
		case "exporter back":
			// The pinned pod failed every attempt while the node was stale;
			// the returning exporter's Lease wakes it, with the pods created
			// while the exporter was down that also want the node. It must be
			// bound, unless those took the node's last free devices first
			// (the queue's order among woken pods is kube-scheduler's): then
			// the node took GPU pods again and the pinned pod does not fit
			// on what the kubelet holds. It may sit out kube-scheduler's
			// backoff first, longer than settle's 2 s of quiet.
			var took []string
			if err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
				if e.nodeOf("pinned-h100-ts-0") == "h100-ts-0" {
					return true, nil
				}
				problems, _ := e.invariants()
				for _, p := range problems {
					if strings.HasPrefix(p, "pending pod pinned-h100-ts-0 ") {
						return false, nil
					}
				}
				return true, nil
			}); err != nil {
				t.Fatalf("pod pinned to h100-ts-0 not bound within 30 s after the exporter came back, though it fits\n%s", e.diagnose("pinned-h100-ts-0", "h100-ts-0"))
			}
			if e.nodeOf("pinned-h100-ts-0") == "" {
				for name := range e.podsOn("h100-ts-0") {
					if !heldBefore[name] {
						took = append(took, name)
					}
				}
				sort.Strings(took)
				t.Logf("the pinned pod stays pending: it does not fit on h100-ts-0, which took %v since its exporter came back", took)
			}
		case "MIG layout change with pods pending":
			if e.nodeOf("needs-4g") != reconfNode {
				t.Fatal("the 4g.24gb pod was not bound after the layout change")
			}
		}
	}
	t.Logf("%d pods created in all; suite took %s", e.seq+2, time.Since(start).Round(time.Second))
	if e.seq < 300 {
		t.Fatalf("only %d pods created", e.seq)
	}
}

func taint(t *testing.T, ctx context.Context, kube kubernetes.Interface, node string) {
	t.Helper()
	n, err := kube.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Spec.Taints = append(n.Spec.Taints, corev1.Taint{Key: reconfTaint, Effect: corev1.TaintEffectNoSchedule})
	if _, err := kube.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}
