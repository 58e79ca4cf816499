// Package autoscale is `gpuslice-bench autoscale` (make demo-autoscale): the
// same seeded workload (pkg/autoscale/workload: inference Deployments on MIG
// slices following a compressed day, batch Jobs of MIG slices and whole
// GPUs, notebooks on time-sliced GPUs) replayed on an empty cluster that
// the real Karpenter grows and shrinks, once per policy:
//
//	default+WhenEmpty                   kube-scheduler's default profile, Karpenter consolidating empty nodes
//	gpuslice+WhenEmpty                  gpuslice-binpack, the same Karpenter
//	default+WhenEmptyOrUnderutilized    kube-scheduler, Karpenter also repacking underutilized nodes
//
// Each run gets a fresh control plane (etcd, kube-apiserver), kube-
// controller-manager, the in-process scheduler with both profiles, the node
// agent that makes Karpenter's Nodes simulated GPU nodes of their instance
// type (pkg/autoscale/instancetypes: prices and resources), and Karpenter.
// It reports GPU node-hours and dollars (the compressed day scaled to 24 h),
// peak nodes, pods evicted by consolidation, and pod pending time; the last
// line is node_hours_ratio=<gpuslice / default, both WhenEmpty>.
package autoscale

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/gpuslice/gpuslice/pkg/autoscale/instancetypes"
	"github.com/gpuslice/gpuslice/pkg/autoscale/workload"
	"github.com/gpuslice/gpuslice/pkg/bench/plot"
	versioned "github.com/gpuslice/gpuslice/pkg/generated/clientset/versioned"
	"github.com/gpuslice/gpuslice/pkg/localcluster"
	"github.com/gpuslice/gpuslice/pkg/localcluster/controlplane"
	"github.com/gpuslice/gpuslice/pkg/nodetaint"
	"github.com/gpuslice/gpuslice/pkg/topology"
	"github.com/gpuslice/gpuslice/pkg/topology/migparted"
)

// Policy is one scheduler and consolidation policy.
type Policy struct {
	Name          string
	Scheduler     string
	Consolidation string
}

// Policies are the runs, in order: the three of make demo-autoscale, then
// gpuslice with Karpenter's repacking consolidation (asked for by name, or
// with --policies all): does packing make WhenEmptyOrUnderutilized cheaper
// in evictions?
var Policies = []Policy{
	{"default+WhenEmpty", "default-scheduler", instancetypes.WhenEmpty},
	{"gpuslice+WhenEmpty", "gpuslice-binpack", instancetypes.WhenEmpty},
	{"default+WhenEmptyOrUnderutilized", "default-scheduler", instancetypes.WhenEmptyOrUnderutilized},
	{"gpuslice+WhenEmptyOrUnderutilized", "gpuslice-binpack", instancetypes.WhenEmptyOrUnderutilized},
}

// defaultPolicies are the runs of make demo-autoscale.
const defaultPolicies = "default+WhenEmpty,gpuslice+WhenEmpty,default+WhenEmptyOrUnderutilized"

const (
	ns               = "workload"
	heartbeatTimeout = 10 * time.Second
	disruptedTaint   = "karpenter.sh/disrupted"
)

// Result is one run's bill.
type Result struct {
	Policy    string
	NodeHours float64
	Dollars   float64
	PeakNodes int
	Evictions int
	// PendingP50 and PendingP99 are pod pending times (creation to
	// binding), in real (compressed) seconds.
	PendingP50, PendingP99 float64
	Pods                   int
	// Nodes over time: minutes of the scaled day -> nodes.
	Series []plot.Point
}

