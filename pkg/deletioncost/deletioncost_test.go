package deletioncost

import (
	"context"
	"math"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"

	"github.com/gpuslice/gpuslice/pkg/assignment"
)

func TestCost(t *testing.T) {
	for _, tc := range []struct {
		fill float64
		want int
	}{
		{0, 0}, {-0.5, 0}, {math.NaN(), 0}, {0.024, 0}, {0.025, 50}, {0.1, 100},
		{0.5, 500}, {3.0 / 7, 450}, {0.974, 950}, {0.976, 1000}, {1, 1000}, {1.3, 1000},
	} {
		if got := Cost(tc.fill); got != tc.want {
			t.Errorf("Cost(%v) = %d, want %d", tc.fill, got, tc.want)
		}
	}
	if got := Fill(3, 8); got != 0.375 {
		t.Errorf("Fill(3, 8) = %v", got)
	}
	if got := Fill(1, 0); got != 0 {
		t.Errorf("Fill(1, 0) = %v, want 0 (no capacity)", got)
	}
}

func TestOurs(t *testing.T) {
	for v, want := range map[string]bool{
		"0": true, "50": true, "1000": true, "450": true,
		"": false, "-50": false, "1050": false, "120": false, "abc": false, "0050": false, "+50": false, "100000": false,
	} {
		if got := Ours(v); got != want {
			t.Errorf("Ours(%q) = %v, want %v", v, got, want)
		}
	}
}

func rsPod(name, node string, ann map[string]string) *v1.Pod {
	a := map[string]string{assignment.Annotation: `{"node":"` + node + `"}`}
	for k, v := range ann {
		a[k] = v
	}
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: "ns", Name: name, Annotations: a,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "rs", UID: "rs-uid", Controller: ptr.To(true)}},
		},
		Spec: v1.PodSpec{NodeName: node},
	}
}

func TestDecide(t *testing.T) {
	unbound := rsPod("a", "", nil)
	noAssignment := rsPod("a", "n1", nil)
	delete(noAssignment.Annotations, assignment.Annotation)
	job := rsPod("a", "n1", nil)
	job.OwnerReferences[0].Kind = "Job"
	job.OwnerReferences[0].APIVersion = "batch/v1"
	notController := rsPod("a", "n1", nil)
	notController.OwnerReferences[0].Controller = nil
	terminating := rsPod("a", "n1", nil)
	terminating.DeletionTimestamp = &metav1.Time{Time: time.Unix(1, 0)}
	for _, tc := range []struct {
		name   string
		pod    *v1.Pod
		fill   float64
		known  bool
		action Action
		value  string
	}{
		{"absent: write", rsPod("a", "n1", nil), 0.3, true, Write, "300"},
		{"ours, same bucket: keep", rsPod("a", "n1", map[string]string{Annotation: "300"}), 0.31, true, Keep, "300"},
		{"ours, changed: write", rsPod("a", "n1", map[string]string{Annotation: "300"}), 0.9, true, Write, "900"},
		{"ours, emptied: write 0", rsPod("a", "n1", map[string]string{Annotation: "1000"}), 0, true, Write, "0"},
		{"foreign value: skip", rsPod("a", "n1", map[string]string{Annotation: "-7"}), 0.5, true, Skip, ""},
		{"foreign big value: skip", rsPod("a", "n1", map[string]string{Annotation: "100000"}), 0.5, true, Skip, ""},
		{"foreign odd value: skip", rsPod("a", "n1", map[string]string{Annotation: "333"}), 0.5, true, Skip, ""},
		{"node unknown: skip", rsPod("a", "n1", nil), 0.5, false, Skip, ""},
		{"unbound: skip", unbound, 0.5, true, Skip, ""},
		{"not placed by gpuslice: skip", noAssignment, 0.5, true, Skip, ""},
		{"owned by a Job: skip", job, 0.5, true, Skip, ""},
		{"owner not controller: skip", notController, 0.5, true, Skip, ""},
		{"terminating: skip", terminating, 0.5, true, Skip, ""},
	} {
		action, value := Decide(tc.pod, tc.fill, tc.known)
		if action != tc.action || value != tc.value {
			t.Errorf("%s: Decide = %v %q, want %v %q", tc.name, action, value, tc.action, tc.value)
		}
	}
}

