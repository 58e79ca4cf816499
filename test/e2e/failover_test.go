package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/gpuslice/gpuslice/pkg/assignment"
	"github.com/gpuslice/gpuslice/pkg/localcluster"
	"github.com/gpuslice/gpuslice/pkg/localcluster/controlplane"
)

// The shipped manifests' leader election (manifests/scheduler/config.yaml):
// kube-scheduler's defaults for the durations.
const (
	leaseDuration = 15 * time.Second
	retryPeriod   = 2 * time.Second
)

// schedulerProc is one gpuslice-scheduler process.
type schedulerProc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

// leads reports whether the process has logged that it acquired the
// leader lease.
func (p *schedulerProc) leads() bool {
	data, err := os.ReadFile(p.log)
	return err == nil && strings.Contains(string(data), "Successfully acquired lease")
}

func (p *schedulerProc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// TestFailoverKillsTheLeader runs two gpuslice-scheduler binaries (not
// goroutines) with the shipped leader election against simulated GPU nodes,
// and kills the leader with SIGKILL mid-run, several times, while pods
// arrive and leave. The standby must take over within the lease duration
// (plus one retry period), and after each takeover no device may be
// double-booked, no pod lost (pending while it fits) or bound against the
// kubelet's will.
func TestFailoverKillsTheLeader(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the scheduler binary and runs two of them")
	}
	start := time.Now()
	root, err := controlplane.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "gpuslice-scheduler")
	build := exec.Command("go", "build", "-o", bin, "./cmd/gpuslice-scheduler")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building gpuslice-scheduler: %v\n%s", err, out)
	}
	t.Logf("gpuslice-scheduler built in %s", time.Since(start).Round(time.Second))

	e := newEnv(t, 18)
	ctx, cp := e.ctx, e.cp

	config := strings.Replace(localcluster.SchedulerConfig(cp.KubeconfigPath(), heartbeatTimeout),
		"leaderElection:\n  leaderElect: false\n",
		"leaderElection:\n  leaderElect: true\n  resourceNamespace: gpuslice-system\n  resourceName: gpuslice-scheduler\n", 1)
	if !strings.Contains(config, "leaderElect: true") {
		t.Fatal("could not turn leader election on in the scheduler configuration")
	}
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var procs []*schedulerProc
	started := 0
	startProc := func() *schedulerProc {
		t.Helper()
		started++
		p := &schedulerProc{name: fmt.Sprintf("scheduler-%d", started), log: filepath.Join(dir, fmt.Sprintf("scheduler-%d.log", started)), done: make(chan struct{})}
		f, err := os.Create(p.log)
		if err != nil {
			t.Fatal(err)
		}
		p.cmd = exec.Command(bin, "--config", cfgPath, "--secure-port", "0", "-v", "2")
		p.cmd.Stdout, p.cmd.Stderr = f, f
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { _ = p.cmd.Wait(); f.Close(); close(p.done) }()
		mu.Lock()
		procs = append(procs, p)
		mu.Unlock()
		return p
	}
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, p := range procs {
			if p.alive() {
				_ = p.cmd.Process.Kill()
				<-p.done
			}
		}
	})
	leader := func(limit time.Duration, among ...*schedulerProc) (*schedulerProc, time.Duration) {
		t.Helper()
		begin := time.Now()
		var got *schedulerProc
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, limit, true, func(context.Context) (bool, error) {
			for _, p := range among {
				if p.alive() && p.leads() {
					got = p
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			for _, p := range among {
				data, _ := os.ReadFile(p.log)
				t.Logf("%s (alive %v) log tail:\n%s", p.name, p.alive(), tail(string(data), 20))
			}
			t.Fatalf("no leader within %s", limit)
		}
		return got, time.Since(begin)
	}

	a, b := startProc(), startProc()
	lead, _ := leader(leaseDuration+30*time.Second, a, b)
	standby := a
	if lead == a {
		standby = b
	}
	t.Logf("%s leads, %s stands by", lead.name, standby.name)
	e.churn(40, 0)
	e.settle()
	e.check("before the first kill")

	type row struct {
		kill               int
		pods, bound        int
		takeover           time.Duration
		doubleBooked, lost int
	}
	var rows []row
	const kills = 3
	for k := 1; k <= kills; k++ {
		// Pods arrive, and the leader dies while it is placing them.
		e.churn(25, 8)
		time.Sleep(300 * time.Millisecond)
		if err := lead.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		<-lead.done
		killed := time.Now()
		e.churn(10, 4) // more arrive while no one leads
		next, _ := leader(leaseDuration+retryPeriod+15*time.Second, standby)
		takeover := time.Since(killed)
		if next != standby {
			t.Fatalf("kill %d: %s took over, want the standby %s", k, next.name, standby.name)
		}
		// The killed leader does not release its lease: the standby may
		// take it only once leaseDuration has passed since it last saw the
		// lease renewed. It reads the lease every retryPeriod, jittered by
		// up to 1.2 (so 2 to 4.4 s apart): it sees the last renewal up to
		// one such period late and the expiry up to one period late. So
		// from the kill: at most leaseDuration + 2 × 2.2 × retryPeriod,
		// plus our polling of its log.
		if limit := leaseDuration + 2*retryPeriod*22/10 + time.Second; takeover > limit {
			t.Errorf("kill %d: the standby took over after %s, more than %s (lease duration %s + two jittered retry periods of %s)", k, takeover.Round(100*time.Millisecond), limit, leaseDuration, retryPeriod)
		}
		lead, standby = standby, startProc() // the killed pod's replacement
		e.settle()
		e.check(fmt.Sprintf("after kill %d", k)) // fails the test on any double booking or lost pod
		list, err := e.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		r := row{kill: k, pods: len(list.Items), takeover: takeover}
		for i := range list.Items {
			p := &list.Items[i]
			if p.Spec.NodeName == "" {
				continue
			}
			r.bound++
			// A pod bound twice (by the dying leader and its successor)
			// would carry an assignment for another node than its own.
			if a, err := assignment.FromPod(p); err == nil && a != nil && a.Node != p.Spec.NodeName {
				t.Errorf("kill %d: pod %s bound to %s carries an assignment for %s", k, p.Name, p.Spec.NodeName, a.Node)
			}
		}
		rows = append(rows, r)
	}
	var tbl strings.Builder
	fmt.Fprintf(&tbl, "| kill | scheduler processes started | pods | bound | double-booked | lost | time to take over |\n| --- | --- | --- | --- | --- | --- | --- |\n")
	for _, r := range rows {
		fmt.Fprintf(&tbl, "| %d | %d | %d | %d | %d | %d | %s |\n", r.kill, r.kill+2, r.pods, r.bound, r.doubleBooked, r.lost, r.takeover.Round(100*time.Millisecond))
	}
	t.Logf("failover (SIGKILL of the leader, lease %s, retry %s), %s in all:\n%s", leaseDuration, retryPeriod, time.Since(start).Round(time.Second), tbl.String())
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