// Main runs the benchmark with command-line args.
func Main(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("autoscale", flag.ContinueOnError)
	fs.SetOutput(stdout)
	seed := fs.Int64("seed", 42, "workload seed")
	day := fs.Duration("day", 4*time.Minute, "length of the compressed day")
	tail := fs.Duration("tail", 75*time.Second, "time after the day during which nodes are still counted (consolidation of what the night left)")
	partedPath := fs.String("mig-parted", "", "NVIDIA mig-parted config-default.yaml with the named MIG layouts (default: the embedded copy)")
	only := fs.String("policies", defaultPolicies, "comma-separated policy names, or all (adds gpuslice+WhenEmptyOrUnderutilized)")
	deletionCost := fs.Bool("deletion-cost", true, "gpuslice keeps the pod-deletion-cost of its ReplicaSet pods (GPUSliceArgs deletionCost), so Deployment scale-downs empty the least-used nodes; false reproduces the figures measured before it")
	plotPath := fs.String("plot", "docs/autoscale-nodes.png", "PNG of nodes over the day per policy (empty: none)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %v", fs.Args())
	}
	parted, err := migparted.Default()
	if *partedPath != "" {
		parted, err = topology.LoadMIGParted(*partedPath)
	}
	if err != nil {
		return err
	}
	set, err := instancetypes.Builtin(parted)
	if err != nil {
		return err
	}
	events, err := workload.Generate(workload.Default(*seed, *day))
	if err != nil {
		return err
	}
	var runs []Policy
	for _, p := range Policies {
		if *only == "all" || strings.Contains(","+*only+",", ","+p.Name+",") {
			runs = append(runs, p)
		}
	}
	if len(runs) == 0 {
		return fmt.Errorf("no policy matches %q", *only)
	}
	fmt.Fprintf(stdout, "[autoscale] seed %d, a day of %s (x%.0f), %d events, %d instance types; %d runs of about %s each\n",
		*seed, *day, float64(24*time.Hour)/float64(*day), len(events), len(set.Types()), len(runs), (*day + *tail + 20*time.Second).Round(time.Second))
	results := map[string]*Result{}
	var order []*Result
	for _, p := range runs {
		r, err := runOne(ctx, stdout, p, set, events, *day, *tail, *deletionCost)
		if err != nil {
			return fmt.Errorf("%s: %w", p.Name, err)
		}
		results[p.Name] = r
		order = append(order, r)
	}
	fmt.Fprintf(stdout, "\n%-34s %10s %10s %6s %9s %9s %9s %5s\n", "policy", "node-h", "dollars", "peak", "evicted", "pend-p50", "pend-p99", "pods")
	for _, r := range order {
		fmt.Fprintf(stdout, "%-34s %10.1f %10.0f %6d %9d %8.1fs %8.1fs %5d\n", r.Policy, r.NodeHours, r.Dollars, r.PeakNodes, r.Evictions, r.PendingP50, r.PendingP99, r.Pods)
	}
	if b, err := LowerBound(set, events, *day, *tail); err != nil {
		fmt.Fprintf(stdout, "[autoscale] lower bound: %v\n", err)
	} else {
		fmt.Fprintf(stdout, "%-34s %10.1f %10.0f   (fluid bound: free repacking, instant nodes; no policy does better)\n", "lower bound", b.NodeHours, b.Dollars)
		fmt.Fprintf(stdout, "node_hours_lower_bound=%.1f\n", b.NodeHours)
	}
	if *plotPath != "" {
		c := plot.Chart{Title: fmt.Sprintf("GPU nodes over a compressed day (seed %d)", *seed), XLabel: "hour of the day", YLabel: "GPU nodes"}
		for _, r := range order {
			c.Series = append(c.Series, plot.Series{Name: r.Policy, Points: r.Series})
		}
		if err := os.MkdirAll(filepath.Dir(*plotPath), 0o755); err == nil {
			if err := c.WritePNG(*plotPath); err != nil {
				fmt.Fprintf(stdout, "[autoscale] plot: %v\n", err)
			} else {
				fmt.Fprintf(stdout, "[autoscale] wrote %s\n", *plotPath)
			}
		}
	}
	def, gs := results["default+WhenEmpty"], results["gpuslice+WhenEmpty"]
	if def != nil && gs != nil && def.NodeHours > 0 {
		fmt.Fprintf(stdout, "node_hours_ratio=%.3f\n", gs.NodeHours/def.NodeHours)
	}
	return nil
}

