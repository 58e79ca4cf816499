package repartition

import (
	"context"
	"net/http"
	"strings"
	"sync"
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

// writeLog records the writes of the clients whose transports it wraps,
// in order.
type writeLog struct {
	mu     sync.Mutex
	writes []string
}

func (l *writeLog) wrap(next http.RoundTripper) http.RoundTripper {
	return roundTripper(func(r *http.Request) (*http.Response, error) {
		if r.Method != http.MethodGet {
			l.mu.Lock()
			l.writes = append(l.writes, r.Method+" "+r.URL.Path)
			l.mu.Unlock()
		}
		return next.RoundTrip(r)
	})
}

func (l *writeLog) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.writes...)
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// With drains off (the default) and a long propagation wait, the idle GPU
// the controller decided to change is fenced before its config is
// written: gpuslice-scheduler (the real one, in-process) turns away a pod
// created during the wait that it would otherwise put on that GPU, the
// MIG manager run succeeds, and the fence is lifted when it ends.
func TestControllerFencesGPUsItRebuilds(t *testing.T) {
	gc := gpucluster.Start(t, controlplane.Options{}, cmNS, "default")
	ctx, kube, gpu := gc.Ctx, gc.Kube, gc.GPU
	ones := []string{"1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb"}
	so := localcluster.SimOptions{HeartbeatInterval: time.Second, PollInterval: 100 * time.Millisecond, Resync: 5 * time.Second}
	sn, err := localcluster.StartSimNode(ctx, kube, gpu, fixtures.Spec{Name: "h100-a", Product: "NVIDIA H100 80GB HBM3", GPUs: 1, MIG: ones}, so)
	if err != nil {
		t.Fatal(err)
	}
	mgr := sn.StartMIGManager(ctx, localcluster.MIGManagerOptions{ConfigMapNamespace: cmNS, ConfigMapName: cmName, RunTime: 200 * time.Millisecond, PluginDelay: 300 * time.Millisecond})
	waitAllocations(t, ctx, gpu, "h100-a", 0)
	sched, err := localcluster.StartScheduler(ctx, t.TempDir(), localcluster.SchedulerConfig(gc.CP.KubeconfigPath(), 20*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer sched.Stop()
	// Two pods wait for 3g.40gb (gpuslice's "gpuslice" profile is not the
	// in-process scheduler's: they stay pending, the controller's demand).
	for i := range 2 {
		pendingPod(t, ctx, kube, "train-"+string(rune('0'+i)), "3g.40gb", true, time.Minute)
	}

	pc := repartition.DefaultConfig()
	pc.MinDemandAge = 0
	if pc.MaxDrainingGPUs != 0 {
		t.Fatalf("drains on by default (%d): this test is about fences with drains off", pc.MaxDrainingGPUs)
	}
	log := &writeLog{}
	cfg := gc.CP.Config()
	cfg.WrapTransport = log.wrap
	ckube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	const propagation = 5 * time.Second
	rec := record.NewFakeRecorder(100)
	c, err := controller.New(ckube, gpu, controller.Options{
		ConfigMapNamespace: cmNS, ConfigMapName: cmName, Nodes: labels.Everything(), SchedulerNames: []string{scheduler},
		Window: 200 * time.Millisecond, Propagation: propagation, Timeout: 30 * time.Second, Planner: pc, Recorder: rec,
	})
	if err != nil {
		t.Fatal(err)
	}

	// The controller decides to change GPU 0: the fence is written first,
	// then the config; no label during the propagation wait.
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
		if err := c.Sync(ctx); err != nil {
			return false, err
		}
		return len(c.InFlight()) == 1, nil
	})
	if err != nil {
		t.Fatalf("no run started: %v (stats %+v)", err, c.Stats())
	}
	started := time.Now()
	var writes []string
	for _, w := range log.get() {
		if strings.Contains(w, "/nodes/") || strings.Contains(w, "/configmaps") {
			writes = append(writes, w)
		}
	}
	nodePath, cmPath := "PUT /api/v1/nodes/h100-a", "/api/v1/namespaces/"+cmNS+"/configmaps"
	if len(writes) != 2 || writes[0] != nodePath || !strings.Contains(writes[1], cmPath) {
		t.Fatalf("writes %q, want the node's fence, then the ConfigMap", writes)
	}
	n, err := kube.CoreV1().Nodes().Get(ctx, "h100-a", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := drainAnnotation(t, ctx, kube, "h100-a"); v != "0" {
		t.Fatalf("drain annotation %q, want GPU 0 fenced", v)
	}
	if l, ok := n.Labels[topology.MIGConfigLabel]; ok {
		t.Fatalf("label %s set before the propagation wait", l)
	}
	if st := c.Stats(); st.Fenced != 1 || st.Draining != 0 || st.DrainsStarted != 0 {
		t.Fatalf("stats %+v", st)
	}

	// A pod the scheduler would put on GPU 0 (the node's only GPU, seven
	// free 1g.10gb) arrives during the wait: turned away by the fence. The
	// node update that fenced it went out before the config; give the
	// scheduler's node informer a moment to see it (the wait has seconds
	// left).
	time.Sleep(300 * time.Millisecond)
	q := corev1.ResourceList{corev1.ResourceName(topology.MIGResourceName("1g.10gb")): resource.MustParse("1"), corev1.ResourceCPU: resource.MustParse("10m")}
	probe := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "inference"},
		Spec: corev1.PodSpec{SchedulerName: "gpuslice-binpack", Containers: []corev1.Container{{Name: "c", Image: "x", Resources: corev1.ResourceRequirements{Limits: q, Requests: q}}}}}
	if _, err := kube.CoreV1().Pods("default").Create(ctx, probe, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var why string
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		p, err := kube.CoreV1().Pods("default").Get(ctx, "inference", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if p.Spec.NodeName != "" {
			t.Fatalf("the pod was bound to %s on a fenced GPU", p.Spec.NodeName)
		}
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.PodScheduled && cond.Status == corev1.ConditionFalse {
				why = cond.Message
			}
		}
		return why != "", nil
	})
	if err != nil {
		t.Fatalf("the pod was not turned away: %v", err)
	}
	if want := "GPU 0 is draining for a MIG layout change and the kubelet could hand out its free nvidia.com/mig-1g.10gb"; !strings.Contains(why, want) {
		t.Fatalf("turned away for %q, want %q", why, want)
	}
	if d := time.Since(started); d >= propagation {
		t.Fatalf("the pod was turned away %v after the run started, after the propagation wait of %v: not a test of the wait", d, propagation)
	}

	// The run goes on and succeeds (no device in use on GPU 0); the fence
	// is lifted when it ends.
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		if err := c.Sync(ctx); err != nil {
			return false, err
		}
		st := c.Stats()
		return st.Succeeded+st.Failed >= 1, nil
	})
	if err != nil {
		t.Fatalf("no run ended: %v (stats %+v, runs %+v)", err, c.Stats(), mgr.Runs())
	}
	if st := c.Stats(); st.Runs != 1 || st.Succeeded != 1 || st.Fenced != 0 || st.Draining != 0 {
		t.Fatalf("stats %+v (MIG manager runs %+v)", st, mgr.Runs())
	}
	if runs := mgr.Runs(); len(runs) != 1 || runs[0].State != "success" || len(runs[0].Changed) != 1 || runs[0].Changed[0] != 0 {
		t.Fatalf("MIG manager runs %+v", runs)
	}
	if v, ok := drainAnnotation(t, ctx, kube, "h100-a"); ok {
		t.Fatalf("drain annotation %q left after the run", v)
	}
	// The writes: the fence, the config, the label (then the configs
	// collected and the fence lifted when the run ends); an update retried
	// on a conflict (the fake kubelet and MIG manager update the node too)
	// is one write.
	writes = nil
	for _, w := range log.get() {
		if (strings.Contains(w, "/nodes/") || strings.Contains(w, "/configmaps")) && (len(writes) == 0 || writes[len(writes)-1] != w) {
			writes = append(writes, w)
		}
	}
	if len(writes) != 5 || writes[0] != nodePath || !strings.Contains(writes[1], cmPath) || writes[2] != nodePath || !strings.Contains(writes[3], cmPath) || writes[4] != nodePath {
		t.Fatalf("writes %q, want the fence, the config, the label, the configs collected, the fence lifted", writes)
	}
	p, err := kube.CoreV1().Pods("default").Get(ctx, "inference", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Spec.NodeName != "" {
		t.Fatalf("pod bound to %s, a node whose only GPU was rebuilt with no 1g.10gb", p.Spec.NodeName)
	}
	if ev := drainEvents(rec); strings.Contains(ev, "Draining") || strings.Contains(ev, "DrainLifted") {
		t.Fatalf("a fence reported as a drain:\n%s", ev)
	}
}
