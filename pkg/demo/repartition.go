package demo

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"

	"github.com/gpuslice/gpuslice/pkg/assignment"
	versioned "github.com/gpuslice/gpuslice/pkg/generated/clientset/versioned"
	"github.com/gpuslice/gpuslice/pkg/localcluster"
	"github.com/gpuslice/gpuslice/pkg/repartition"
	"github.com/gpuslice/gpuslice/pkg/repartition/controller"
	"github.com/gpuslice/gpuslice/pkg/topology"
)

// The third round: MIG layouts that follow demand. One node may be
// reconfigured; pods ask for a profile no layout of the cluster offers;
// gpuslice-repartitioner (pkg/repartition/controller, in-process) asks
// NVIDIA's MIG manager (simulated: localcluster.FakeMIGManager) for a new
// layout of an idle GPU, and the scheduler binds the pods once the device
// plugin advertises it.
const (
	// repartitionNode is the demo node the controller may reconfigure. No
	// sample asks for its 1g.10gb instances, so every GPU of it is idle
	// whatever the earlier rounds did: the round is the same on every run.
	repartitionNode = "a100-80gb"
	// repartitionProfile is what the round's pods ask for: the whole of an
	// A100 80GB as one instance, which its layout does not offer.
	repartitionProfile = "7g.80gb"
	// repartitionLabel selects the nodes gpuslice-repartitioner may
	// reconfigure (its --node-selector default).
	repartitionLabel, repartitionLabelValue = "gpuslice.io/repartition", "enabled"
	repartitionPods                         = 1
	// roundLabel marks the round's pods.
	roundLabel = "gpuslice.io/demo-round"
	// migOperatorNamespace holds the mig-parted ConfigMap.
	migOperatorNamespace = "gpu-operator"
)

// gpuChange is one GPU the round rebuilt, as observed.
type gpuChange struct {
	gpu      int
	from, to map[string]int
	pods     []string // the round's pods now on the GPU
	config   string   // the MIG manager run that rebuilt it
}

// repartitionResult is what the round observed.
type repartitionResult struct {
	node    nodeView
	changes []gpuChange
	// kept counts the pods of the earlier round whose devices are all
	// still there and still theirs.
	kept int
	// runs are the MIG manager's runs; stats the controller's counters.
	runs  []localcluster.MIGRun
	stats controller.Stats
}

func (r *repartitionResult) print(w io.Writer) {
	r.node.print(w)
	for _, c := range r.changes {
		noun := "pod"
		if len(c.pods) != 1 {
			noun = "pods"
		}
		fmt.Fprintf(w, "  GPU %d: repartitioned %s → %s for %d pending %s (%s) (MIG config %s)\n",
			c.gpu, topology.FormatCounts(c.from), topology.FormatCounts(c.to), len(c.pods), noun, strings.Join(c.pods, ","), c.config)
	}
	if len(r.changes) == 0 {
		fmt.Fprintf(w, "  no GPU of %s changed\n", r.node.name)
	}
	ok := 0
	for _, run := range r.runs {
		if run.State == "success" {
			ok++
		}
	}
	fmt.Fprintf(w, "(MIG manager runs: %d, %d succeeded; the %d pods placed before kept every device they held)\n", len(r.runs), ok, r.kept)
}

// repartitionPod asks for one instance of the profile under gpuslice.
func repartitionPod(i int) *corev1.Pod {
	q := corev1.ResourceList{
		corev1.ResourceName(topology.MIGResourceName(repartitionProfile)): resource.MustParse("1"),
		corev1.ResourceCPU: resource.MustParse("100m"),
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: fmt.Sprintf("training-7g-%d", i), Labels: map[string]string{roundLabel: "repartition"}},
		Spec: corev1.PodSpec{SchedulerName: "gpuslice-binpack", Containers: []corev1.Container{{
			Name: "train", Image: "nvcr.io/nvidia/cuda:12.4.1-base-ubuntu22.04", Command: []string{"sleep", "infinity"},
			Resources: corev1.ResourceRequirements{Limits: q, Requests: q},
		}}},
	}
}