// schedulerConfig is the test config with gpuslice's taint on (and its
// pod deletion costs when deletionCost) and kube-scheduler's stock profile
// added. Deletion costs touch only pods gpuslice placed, so the stock
// profile's runs are unaffected.
func schedulerConfig(kubeconfig string, deletionCost bool) (string, error) {
	c := localcluster.SchedulerConfig(kubeconfig, heartbeatTimeout)
	add := "      taintUnusableNodes: true\n"
	if deletionCost {
		add += "      deletionCost: true\n"
	}
	t := strings.ReplaceAll(c, "      leaseNamespace: gpuslice-system\n", "      leaseNamespace: gpuslice-system\n"+add)
	if t == c {
		return "", errors.New("scheduler config: cannot enable taintUnusableNodes")
	}
	return t + "- schedulerName: default-scheduler\n", nil
}

func runOne(ctx context.Context, out io.Writer, p Policy, set *instancetypes.Set, events []workload.Event, day, tail time.Duration, deletionCost bool) (*Result, error) {
	logf := func(format string, a ...any) {
		fmt.Fprintf(out, "[autoscale] %s: "+format+"\n", append([]any{p.Name}, a...)...)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cp, err := controlplane.Start(ctx, "")
	if err != nil {
		return nil, err
	}
	defer cp.Stop()
	kube := cp.Client()
	gpu, err := versioned.NewForConfig(cp.Config())
	if err != nil {
		return nil, err
	}
	if err := localcluster.InstallCRDs(ctx, cp.Config()); err != nil {
		return nil, err
	}
	for _, n := range []string{localcluster.LeaseNamespace, ns} {
		if err := localcluster.EnsureNamespace(ctx, kube, n); err != nil {
			return nil, err
		}
	}
	if _, err := localcluster.StartControllerManager(ctx, cp, ""); err != nil {
		return nil, err
	}
	cfg, err := schedulerConfig(cp.KubeconfigPath(), deletionCost)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "gpuslice-autoscale-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	sched, err := localcluster.StartScheduler(ctx, dir, cfg)
	if err != nil {
		return nil, err
	}
	defer sched.Stop()
	agent, err := localcluster.StartNodeAgent(ctx, kube, gpu, set, localcluster.SimOptions{HeartbeatInterval: 2 * time.Second, PollInterval: time.Second, Resync: 20 * time.Second, Seed: 1})
	if err != nil {
		return nil, err
	}
	if _, err := localcluster.StartKarpenter(ctx, cp, localcluster.KarpenterOptions{
		Types: set,
		NodePools: instancetypes.NodePoolOptions{
			ConsolidationPolicy: p.Consolidation,
			BudgetNodes:         "100%",
			StartupTaints:       []corev1.Taint{nodetaint.Taint("")},
		},
	}); err != nil {
		return nil, err
	}
	logf("cluster up; replaying %d events over %s", len(events), day)

	m := newMeter(kube, set, day)
	start := time.Now()
	sampleCtx, stopSampling := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		m.run(sampleCtx, start)
	}()
	next := start.Add(30 * time.Second)
	for _, ev := range events {
		if err := sleepUntil(ctx, start.Add(ev.At)); err != nil {
			stopSampling()
			wg.Wait()
			return nil, err
		}
		if err := apply(ctx, kube, p.Scheduler, ev); err != nil {
			logf("event %s %s: %v", ev.Action, ev.Name, err)
		}
		if time.Now().After(next) {
			logf("t=%s nodes=%d pending=%d", time.Since(start).Round(time.Second), m.nodes(), m.pending())
			next = next.Add(30 * time.Second)
		}
	}
	for t := start.Add(day); ; t = t.Add(30 * time.Second) {
		end := start.Add(day + tail)
		if t.After(end) {
			t = end
		}
		if err := sleepUntil(ctx, t); err != nil {
			break
		}
		logf("t=%s nodes=%d pending=%d", time.Since(start).Round(time.Second), m.nodes(), m.pending())
		if !t.Before(end) {
			break
		}
	}
	stopSampling()
	wg.Wait()
	if errs := agent.Errors(); len(errs) > 0 {
		logf("node agent: %s", strings.Join(errs, "; "))
	}
	r := m.result(p.Name)
	// Karpenter records an Evicted event on each pod it drains: exact, where
	// the sampler sees only the pods still on a node when it first sees
	// the node's disruption taint (a drain can finish within its second).
	if n, err := karpenterEvictions(ctx, kube); err != nil {
		logf("counting Karpenter's evictions: %v (the sampled count stays)", err)
	} else {
		r.Evictions = max(r.Evictions, n)
	}
	logf("done: %.1f node-h, $%.0f, peak %d nodes, %d evicted, pending p50 %.1fs p99 %.1fs", r.NodeHours, r.Dollars, r.PeakNodes, r.Evictions, r.PendingP50, r.PendingP99)
	return r, nil
}

func sleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

func podTemplate(app, scheduler string, ev workload.Event) corev1.PodTemplateSpec {
	limits := corev1.ResourceList{
		corev1.ResourceCPU:               resource.MustParse("1"),
		corev1.ResourceMemory:            resource.MustParse("4Gi"),
		corev1.ResourceName(ev.Resource): *resource.NewQuantity(int64(ev.Count), resource.DecimalSI),
	}
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": app, "kind": string(ev.Kind)}},
		Spec: corev1.PodSpec{
			SchedulerName:                 scheduler,
			TerminationGracePeriodSeconds: ptr.To[int64](5),
			Containers:                    []corev1.Container{{Name: "main", Image: "registry.k8s.io/pause:3.10", Resources: corev1.ResourceRequirements{Limits: limits, Requests: limits}}},
		},
	}
}

// apply turns one event into API calls.
func apply(ctx context.Context, kube kubernetes.Interface, scheduler string, ev workload.Event) error {
	switch {
	case ev.Action == workload.Create && ev.Kind == workload.Batch:
		tpl := podTemplate(ev.Name, scheduler, ev)
		tpl.Annotations = map[string]string{localcluster.RunForAnnotation: ev.RunFor.String()}
		tpl.Spec.RestartPolicy = corev1.RestartPolicyNever
		n := int32(ev.Replicas)
		_, err := kube.BatchV1().Jobs(ns).Create(ctx, &batchv1.Job{
			ObjectMeta: metav1.ObjectMeta{Name: ev.Name, Namespace: ns},
			Spec:       batchv1.JobSpec{Parallelism: &n, Completions: &n, Template: tpl},
		}, metav1.CreateOptions{})
		return err
	case ev.Action == workload.Create:
		n := int32(ev.Replicas)
		_, err := kube.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: ev.Name, Namespace: ns},
			Spec: appsv1.DeploymentSpec{
				Replicas: &n,
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": ev.Name}},
				Template: podTemplate(ev.Name, scheduler, ev),
			},
		}, metav1.CreateOptions{})
		return err
	case ev.Action == workload.Scale:
		patch := fmt.Sprintf(`{"spec":{"replicas":%d}}`, ev.Replicas)
		_, err := kube.AppsV1().Deployments(ns).Patch(ctx, ev.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
		return err
	case ev.Action == workload.Delete:
		return kube.AppsV1().Deployments(ns).Delete(ctx, ev.Name, metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationBackground)})
	}
	return fmt.Errorf("unknown event %+v", ev)
}

// meter samples the cluster once a second.
type meter struct {
	kube  kubernetes.Interface
	set   *instancetypes.Set
	scale float64 // scaled seconds per real second

	mu        sync.Mutex
	nodeSec   float64 // scaled node-seconds
	dollars   float64
	peak      int
	cur       int
	pend      int
	series    []plot.Point
	disrupted map[string]bool
	evicted   int
	created   map[types.UID]time.Time
	bound     map[types.UID]time.Duration
}

