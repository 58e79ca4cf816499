package autoscale

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8stypes "k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/gpuslice/gpuslice/pkg/autoscale/workload"
	"github.com/gpuslice/gpuslice/pkg/localcluster"
)

func TestSchedulerConfigAddsTaintAndDefaultProfile(t *testing.T) {
	for _, cost := range []bool{false, true} {
		c, err := schedulerConfig("/k", cost)
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(c, "taintUnusableNodes: true"); n != 2 {
			t.Errorf("taintUnusableNodes set in %d profiles, want both gpuslice profiles", n)
		}
		want := 0
		if cost {
			want = 2
		}
		if n := strings.Count(c, "deletionCost: true"); n != want {
			t.Errorf("deletion cost %v: deletionCost set in %d profiles, want %d", cost, n, want)
		}
		if !strings.HasSuffix(c, "\n- schedulerName: default-scheduler\n") {
			t.Errorf("no stock profile at the end:\n%s", c)
		}
	}
}

// Every kind of event becomes the API object it names, with the policy's
// scheduler, the request, and for Jobs the run time.
func TestApplyEvents(t *testing.T) {
	ctx := context.Background()
	kube := fake.NewClientset()
	events := []workload.Event{
		{Kind: workload.Inference, Name: "infer-0", Action: workload.Create, Replicas: 3, Resource: "nvidia.com/mig-1g.5gb", Count: 1},
		{Kind: workload.Inference, Name: "infer-0", Action: workload.Scale, Replicas: 5},
		{Kind: workload.Batch, Name: "job-0", Action: workload.Create, Replicas: 2, Resource: "nvidia.com/gpu", Count: 2, RunFor: 30 * time.Second},
		{Kind: workload.Notebook, Name: "nb-0", Action: workload.Create, Replicas: 1, Resource: "nvidia.com/gpu.shared", Count: 1},
		{Kind: workload.Notebook, Name: "nb-0", Action: workload.Delete},
	}
	for _, ev := range events {
		if err := apply(ctx, kube, "gpuslice-binpack", ev); err != nil {
			t.Fatalf("%+v: %v", ev, err)
		}
	}
	d, err := kube.AppsV1().Deployments(ns).Get(ctx, "infer-0", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *d.Spec.Replicas != 5 || d.Spec.Template.Spec.SchedulerName != "gpuslice-binpack" {
		t.Errorf("deployment: replicas %d scheduler %s", *d.Spec.Replicas, d.Spec.Template.Spec.SchedulerName)
	}
	if q := d.Spec.Template.Spec.Containers[0].Resources.Limits["nvidia.com/mig-1g.5gb"]; q.Value() != 1 {
		t.Errorf("deployment limit %v", q)
	}
	j, err := kube.BatchV1().Jobs(ns).Get(ctx, "job-0", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *j.Spec.Parallelism != 2 || j.Spec.Template.Annotations[localcluster.RunForAnnotation] != "30s" {
		t.Errorf("job: parallelism %d, annotations %v", *j.Spec.Parallelism, j.Spec.Template.Annotations)
	}
	if q := j.Spec.Template.Spec.Containers[0].Resources.Requests["nvidia.com/gpu"]; q.Value() != 2 {
		t.Errorf("job request %v", q)
	}
	if _, err := kube.AppsV1().Deployments(ns).Get(ctx, "nb-0", metav1.GetOptions{}); err == nil {
		t.Error("notebook not deleted")
	}
	if err := apply(ctx, kube, "x", workload.Event{Action: "explode"}); err == nil {
		t.Error("unknown event: no error")
	}
}

func TestResultQuantiles(t *testing.T) {
	m := newMeter(nil, nil, 24*time.Hour)
	for i := 1; i <= 100; i++ {
		m.bound[k8stypes.UID(strconv.Itoa(i))] = time.Duration(i) * time.Second
	}
	m.nodeSec = 7200
	r := m.result("p")
	if r.PendingP50 != 50 || r.PendingP99 != 99 || r.NodeHours != 2 {
		t.Errorf("p50 %v p99 %v node-h %v, want 50 99 2", r.PendingP50, r.PendingP99, r.NodeHours)
	}
}

// Evictions are counted from Karpenter's Evicted events, one per pod:
// repeated events of one pod count once, the kubelet's evictions (its own
// message) and other reasons not at all.
func TestKarpenterEvictionsCountsPodsKarpenterDrained(t *testing.T) {
	ev := func(name, pod, reason, msg string) *corev1.Event {
		return &corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Reason: reason, Message: msg,
			InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: pod, UID: k8stypes.UID(pod + "-uid")}}
	}
	kube := fake.NewSimpleClientset(
		ev("e1", "a", "Evicted", "Evicted pod: Underutilized"),
		ev("e2", "a", "Evicted", "Evicted pod: Underutilized"),
		ev("e3", "b", "Evicted", "Evicted pod: Empty"),
		ev("e4", "c", "Evicted", "The node was low on resource: memory."),
		ev("e5", "d", "Disrupted", "Evicted pod: not this reason"),
	)
	n, err := karpenterEvictions(context.Background(), kube)
	if err != nil || n != 2 {
		t.Fatalf("karpenterEvictions = %d, %v; want 2", n, err)
	}
}