// runRepartition runs the round on top of the pods already placed.
func runRepartition(ctx context.Context, w io.Writer, kube kubernetes.Interface, gpu versioned.Interface, nodes map[string]*localcluster.SimNode) (*repartitionResult, error) {
	sn := nodes[repartitionNode]
	if sn == nil {
		return nil, fmt.Errorf("demo node %s missing", repartitionNode)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	before, err := sn.Topology()
	if err != nil {
		return nil, err
	}
	placed, err := heldDevices(ctx, nodes)
	if err != nil {
		return nil, err
	}
	if err := localcluster.EnsureNamespace(ctx, kube, migOperatorNamespace); err != nil {
		return nil, err
	}
	patch := fmt.Sprintf(`{"metadata":{"labels":{%q:%q}}}`, repartitionLabel, repartitionLabelValue)
	if _, err := kube.CoreV1().Nodes().Patch(ctx, repartitionNode, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		return nil, err
	}
	mgr := sn.StartMIGManager(ctx, localcluster.MIGManagerOptions{ConfigMapNamespace: migOperatorNamespace,
		Propagation: 100 * time.Millisecond, RunTime: 500 * time.Millisecond, PluginDelay: 500 * time.Millisecond})

	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kube.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	pc := repartition.DefaultConfig()
	pc.MinDemandAge, pc.MinGPUInterval, pc.MaxNodesInFlight = time.Second, 5*time.Second, 1
	window := time.Second
	c, err := controller.New(kube, gpu, controller.Options{
		ConfigMapNamespace: migOperatorNamespace, ConfigMapName: "custom-mig-parted-config",
		Nodes:          labels.SelectorFromSet(labels.Set{repartitionLabel: repartitionLabelValue}),
		SchedulerNames: []string{"gpuslice-binpack"},
		Window:         window, Propagation: 300 * time.Millisecond, Timeout: 30 * time.Second, Planner: pc,
		Recorder: broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "gpuslice-repartitioner"}),
	})
	if err != nil {
		return nil, err
	}
	go c.Run(ctx, 200*time.Millisecond)

	fmt.Fprintf(w, "▶ %s may be reconfigured (label %s=%s): NVIDIA's MIG manager (simulated) runs on it, gpuslice-repartitioner in-process (planning window %v)\n",
		repartitionNode, repartitionLabel, repartitionLabelValue, window)
	fmt.Fprintf(w, "▶ %d pod asks for %s under gpuslice-binpack; no GPU's layout offers it (%s: %s)\n",
		repartitionPods, topology.MIGResourceName(repartitionProfile), repartitionNode, idleText(before, placed.physical(repartitionNode)))
	var names []string
	for i := range repartitionPods {
		p := repartitionPod(i)
		if _, err := kube.CoreV1().Pods("demo").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			return nil, err
		}
		names = append(names, p.Name)
	}
	if err := followRepartition(ctx, w, kube, c, names); err != nil {
		return nil, err
	}

	list, err := kube.CoreV1().Pods("demo").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	view, err := observe(nodes, list)
	if err != nil {
		return nil, err
	}
	res := &repartitionResult{runs: mgr.Runs(), stats: c.Stats()}
	for _, nv := range view.nodes {
		if nv.name == repartitionNode {
			res.node = nv
		}
	}
	after, err := sn.Topology()
	if err != nil {
		return nil, err
	}
	if res.changes, err = changes(before, after, res.node, res.runs, names); err != nil {
		return nil, err
	}
	if res.kept, err = keptDevices(ctx, nodes, placed, res.runs); err != nil {
		return nil, err
	}
	return res, nil
}

