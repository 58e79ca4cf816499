//go:build linux

package exporter

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	versioned "github.com/gpuslice/gpuslice/pkg/generated/clientset/versioned"
	"github.com/gpuslice/gpuslice/pkg/localcluster"
	"github.com/gpuslice/gpuslice/pkg/localcluster/controlplane"
	"github.com/gpuslice/gpuslice/test/framework"
)

// BenchmarkExporterSteadyStateRSS runs the real gpuslice-exporter binary
// (bin/gpuslice-exporter, `make exporter`) against a real control plane,
// with the Go runtime settings the DaemonSet gives it (the GO* variables of
// manifests/exporter/daemonset.yaml), and reports its resident memory in
// steady state: heartbeats every second, PodResources polled, nothing
// changing. No GPU driver and no kubelet run here, so the node is published
// Degraded; NVML's own library (loaded only on GPU nodes) is not in the
// figure.
//
// Steady state is after $EXPORTER_RSS_SETTLE (default 2m): the heap grows
// until the garbage collector's first cycles, so a figure taken earlier
// reads low (with Go's default GOGC the first cycle comes only after about
// 4 MiB of allocation, a minute or more here).
//
// RSS is RssAnon (heap, stacks, the runtime's own data) plus RssFile (the
// pages of the mapped binary and of libc, which cgo links, that are in the
// page tables). RssFile depends on how the file sits in the page cache:
// where it holds large folios (ext4 and XFS on recent kernels) a fault maps
// the whole folio, up to 2 MiB, so touching a few bytes of a region makes
// all of it resident, and RssFile is about the binary's size. So the
// benchmark runs two exporters at once, each from its own copy of
// bin/gpuslice-exporter, for two nodes:
//
//   - cached (RSS-MiB, RssAnon-MiB, RssFile-MiB, peakRSS-MiB, CPU-ms): the
//     copy is written in one piece and stays in the page cache, as a
//     freshly written file does: the upper bound;
//   - cold (coldRSS-MiB, coldRssFile-MiB): the copy is first dropped from
//     the page cache, so its pages are read on demand: the lower bound.
//
// Each run logs where its resident memory is (by mapping) and checks that
// the exporter published its GPUNode and renews its Lease.
func BenchmarkExporterSteadyStateRSS(b *testing.B) {
	settle := 2 * time.Minute
	if s := os.Getenv("EXPORTER_RSS_SETTLE"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 5*time.Second {
			b.Fatalf("EXPORTER_RSS_SETTLE=%q: want a duration of at least 5s", s)
		}
		settle = d
	}
	root, err := controlplane.RepoRoot()
	if err != nil {
		b.Fatal(err)
	}
	bin := filepath.Join(root, "bin", "gpuslice-exporter")
	st, err := os.Stat(bin)
	if err != nil {
		b.Skipf("%s missing: run `make exporter`", bin)
	}
	goEnv, err := daemonSetGoEnv(filepath.Join(root, "manifests", "exporter", "daemonset.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	cp := framework.StartControlPlane(b, controlplane.Options{})
	ctx := context.Background()
	if err := localcluster.InstallCRDs(ctx, cp.Config()); err != nil {
		b.Fatal(err)
	}
	if err := localcluster.EnsureNamespace(ctx, cp.Client(), localcluster.LeaseNamespace); err != nil {
		b.Fatal(err)
	}
	const cachedNode, coldNode = node, "gpu-1"
	for _, n := range []string{cachedNode, coldNode} {
		if _, err := controlplane.CreateReadyNode(ctx, cp.Client(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n}}, corev1.ResourceList{"nvidia.com/gpu": resource.MustParse("8")}); err != nil {
			b.Fatal(err)
		}
	}
	cfg := filepath.Join(b.TempDir(), "config.yaml")
	if err := os.WriteFile(cfg, []byte("version: v1\nflags:\n  migStrategy: mixed\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		b.Fatal(err)
	}
	gpu, err := versioned.NewForConfig(cp.Config())
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("exporter environment %v, steady state after %v", goEnv, settle)

	type sample struct {
		rss, anon, file, hwm, cpuMs float64
	}
	// run starts an exporter for nodeName from exe, measures it after the
	// settling time and stops it.
	run := func(label, nodeName, exe, dir string) (sample, error) {
		start := time.Now()
		cmd := exec.Command(exe, "--kubeconfig="+cp.KubeconfigPath(), "--node-name="+nodeName, "--device-plugin-config="+cfg,
			"--pod-resources-socket="+filepath.Join(dir, "kubelet.sock"), "--metrics-bind-address=127.0.0.1:0",
			"--heartbeat-interval=1s", "--poll-interval=1s")
		cmd.Env = append(withoutGoRuntimeEnv(os.Environ()), goEnv...)
		if err := cmd.Start(); err != nil {
			return sample{}, err
		}
		defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
		time.Sleep(settle)
		pid := cmd.Process.Pid
		var s sample
		var errs [5]error
		s.rss, errs[0] = procStatus(pid, "VmRSS")
		s.anon, errs[1] = procStatus(pid, "RssAnon")
		s.file, errs[2] = procStatus(pid, "RssFile")
		s.hwm, errs[3] = procStatus(pid, "VmHWM")
		s.cpuMs, errs[4] = procCPUMillis(pid)
		if err := errors.Join(errs[:]...); err != nil {
			return s, fmt.Errorf("%s: %w", label, err)
		}
		mappings, err := smapsSummary(pid)
		if err != nil {
			return s, fmt.Errorf("%s: %w", label, err)
		}
		b.Logf("%s: resident by mapping: %s", label, mappings)
		// The figures are those of an exporter doing its job: it published
		// the node (Degraded: no NVML here) and renews its Lease.
		gn, err := gpu.GpusliceV1alpha1().GPUNodes().Get(ctx, nodeName, metav1.GetOptions{})
		if err != nil {
			return s, fmt.Errorf("%s: GPUNode not published: %w", label, err)
		}
		lease, err := cp.Client().CoordinationV1().Leases(localcluster.LeaseNamespace).Get(ctx, nodeName, metav1.GetOptions{})
		if err != nil {
			return s, fmt.Errorf("%s: no Lease: %w", label, err)
		}
		if lease.Spec.RenewTime == nil || lease.Spec.RenewTime.Before(&metav1.MicroTime{Time: start.Add(settle - 5*time.Second)}) {
			return s, fmt.Errorf("%s: Lease not renewed in steady state: %v", label, lease.Spec.RenewTime)
		}
		b.Logf("%s: GPUNode %s %s, Lease renewed %s", label, gn.Name, gn.Spec.State, lease.Spec.RenewTime.Format(time.RFC3339Nano))
		if err := cmd.Process.Signal(os.Interrupt); err != nil {
			return s, err
		}
		if err := cmd.Wait(); err != nil {
			return s, fmt.Errorf("%s: exporter stopped with %w", label, err)
		}
		return s, nil
	}
	for i := 0; i < b.N; i++ {
		cachedDir, coldDir := b.TempDir(), b.TempDir()
		cachedExe, coldExe := filepath.Join(cachedDir, "gpuslice-exporter"), filepath.Join(coldDir, "gpuslice-exporter")
		for _, exe := range []string{cachedExe, coldExe} {
			if err := os.WriteFile(exe, data, 0o755); err != nil { // one write(2)
				b.Fatal(err)
			}
		}
		if err := dropFromPageCache(coldExe); err != nil {
			b.Fatal(err)
		}
		var cached, cold sample
		var errs [2]error
		var wg sync.WaitGroup
		wg.Go(func() { cached, errs[0] = run("cached", cachedNode, cachedExe, cachedDir) })
		wg.Go(func() { cold, errs[1] = run("cold", coldNode, coldExe, coldDir) })
		wg.Wait()
		if err := errors.Join(errs[:]...); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(cached.rss/1024, "RSS-MiB")
		b.ReportMetric(cached.anon/1024, "RssAnon-MiB")
		b.ReportMetric(cached.file/1024, "RssFile-MiB")
		b.ReportMetric(cached.hwm/1024, "peakRSS-MiB")
		b.ReportMetric(cached.cpuMs, "CPU-ms")
		b.ReportMetric(cold.rss/1024, "coldRSS-MiB")
		b.ReportMetric(cold.file/1024, "coldRssFile-MiB")
	}
	b.ReportMetric(float64(st.Size())/(1<<20), "binary-MiB")
}

// daemonSetGoEnv returns the Go runtime settings (GO* variables with a
// literal value) the DaemonSet gives the exporter container.
func daemonSetGoEnv(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var ds appsv1.DaemonSet
	if err := yaml.UnmarshalStrict(data, &ds); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for _, c := range ds.Spec.Template.Spec.Containers {
		if c.Name != "exporter" {
			continue
		}
		var env []string
		for _, e := range c.Env {
			if strings.HasPrefix(e.Name, "GO") && e.ValueFrom == nil {
				env = append(env, e.Name+"="+e.Value)
			}
		}
		return env, nil
	}
	return nil, fmt.Errorf("%s: no container named exporter", path)
}

// withoutGoRuntimeEnv drops the Go runtime's settings from env, so that
// only the DaemonSet's apply.
func withoutGoRuntimeEnv(env []string) []string {
	var out []string
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "GOGC", "GOMEMLIMIT", "GOMAXPROCS", "GODEBUG", "GOTRACEBACK":
			continue
		}
		out = append(out, kv)
	}
	return out
}

