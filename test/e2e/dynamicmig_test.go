package e2e

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/record"

	"github.com/gpuslice/gpuslice/pkg/localcluster"
	"github.com/gpuslice/gpuslice/pkg/localcluster/controlplane"
	"github.com/gpuslice/gpuslice/pkg/repartition"
	"github.com/gpuslice/gpuslice/pkg/repartition/controller"
	"github.com/gpuslice/gpuslice/pkg/topology"
	"github.com/gpuslice/gpuslice/pkg/topology/fixtures"
	"github.com/gpuslice/gpuslice/test/framework/gpucluster"
)

const dynNS = "dyn"

// lostDevices is the dynamic-MIG checker: every device a running pod was
// given must still exist on its node (a GPU rebuilt under a pod would have
// destroyed it), and no MIG manager run may have met a device in use.
func lostDevices(ctx context.Context, nodes map[string]*localcluster.SimNode, managers map[string]*localcluster.FakeMIGManager) []string {
	var problems []string
	names := make([]string, 0, len(nodes))
	for n := range nodes {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		sn := nodes[name]
		topo, err := sn.Topology()
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", name, err))
			continue
		}
		exists := map[string]bool{}
		for _, g := range topo.GPUs {
			for _, in := range g.Instances {
				exists[in.DeviceID] = true
			}
		}
		pods, _ := sn.Kubelet.List(ctx)
		for _, p := range pods {
			for _, c := range p.Containers {
				for _, d := range c.Devices {
					for _, id := range d.DeviceIDs {
						base, _, _ := strings.Cut(id, topology.ReplicaSeparator)
						if strings.HasPrefix(base, "MIG-") && !exists[base] {
							problems = append(problems, fmt.Sprintf("%s: pod %s/%s lost its device %s (%s)", name, p.Namespace, p.Name, id, d.Resource))
						}
					}
				}
			}
		}
		if m := managers[name]; m != nil {
			for _, r := range m.Runs() {
				if strings.Contains(r.Error, "in use") {
					problems = append(problems, fmt.Sprintf("%s: MIG manager run %s met a device in use: %s", name, r.Config, r.Error))
				}
			}
		}
	}
	return problems
}

func dynPod(name, profile string) *corev1.Pod {
	q := corev1.ResourceList{corev1.ResourceName(topology.MIGResourceName(profile)): resource.MustParse("1"), corev1.ResourceCPU: resource.MustParse("10m")}
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: dynNS, Name: name},
		Spec: corev1.PodSpec{SchedulerName: "gpuslice-binpack", Containers: []corev1.Container{{Name: "main", Image: "pause",
			Resources: corev1.ResourceRequirements{Limits: q, Requests: q}}}}}
}

// waitBound waits until every pod of the namespace runs.
func waitBound(t *testing.T, ctx context.Context, kube kubernetes.Interface, c *controller.Controller, phase string, timeout time.Duration) {
	t.Helper()
	var last string
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		l, err := kube.CoreV1().Pods(dynNS).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		var waiting []string
		for _, p := range l.Items {
			if p.DeletionTimestamp == nil && p.Status.Phase != corev1.PodRunning {
				waiting = append(waiting, p.Name+" "+localcluster.Unschedulable(&p))
			}
		}
		last = strings.Join(waiting, "; ")
		return len(waiting) == 0, nil
	})
	if err != nil {
		t.Fatalf("phase %s: pods not all running: %v (waiting: %s; controller %+v)", phase, err, last, c.Stats())
	}
}

func deleteAll(t *testing.T, ctx context.Context, kube kubernetes.Interface, prefix string) {
	t.Helper()
	l, err := kube.CoreV1().Pods(dynNS).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range l.Items {
		if strings.HasPrefix(p.Name, prefix) {
			_ = kube.CoreV1().Pods(dynNS).Delete(ctx, p.Name, *metav1.NewDeleteOptions(0))
		}
	}
	_ = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
		l, err := kube.CoreV1().Pods(dynNS).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		for _, p := range l.Items {
			if strings.HasPrefix(p.Name, prefix) {
				return false, nil
			}
		}
		return true, nil
	})
}