// followRepartition prints what happens until the pods run and no MIG
// manager run is in flight: the scheduler's MIG demand, the controller's
// events, the node's MIG config labels and allocatable, the pods' binding.
func followRepartition(ctx context.Context, w io.Writer, kube kubernetes.Interface, c *controller.Controller, pods []string) error {
	start := time.Now()
	say := func(f string, a ...any) {
		fmt.Fprintf(w, "  [%4.1fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(f, a...))
	}
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	watches := []struct {
		name string
		open func() (watch.Interface, error)
		w    watch.Interface
	}{
		{name: "node", open: func() (watch.Interface, error) {
			return kube.CoreV1().Nodes().Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + repartitionNode})
		}},
		{name: "pods", open: func() (watch.Interface, error) {
			return kube.CoreV1().Pods("demo").Watch(ctx, metav1.ListOptions{LabelSelector: roundLabel})
		}},
		{name: "events", open: func() (watch.Interface, error) {
			return kube.CoreV1().Events("").Watch(ctx, metav1.ListOptions{})
		}},
	}
	for i := range watches {
		wi, err := watches[i].open()
		if err != nil {
			return err
		}
		watches[i].w = wi
		defer func() { watches[i].w.Stop() }()
	}
	resName := corev1.ResourceName(topology.MIGResourceName(repartitionProfile))
	var node nodeProgress
	podState := map[string]string{}
	seenEvent := map[types.UID]bool{}
	finished := 0 // Repartitioned and RepartitionFailed events seen
	running := map[string]bool{}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		var ev watch.Event
		var ok bool
		from := -1
		select {
		case <-ctx.Done():
			var waiting []string
			for _, p := range pods {
				if !running[p] {
					waiting = append(waiting, p+" "+podState[p])
				}
			}
			return fmt.Errorf("MIG layouts that follow demand: not done after 90s (waiting: %s; controller %+v)", strings.Join(waiting, "; "), c.Stats())
		case <-tick.C:
			st := c.Stats()
			if len(running) == len(pods) && len(c.InFlight()) == 0 && finished >= st.Succeeded+st.Failed {
				return nil
			}
			continue
		case ev, ok = <-watches[0].w.ResultChan():
			from = 0
		case ev, ok = <-watches[1].w.ResultChan():
			from = 1
		case ev, ok = <-watches[2].w.ResultChan():
			from = 2
		}
		if !ok || ev.Type == watch.Error {
			// The server ended the watch: open it again (its first events
			// replay the current state, which the checks below dedupe).
			watches[from].w.Stop()
			wi, err := watches[from].open()
			if err != nil {
				return fmt.Errorf("watching %s: %w", watches[from].name, err)
			}
			watches[from].w = wi
			continue
		}
		switch o := ev.Object.(type) {
		case *corev1.Node:
			q := o.Status.Allocatable[resName]
			cur := nodeProgress{true, o.Labels[topology.MIGConfigLabel], o.Labels[topology.MIGConfigStateLabel], o.Labels[localcluster.DevicePluginDeployLabel], q.String()}
			if node.init {
				if cur.config != node.config {
					say("%s: %s=%s (MIG config asked of MIG manager)", o.Name, topology.MIGConfigLabel, cur.config)
				}
				if cur.state != node.state {
					say("%s: %s=%s", o.Name, topology.MIGConfigStateLabel, cur.state)
				}
				if cur.dp != node.dp {
					say("%s: %s=%s", o.Name, localcluster.DevicePluginDeployLabel, cur.dp)
				}
				if cur.free != node.free {
					say("%s: allocatable %s %s → %s", o.Name, resName, node.free, cur.free)
				}
			}
			node = cur
		case *corev1.Pod:
			if ev.Type == watch.Deleted {
				continue
			}
			state := "pending"
			if d, err := assignment.DemandFromPod(o); err == nil && d != nil {
				state = "pending, MIG demand " + topology.FormatCounts(d.Profiles)
			}
			if o.Spec.NodeName != "" {
				state = "bound to " + o.Spec.NodeName
			}
			if o.Status.Phase == corev1.PodRunning {
				state = "running on " + o.Spec.NodeName
				running[o.Name] = true
			}
			if state != podState[o.Name] {
				podState[o.Name] = state
				switch {
				case strings.HasPrefix(state, "pending, MIG demand"):
					say("%s: unschedulable; the scheduler records its MIG demand %s (%s)", o.Name, topology.FormatCounts(mustDemand(o)), assignment.DemandAnnotation)
				case state != "pending":
					say("%s: %s", o.Name, state)
				}
			}
		case *corev1.Event:
			if o.Source.Component != "gpuslice-repartitioner" || seenEvent[o.UID] {
				continue
			}
			seenEvent[o.UID] = true
			if o.Reason == "Repartitioned" || o.Reason == "RepartitionFailed" {
				finished++
			}
			say("event %s on %s %s: %s", o.Reason, strings.ToLower(o.InvolvedObject.Kind), o.InvolvedObject.Name, o.Message)
		}
	}
}

// nodeProgress is what the round follows of the node.
type nodeProgress struct {
	init                    bool
	config, state, dp, free string
}

func mustDemand(p *corev1.Pod) map[string]int {
	d, err := assignment.DemandFromPod(p)
	if err != nil || d == nil {
		return nil
	}
	return d.Profiles
}

// counts are the GPU's instances per profile.
func counts(g *topology.GPU) map[string]int {
	out := map[string]int{}
	for _, in := range g.Instances {
		out[in.Profile]++
	}
	return out
}

// idleText says which GPUs of the node hold no device.
func idleText(t *topology.Node, held map[string]bool) string {
	var idle []string
	for i := range t.GPUs {
		g := &t.GPUs[i]
		used := held[g.UUID]
		for _, in := range g.Instances {
			used = used || held[in.DeviceID]
		}
		if !used {
			idle = append(idle, fmt.Sprint(g.Index))
		}
	}
	switch len(idle) {
	case 0:
		return "no GPU idle"
	case len(t.GPUs):
		return fmt.Sprintf("all %d GPUs idle", len(idle))
	case 1:
		return "GPU " + idle[0] + " idle"
	}
	return "GPUs " + strings.Join(idle, ", ") + " idle"
}