// dropFromPageCache evicts the file's clean, unmapped pages from the page
// cache, so that the next exec reads it from disk.
func dropFromPageCache(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return err
	}
	return unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
}

// smapsSummary sums the resident kB of /proc/<pid>/smaps by what is mapped
// (the binary, each shared library, the heap, anonymous memory), largest
// first.
func smapsSummary(pid int) (string, error) {
	f, err := os.Open(filepath.Join("/proc", strconv.Itoa(pid), "smaps"))
	if err != nil {
		return "", err
	}
	defer f.Close()
	byName := map[string]int{}
	name := ""
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		switch {
		case len(fields) >= 5 && strings.Contains(fields[0], "-"): // a mapping's header line
			name = "[anon]"
			if len(fields) >= 6 {
				name = filepath.Base(fields[5])
			}
		case len(fields) == 3 && fields[0] == "Rss:":
			kb, err := strconv.Atoi(fields[1])
			if err != nil {
				return "", fmt.Errorf("/proc/%d/smaps: %w", pid, err)
			}
			byName[name] += kb
		}
	}
	if err := s.Err(); err != nil {
		return "", err
	}
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return byName[names[i]] > byName[names[j]] })
	var out []string
	for _, n := range names {
		if byName[n] > 0 {
			out = append(out, fmt.Sprintf("%s %d kB", n, byName[n]))
		}
	}
	return strings.Join(out, ", "), nil
}

// procCPUMillis is the CPU time (user and system) the process has used, in
// milliseconds (/proc/<pid>/stat, fields 14 and 15, in clock ticks of
// 10 ms: USER_HZ is 100 on Linux).
func procCPUMillis(pid int) (float64, error) {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, err
	}
	// The command name, field 2, is in parentheses and may hold spaces.
	i := strings.LastIndexByte(string(data), ')')
	fields := strings.Fields(string(data[i+1:])) // from field 3 on
	if i < 0 || len(fields) < 13 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat: %q", pid, data)
	}
	var ticks float64
	for _, f := range fields[11:13] {
		n, err := strconv.ParseFloat(f, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		ticks += n
	}
	return ticks * 10, nil
}

// procStatus reads a kB field of /proc/<pid>/status.
func procStatus(pid int, field string) (float64, error) {
	f, err := os.Open(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), field+":"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/%d/status %s: %w", pid, field, err)
			}
			return kb, nil
		}
	}
	if err := s.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("%s not in /proc/%d/status", field, pid)
}
