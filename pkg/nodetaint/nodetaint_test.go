package nodetaint

import (
	"context"
	"reflect"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

var t0 = time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)

func node(name string, age time.Duration, gpu bool, taints ...v1.Taint) *v1.Node {
	n := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(t0.Add(-age))}}
	n.Spec.Taints = taints
	n.Status.Capacity = v1.ResourceList{v1.ResourceCPU: resource.MustParse("8")}
	if gpu {
		n.Status.Capacity["nvidia.com/mig-1g.10gb"] = resource.MustParse("7")
	}
	return n
}

func TestDecide(t *testing.T) {
	const grace = 30 * time.Second
	usable := Status{Usable: true, Published: true}
	stale := Status{Published: true, Reason: "GPU topology of node n is stale: last exporter heartbeat 50s ago (limit 40s)"}
	noLease := Status{Published: true, Reason: "no heartbeat from the gpuslice exporter on node n"}
	reconf := Status{Published: true, Reason: "node n is reconfiguring MIG: pending"}
	degraded := Status{Published: true, Reason: "GPU topology of node n is degraded: XID 79"}
	missing := Status{Reason: "no GPU topology published for node n"}
	startup := Taint("")
	for _, tc := range []struct {
		name   string
		node   *v1.Node
		st     Status
		action Action
		value  string
	}{
		{"CPU node never tainted", node("n", time.Hour, false), missing, Keep, ""},
		{"usable GPU node stays clean", node("n", time.Hour, true), usable, Keep, ""},
		{"usable node loses its startup taint", node("n", time.Second, true, startup), usable, Remove, ""},
		{"usable node loses the taint", node("n", time.Hour, true, Taint(ReasonStale)), usable, Remove, ""},
		{"stale heartbeat", node("n", time.Hour, true), stale, Add, ReasonStale},
		{"no lease", node("n", time.Hour, true), noLease, Add, ReasonStale},
		{"reconfiguring", node("n", time.Hour, true), reconf, Add, ReasonReconfiguring},
		{"degraded", node("n", time.Hour, true), degraded, Add, ReasonUnusable},
		{"never published, past grace", node("n", time.Minute, true), missing, Add, ReasonNoTopology},
		{"never published, young node left alone", node("n", 10*time.Second, true), missing, Keep, ""},
		{"young node keeps its startup taint", node("n", 10*time.Second, true, startup), missing, Keep, ""},
		{"startup taint gets its reason past grace", node("n", time.Minute, true, startup), missing, Add, ReasonNoTopology},
		{"same reason: no write", node("n", time.Hour, true, Taint(ReasonStale)), stale, Keep, ""},
		{"reason changes", node("n", time.Hour, true, Taint(ReasonStale)), reconf, Add, ReasonReconfiguring},
		{"published topology, no GPU resources yet", node("n", time.Hour, false), stale, Add, ReasonStale},
		{"our taint marks a GPU node", node("n", time.Hour, false, startup), missing, Add, ReasonNoTopology},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, v := Decide(tc.node, tc.st, t0, grace)
			if a != tc.action || v != tc.value {
				t.Errorf("Decide = %s %q, want %s %q", a, v, tc.action, tc.value)
			}
		})
	}
}

func TestApply(t *testing.T) {
	other := v1.Taint{Key: "nvidia.com/gpu", Effect: v1.TaintEffectNoSchedule}
	now := metav1.NewTime(t0)
	for _, tc := range []struct {
		name    string
		in      []v1.Taint
		action  Action
		reason  string
		want    []v1.Taint
		changed bool
	}{
		{"add to none", nil, Add, ReasonStale, []v1.Taint{Taint(ReasonStale)}, true},
		{"add keeps others", []v1.Taint{other}, Add, ReasonStale, []v1.Taint{other, Taint(ReasonStale)}, true},
		{"update value in place", []v1.Taint{Taint(""), other}, Add, ReasonStale, []v1.Taint{Taint(ReasonStale), other}, true},
		{"same: unchanged", []v1.Taint{Taint(ReasonStale)}, Add, ReasonStale, []v1.Taint{Taint(ReasonStale)}, false},
		{"duplicate dropped", []v1.Taint{Taint(ReasonStale), Taint("")}, Add, ReasonStale, []v1.Taint{Taint(ReasonStale)}, true},
		{"NoExecute effect corrected", []v1.Taint{{Key: Key, Value: ReasonStale, Effect: v1.TaintEffectNoExecute, TimeAdded: &now}}, Add, ReasonStale, []v1.Taint{Taint(ReasonStale)}, true},
		{"remove", []v1.Taint{other, Taint(ReasonStale)}, Remove, "", []v1.Taint{other}, true},
		{"remove absent", []v1.Taint{other}, Remove, "", []v1.Taint{other}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, changed := apply(tc.in, tc.action, tc.reason)
			if !reflect.DeepEqual(got, tc.want) || changed != tc.changed {
				t.Errorf("apply = %v %v, want %v %v", got, changed, tc.want, tc.changed)
			}
		})
	}
}