// changes compares the node's layout before and after the round, GPU by
// GPU, and names the MIG manager run that rebuilt each changed GPU.
func changes(before, after *topology.Node, view nodeView, runs []localcluster.MIGRun, roundPods []string) ([]gpuChange, error) {
	prev := map[int]*topology.GPU{}
	for i := range before.GPUs {
		prev[before.GPUs[i].Index] = &before.GPUs[i]
	}
	ours := map[string]bool{}
	for _, p := range roundPods {
		ours[p] = true
	}
	var out []gpuChange
	for i := range after.GPUs {
		g := &after.GPUs[i]
		p, ok := prev[g.Index]
		if !ok {
			return nil, fmt.Errorf("GPU %d of %s appeared during the round", g.Index, after.Name)
		}
		from, to := counts(p), counts(g)
		if topology.FormatCounts(from) == topology.FormatCounts(to) {
			continue
		}
		ch := gpuChange{gpu: g.Index, from: from, to: to}
		for _, run := range runs {
			for _, idx := range run.Changed {
				if idx == g.Index && run.State == "success" {
					ch.config = run.Config
				}
			}
		}
		if ch.config == "" {
			return nil, fmt.Errorf("GPU %d of %s changed (%s → %s) without a successful MIG manager run", g.Index, after.Name, topology.FormatCounts(from), topology.FormatCounts(to))
		}
		for _, gv := range view.gpus {
			if gv.index != g.Index {
				continue
			}
			for _, s := range gv.slots {
				for _, pod := range s.pods {
					if ours[pod] {
						ch.pods = appendUnique(ch.pods, pod)
					}
				}
			}
		}
		sort.Strings(ch.pods)
		out = append(out, ch)
	}
	return out, nil
}

// held are, per node, the devices its kubelet gave each pod
// (namespace/name -> device IDs as given).
type held map[string]map[string][]string

// heldDevices reads what the kubelets gave the pods placed so far.
func heldDevices(ctx context.Context, nodes map[string]*localcluster.SimNode) (held, error) {
	out := held{}
	for name, sn := range nodes {
		pods, err := sn.Kubelet.List(ctx)
		if err != nil {
			return nil, err
		}
		out[name] = map[string][]string{}
		for _, p := range pods {
			key := p.Namespace + "/" + p.Name
			for _, c := range p.Containers {
				for _, d := range c.Devices {
					out[name][key] = append(out[name][key], d.DeviceIDs...)
				}
			}
		}
	}
	return out, nil
}

// physical are the node's devices held by any pod (replica suffixes cut).
func (h held) physical(node string) map[string]bool {
	out := map[string]bool{}
	for _, ids := range h[node] {
		for _, id := range ids {
			base, _, _ := topology.SplitReplicaID(id)
			out[base] = true
		}
	}
	return out
}

// keptDevices checks that every pod placed before the round still holds the
// devices it held, that they still exist on the node (a GPU rebuilt under
// a pod destroys them), and that no MIG manager run met a device in use;
// it returns how many pods it checked.
func keptDevices(ctx context.Context, nodes map[string]*localcluster.SimNode, before held, runs []localcluster.MIGRun) (int, error) {
	for _, r := range runs {
		if strings.Contains(r.Error, "in use") {
			return 0, fmt.Errorf("MIG manager run %s met a device in use: %s", r.Config, r.Error)
		}
	}
	now, err := heldDevices(ctx, nodes)
	if err != nil {
		return 0, err
	}
	kept := 0
	for name, sn := range nodes {
		topo, err := sn.Topology()
		if err != nil {
			return 0, err
		}
		exists := map[string]bool{}
		for _, g := range topo.GPUs {
			exists[g.UUID] = true
			for _, in := range g.Instances {
				exists[in.DeviceID] = true
			}
		}
		for pod, ids := range before[name] {
			if len(ids) == 0 {
				continue
			}
			if strings.Join(now[name][pod], ",") != strings.Join(ids, ",") {
				return 0, fmt.Errorf("node %s: pod %s held %v, now %v", name, pod, ids, now[name][pod])
			}
			for _, id := range ids {
				if base, _, _ := topology.SplitReplicaID(id); !exists[base] {
					return 0, fmt.Errorf("node %s: pod %s lost its device %s", name, pod, id)
				}
			}
			kept++
		}
	}
	return kept, nil
}
