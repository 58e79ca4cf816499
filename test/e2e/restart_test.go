package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/gpuslice/gpuslice/pkg/localcluster"
)

// TestAPIServerRestartScheduleAndExportersRecover kills kube-apiserver
// (twice, the second time after compacting etcd, so that every watch must
// relist: "too old resource version") and etcd (once) mid-run, with pods arriving before and after. The
// scheduler and the exporters must reconnect and relist on their own: a pod
// created after the restart is bound, every exporter renews its Lease
// again, and once the pods settle the end-to-end invariants hold (the
// scheduler's cache converged: no device double-booked, no pending pod that
// fits).
func TestAPIServerRestartScheduleAndExportersRecover(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts the control plane")
	}
	start := time.Now()
	e := newEnv(t, 7)
	ctx, cp := e.ctx, e.cp
	e.config = localcluster.SchedulerConfig(cp.KubeconfigPath(), heartbeatTimeout)
	e.startScheduler()
	defer func() { e.sched.Stop() }()
	e.churn(40, 0)
	e.settle()
	e.check("before the restarts")

	type row struct {
		what                        string
		pods, bound                 int
		down, probeBound, heartbeat time.Duration
		converged                   time.Duration // settled to invariants holding
	}
	var rows []row
	// A resource version from before the restarts: once etcd is compacted
	// and the API server restarted, a watch resumed from it is refused.
	before, err := e.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i, what := range []string{"kube-apiserver", "kube-apiserver (etcd compacted)", "etcd"} {
		e.churn(20, 6)
		time.Sleep(300 * time.Millisecond) // the scheduler is placing them
		compacted := strings.Contains(what, "compacted")
		if compacted {
			rev, err := cp.CompactEtcd(ctx)
			if err != nil {
				t.Fatalf("compacting etcd: %v", err)
			}
			t.Logf("etcd compacted at revision %d", rev)
		}
		t0 := time.Now()
		rctx, rcancel := context.WithTimeout(ctx, time.Minute)
		var err error
		if what == "etcd" {
			err = cp.RestartEtcd(rctx)
		} else {
			err = cp.RestartAPIServer(rctx)
		}
		rcancel()
		if err != nil {
			t.Fatalf("restarting %s: %v", what, err)
		}
		r := row{what: what, down: time.Since(t0)}
		if compacted {
			// Every watch of the scheduler and the exporters resumed from a
			// version the new API server no longer serves: they had to
			// relist ("too old resource version").
			w, err := e.kube.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{ResourceVersion: before.ResourceVersion})
			if err == nil {
				ev, ok := <-w.ResultChan()
				w.Stop()
				if st, isStatus := ev.Object.(*metav1.Status); !ok || ev.Type != watch.Error || !isStatus || st.Code != http.StatusGone {
					t.Fatalf("a watch from resource version %s after the compaction got %v %v; want 410 Gone", before.ResourceVersion, ev.Type, ev.Object)
				}
			} else if !apierrors.IsGone(err) && !apierrors.IsResourceExpired(err) {
				t.Fatalf("a watch from resource version %s after the compaction: %v; want 410 Gone", before.ResourceVersion, err)
			}
		}
		// A pod created now must be bound: the scheduler's watches
		// reconnected (and relisted if their resource version expired).
		probe := gpuPod(fmt.Sprintf("probe-%d", i), nil)
		e.create(probe)
		if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			p, err := e.kube.CoreV1().Pods(ns).Get(ctx, probe.Name, metav1.GetOptions{})
			return err == nil && p.Spec.NodeName != "", nil
		}); err != nil {
			t.Fatalf("after restarting %s: pod %s not bound within a minute", what, probe.Name)
		}
		r.probeBound = time.Since(t0)
		// Every exporter renews its Lease again.
		if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			leases, err := e.kube.CoordinationV1().Leases(localcluster.LeaseNamespace).List(ctx, metav1.ListOptions{})
			if err != nil {
				return false, nil
			}
			renewed := 0
			for _, l := range leases.Items {
				if _, ours := e.nodes[l.Name]; ours && l.Spec.RenewTime != nil && l.Spec.RenewTime.After(t0.Add(r.down)) {
					renewed++
				}
			}
			return renewed == len(e.nodes), nil
		}); err != nil {
			t.Fatalf("after restarting %s: not every exporter renewed its Lease within a minute", what)
		}
		r.heartbeat = time.Since(t0)
		e.churn(15, 5)
		e.settle()
		// client-go retries each failed watch on its own backoff (up to 30 s,
		// jittered, longer after a second restart within two minutes): a
		// pod the scheduler turned away on a view that lagged must be bound
		// once the views catch up, within 90 s.
		r.converged = e.checkWithin(fmt.Sprintf("after restart %d (%s)", i+1, what), 90*time.Second)
		list, err := e.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		r.pods = len(list.Items)
		for _, p := range list.Items {
			if p.Spec.NodeName != "" || p.Status.Phase == corev1.PodRunning {
				r.bound++
			}
		}
		rows = append(rows, r)
	}
	var tbl strings.Builder
	fmt.Fprintf(&tbl, "| restart | pods | bound | double-booked | lost | down (kill to ready) | new pod bound | all exporters renewed | invariants after settling |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, r := range rows {
		fmt.Fprintf(&tbl, "| %s | %d | %d | 0 | 0 | %s | %s | %s | %s |\n", r.what, r.pods, r.bound, r.down.Round(100*time.Millisecond), r.probeBound.Round(100*time.Millisecond), r.heartbeat.Round(100*time.Millisecond), r.converged.Round(100*time.Millisecond))
	}
	t.Logf("control-plane restarts (times from the kill), %s in all; double-booked and lost are asserted by the invariants:\n%s", time.Since(start).Round(time.Second), tbl.String())
}