// The controller taints a node when its status turns unusable (with no
// event: the resync finds it), leaves other taints alone, and untaints it
// when the node recovers; CPU nodes are never touched.
func TestControllerTaintsAndUntaints(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	gpu := node("gpu-1", time.Hour, true, v1.Taint{Key: "nvidia.com/gpu", Effect: v1.TaintEffectNoSchedule})
	cpu := node("cpu-1", time.Hour, false)
	client := fake.NewClientset(gpu, cpu)
	factory := informers.NewSharedInformerFactory(client, 0)

	var mu sync.Mutex
	status := map[string]Status{"gpu-1": {Usable: true, Published: true}}
	set := func(n string, s Status) { mu.Lock(); status[n] = s; mu.Unlock() }
	c, err := New(Options{
		Client: client, Nodes: factory.Core().V1().Nodes(), Grace: time.Minute, Resync: 50 * time.Millisecond,
		Now: func() time.Time { return t0 },
		Status: func(n string) Status {
			mu.Lock()
			defer mu.Unlock()
			return status[n]
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	factory.Start(ctx.Done())
	go c.Run(ctx)

	waitTaints := func(name string, want []v1.Taint) {
		t.Helper()
		var got []v1.Taint
		err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 5*time.Second, true, func(ctx context.Context) (bool, error) {
			n, err := client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			got = n.Spec.Taints
			return reflect.DeepEqual(got, want), nil
		})
		if err != nil {
			t.Fatalf("node %s taints %v, want %v", name, got, want)
		}
	}
	gpuTaint := v1.Taint{Key: "nvidia.com/gpu", Effect: v1.TaintEffectNoSchedule}
	set("gpu-1", Status{Published: true, Reason: "GPU topology of node gpu-1 is stale: last exporter heartbeat 41s ago (limit 40s)"})
	waitTaints("gpu-1", []v1.Taint{gpuTaint, Taint(ReasonStale)})
	set("gpu-1", Status{Usable: true, Published: true})
	c.Enqueue("gpu-1")
	waitTaints("gpu-1", []v1.Taint{gpuTaint})
	// The CPU node is judged on every resync and never written.
	updates := 0
	for _, a := range client.Actions() {
		u, ok := a.(k8stesting.UpdateAction)
		if !ok || a.GetResource().Resource != "nodes" {
			continue
		}
		updates++
		if n, ok := u.GetObject().(*v1.Node); !ok || n.Name != "gpu-1" {
			t.Errorf("unexpected node update: %v", u.GetObject())
		}
	}
	if updates != 2 {
		t.Errorf("%d node updates, want 2 (taint, untaint): no write when nothing changes", updates)
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	client := fake.NewClientset()
	nodes := informers.NewSharedInformerFactory(client, 0).Core().V1().Nodes()
	st := func(string) Status { return Status{} }
	for name, o := range map[string]Options{
		"no client":      {Nodes: nodes, Status: st, Resync: time.Second},
		"no informer":    {Client: client, Status: st, Resync: time.Second},
		"no status":      {Client: client, Nodes: nodes, Resync: time.Second},
		"zero resync":    {Client: client, Nodes: nodes, Status: st},
		"negative grace": {Client: client, Nodes: nodes, Status: st, Resync: time.Second, Grace: -time.Second},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