func newMeter(kube kubernetes.Interface, set *instancetypes.Set, day time.Duration) *meter {
	return &meter{kube: kube, set: set, scale: float64(24*time.Hour) / float64(day), disrupted: map[string]bool{}, created: map[types.UID]time.Time{}, bound: map[types.UID]time.Duration{}}
}

func (m *meter) nodes() int   { m.mu.Lock(); defer m.mu.Unlock(); return m.cur }
func (m *meter) pending() int { m.mu.Lock(); defer m.mu.Unlock(); return m.pend }

func (m *meter) run(ctx context.Context, start time.Time) {
	last := time.Now()
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
		now := time.Now()
		dt := now.Sub(last).Seconds()
		last = now
		nodes, err := m.kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(labels.Set{localcluster.LabelKWOKNode: "fake"}).String()})
		if err != nil {
			continue
		}
		pods, err := m.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			continue
		}
		m.mu.Lock()
		perHour := 0.0
		for _, n := range nodes.Items {
			if t, ok := m.set.Get(n.Labels[corev1.LabelInstanceTypeStable]); ok {
				perHour += t.Price.USDPerHour
			}
			if !m.disrupted[n.Name] && hasTaint(&n, disruptedTaint) {
				m.disrupted[n.Name] = true
				for _, p := range pods.Items {
					if p.Spec.NodeName == n.Name && p.DeletionTimestamp == nil && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
						m.evicted++
					}
				}
			}
		}
		m.cur = len(nodes.Items)
		m.peak = max(m.peak, m.cur)
		m.nodeSec += float64(m.cur) * dt * m.scale
		m.dollars += perHour * dt * m.scale / 3600
		m.series = append(m.series, plot.Point{X: now.Sub(start).Seconds() * m.scale / 3600, Y: float64(m.cur)})
		m.pend = 0
		for _, p := range pods.Items {
			if _, ok := m.created[p.UID]; !ok {
				m.created[p.UID] = p.CreationTimestamp.Time
			}
			if p.Spec.NodeName == "" {
				if p.DeletionTimestamp == nil {
					m.pend++
				}
				continue
			}
			if _, ok := m.bound[p.UID]; !ok {
				at := now
				for _, c := range p.Status.Conditions {
					if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionTrue && !c.LastTransitionTime.IsZero() {
						at = c.LastTransitionTime.Time
					}
				}
				m.bound[p.UID] = max(0, at.Sub(m.created[p.UID]))
			}
		}
		m.mu.Unlock()
	}
}

// karpenterEvictions counts the workload's pods that Karpenter evicted
// (its terminator's Evicted events, one per pod).
func karpenterEvictions(ctx context.Context, kube kubernetes.Interface) (int, error) {
	evs, err := kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "reason=Evicted,involvedObject.kind=Pod"})
	if err != nil {
		return 0, err
	}
	pods := map[types.UID]bool{}
	for _, e := range evs.Items {
		if e.Reason == "Evicted" && strings.HasPrefix(e.Message, "Evicted pod") {
			pods[e.InvolvedObject.UID] = true
		}
	}
	return len(pods), nil
}

func hasTaint(n *corev1.Node, key string) bool {
	for _, t := range n.Spec.Taints {
		if t.Key == key {
			return true
		}
	}
	return false
}

func (m *meter) result(policy string) *Result {
	m.mu.Lock()
	defer m.mu.Unlock()
	var waits []float64
	for _, d := range m.bound {
		waits = append(waits, d.Seconds())
	}
	sort.Float64s(waits)
	q := func(f float64) float64 {
		if len(waits) == 0 {
			return math.NaN()
		}
		return waits[min(len(waits)-1, int(math.Ceil(f*float64(len(waits))))-1)]
	}
	return &Result{
		Policy: policy, NodeHours: m.nodeSec / 3600, Dollars: m.dollars, PeakNodes: m.peak, Evictions: m.evicted,
		PendingP50: q(0.5), PendingP99: q(0.99), Pods: len(m.created), Series: m.series,
	}
}