// TestDynamicMIGPhases: demand shifts in phases (many 1g → 3g and 7g →
// mixed → 1g again) on H100 nodes whose layouts the repartition controller
// asks the fake MIG manager for, with the real scheduler placing the pods.
// After each phase every pod runs, no pod lost a device, and no node was
// reconfigured more than once in the phase.
func TestDynamicMIGPhases(t *testing.T) {
	gc := gpucluster.Start(t, controlplane.Options{}, dynNS, "gpu-operator")
	cp, ctx, kube, gpu := gc.CP, gc.Ctx, gc.Kube, gc.GPU
	var err error
	ones := []string{"1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb"}
	nodes := map[string]*localcluster.SimNode{}
	managers := map[string]*localcluster.FakeMIGManager{}
	for i := range 3 {
		name := fmt.Sprintf("h100-%d", i)
		sn, err := localcluster.StartSimNode(ctx, kube, gpu, fixtures.Spec{Name: name, Product: "NVIDIA H100 80GB HBM3", GPUs: 2, MIG: ones},
			localcluster.SimOptions{HeartbeatInterval: time.Second, PollInterval: 200 * time.Millisecond, Resync: 5 * time.Second, Seed: int64(i)})
		if err != nil {
			t.Fatal(err)
		}
		nodes[name] = sn
		managers[name] = sn.StartMIGManager(ctx, localcluster.MIGManagerOptions{RunTime: 500 * time.Millisecond, PluginDelay: 500 * time.Millisecond})
	}
	sched, err := localcluster.StartScheduler(ctx, t.TempDir(), localcluster.SchedulerConfig(cp.KubeconfigPath(), heartbeatTimeout))
	if err != nil {
		t.Fatal(err)
	}
	defer sched.Stop()
	pc := repartition.DefaultConfig()
	pc.MinDemandAge, pc.MinGPUInterval, pc.MaxNodesInFlight = time.Second, 5*time.Second, 3
	// Pods of a phase are created one by one: a node rebuilt for the first
	// ones is not rebuilt again GPU by GPU for the later ones.
	pc.MinNodeInterval = 20 * time.Second
	rec := record.NewFakeRecorder(1000)
	c, err := controller.New(kube, gpu, controller.Options{
		ConfigMapNamespace: "gpu-operator", ConfigMapName: "custom-mig-parted-config", Nodes: labels.Everything(), SchedulerNames: []string{"gpuslice-binpack"},
		Window: 2 * time.Second, Propagation: 300 * time.Millisecond, Timeout: 30 * time.Second, Planner: pc, Recorder: rec,
	})
	if err != nil {
		t.Fatal(err)
	}
	go c.Run(ctx, 200*time.Millisecond)

	type phase struct {
		name   string
		remove string
		pods   map[string]int // profile -> count
	}
	phases := []phase{
		{name: "inference", pods: map[string]int{"1g.10gb": 20}},
		{name: "training", remove: "inference", pods: map[string]int{"3g.40gb": 4, "7g.80gb": 2}},
		{name: "mixed", remove: "training-7g", pods: map[string]int{"1g.10gb": 6, "2g.20gb": 2}},
		{name: "inference-again", remove: "", pods: map[string]int{"1g.10gb": 26}},
	}
	for _, ph := range phases {
		start := time.Now()
		if ph.remove != "" {
			deleteAll(t, ctx, kube, ph.remove)
		}
		if ph.name == "inference-again" {
			deleteAll(t, ctx, kube, "training")
			deleteAll(t, ctx, kube, "mixed-2g")
		}
		profiles := make([]string, 0, len(ph.pods))
		for p := range ph.pods {
			profiles = append(profiles, p)
		}
		sort.Strings(profiles)
		for _, p := range profiles {
			kind := strings.SplitN(p, ".", 2)[0]
			for i := range ph.pods[p] {
				if _, err := kube.CoreV1().Pods(dynNS).Create(ctx, dynPod(fmt.Sprintf("%s-%s-%d", ph.name, kind, i), p), metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
		}
		waitBound(t, ctx, kube, c, ph.name, 2*time.Minute)
		if problems := lostDevices(ctx, nodes, managers); len(problems) > 0 {
			t.Fatalf("phase %s:\n%s", ph.name, strings.Join(problems, "\n"))
		}
		runs := map[string]int{}
		for name, m := range managers {
			for _, r := range m.Runs() {
				if r.Started.After(start) {
					runs[name]++
					if r.State != "success" {
						t.Errorf("phase %s: %s run %s ended %s: %s", ph.name, name, r.Config, r.State, r.Error)
					}
				}
			}
			if runs[name] > 1 {
				t.Errorf("phase %s: node %s reconfigured %d times", ph.name, name, runs[name])
			}
		}
		t.Logf("phase %s: all pods running after %v; MIG manager runs %v; controller %+v", ph.name, time.Since(start).Round(time.Millisecond), runs, c.Stats())
	}
	if st := c.Stats(); st.Runs == 0 || st.Failed != 0 {
		t.Fatalf("controller %+v: the phases should need repartitions, none failing", st)
	}
	var events []string
	for len(rec.Events) > 0 {
		events = append(events, <-rec.Events)
	}
	if !strings.Contains(strings.Join(events, "\n"), "→ 1×7g.80gb for") {
		t.Errorf("no event for the 7g layout in:\n%s", strings.Join(events, "\n"))
	}
}

// The checker catches a pod that lost its device: a layout forced under a
// running pod (as a MIG manager ignoring allocations would) is reported.
func TestDynamicMIGCheckerCatchesLostDevice(t *testing.T) {
	gc := gpucluster.Start(t, controlplane.Options{}, dynNS)
	ctx, kube, gpu := gc.Ctx, gc.Kube, gc.GPU
	var err error
	ones := []string{"1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb"}
	sn, err := localcluster.StartSimNode(ctx, kube, gpu, fixtures.Spec{Name: "h100-x", Product: "NVIDIA H100 80GB HBM3", GPUs: 1, MIG: ones},
		localcluster.SimOptions{HeartbeatInterval: time.Second, PollInterval: 200 * time.Millisecond, Resync: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	nodes := map[string]*localcluster.SimNode{"h100-x": sn}
	p := dynPod("holder", "1g.10gb")
	p.Spec.NodeName = "h100-x"
	if _, err := kube.CoreV1().Pods(dynNS).Create(ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		l, _ := sn.Kubelet.List(ctx)
		return len(l) == 1, nil
	})
	if err != nil {
		t.Fatal("the pod never got a device")
	}
	if problems := lostDevices(ctx, nodes, nil); len(problems) != 0 {
		t.Fatalf("false alarm: %v", problems)
	}
	if err := sn.SetLayout(ctx, []string{"3g.40gb", "3g.40gb"}); err != nil {
		t.Fatal(err)
	}
	problems := lostDevices(ctx, nodes, nil)
	if len(problems) != 1 || !strings.Contains(problems[0], "pod dyn/holder lost its device") {
		t.Fatalf("checker missed the lost device: %v", problems)
	}
}