// The controller patches exactly the pods whose cost must change, leaves
// foreign values and other pods alone, and writes nothing when nothing
// changed.
func TestControllerPatchesOnlyWhatChanged(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	job := rsPod("job", "n1", nil)
	job.OwnerReferences[0].Kind = "Job"
	client := fake.NewClientset(
		rsPod("p1", "n1", nil),
		rsPod("p2", "n1", map[string]string{Annotation: "250"}),
		rsPod("p3", "n2", map[string]string{Annotation: "100"}),
		rsPod("user", "n2", map[string]string{Annotation: "-100"}),
		job,
		rsPod("unknown", "n3", nil),
	)
	// Sync calls fill in this goroutine: no lock needed.
	fills := map[string]float64{"n1": 0.25, "n2": 0.1}
	fill := func(node string) (float64, bool) {
		f, ok := fills[node]
		return f, ok
	}
	factory := informers.NewSharedInformerFactory(client, 0)
	c, err := New(Options{Client: client, Pods: factory.Core().V1().Pods(), Fill: fill, Period: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())

	patchedPods := func() []string {
		var out []string
		for _, a := range client.Actions() {
			if p, ok := a.(k8stesting.PatchAction); ok {
				out = append(out, p.GetName())
			}
		}
		client.ClearActions()
		return out
	}
	waitCost := func(name, want string) {
		t.Helper()
		err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
			p, err := c.lister.Pods("ns").Get(name)
			return err == nil && p.Annotations[Annotation] == want, nil
		})
		if err != nil {
			p, _ := client.CoreV1().Pods("ns").Get(ctx, name, metav1.GetOptions{})
			t.Fatalf("pod %s: cost %q, want %q", name, p.Annotations[Annotation], want)
		}
	}
	client.ClearActions()

	// First pass: p1 has no cost (n1 at 25 % -> 250), p2 already has 250,
	// p3 has 100 on n2 at 10 %: only p1 is written.
	n, err := c.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := patchedPods(); n != 1 || len(got) != 1 || got[0] != "p1" {
		t.Fatalf("first sync patched %d: %v, want [p1]", n, got)
	}
	waitCost("p1", "250")

	// Nothing changed: no write.
	if n, err := c.Sync(ctx); err != nil || n != 0 {
		t.Fatalf("second sync patched %d (%v), want 0", n, err)
	}
	if got := patchedPods(); len(got) != 0 {
		t.Fatalf("second sync wrote %v", got)
	}

	// n1 fills up within its bucket: no write; n2 empties out: p3 -> 0, the
	// user's -100 stays.
	fills["n1"], fills["n2"] = 0.26, 0.0
	n, err = c.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := patchedPods(); n != 1 || len(got) != 1 || got[0] != "p3" {
		t.Fatalf("third sync patched %d: %v, want [p3]", n, got)
	}
	waitCost("p3", "0")
	for name, want := range map[string]string{"user": "-100", "job": "", "unknown": "", "p2": "250"} {
		p, err := client.CoreV1().Pods("ns").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := p.Annotations[Annotation]; got != want {
			t.Errorf("pod %s: cost %q, want %q", name, got, want)
		}
	}
}

// A cost someone wrote between the read and the patch is not overwritten:
// the patch tests the value it replaces.
func TestPatchTestsCurrentValue(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset(rsPod("p", "n1", map[string]string{Annotation: "500"}))
	factory := informers.NewSharedInformerFactory(client, 0)
	c, err := New(Options{Client: client, Pods: factory.Core().V1().Pods(), Fill: func(string) (float64, bool) { return 0, true }, Period: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	stale := rsPod("p", "n1", map[string]string{Annotation: "500"})
	user := stale.DeepCopy()
	user.Annotations[Annotation] = "-1"
	if _, err := client.CoreV1().Pods("ns").Update(ctx, user, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.patch(ctx, stale, "0"); err == nil || !isTestFailed(err) {
		t.Fatalf("patch over a changed value: err %v, want a failed test operation", err)
	}
	p, _ := client.CoreV1().Pods("ns").Get(ctx, "p", metav1.GetOptions{})
	if got := p.Annotations[Annotation]; got != "-1" {
		t.Fatalf("cost %q, want the user's -1", got)
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	client := fake.NewClientset()
	pods := informers.NewSharedInformerFactory(client, 0).Core().V1().Pods()
	fill := func(string) (float64, bool) { return 0, true }
	for name, o := range map[string]Options{
		"no client": {Pods: pods, Fill: fill, Period: time.Second},
		"no pods":   {Client: client, Fill: fill, Period: time.Second},
		"no fill":   {Client: client, Pods: pods, Period: time.Second},
		"no period": {Client: client, Pods: pods, Fill: fill},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
