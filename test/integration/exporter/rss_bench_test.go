//go:build linux

package exporter

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gpuslice/gpuslice/test/cluster"
	"github.com/gpuslice/gpuslice/test/framework"
)

// BenchmarkExporterSteadyStateRSS runs the real gpuslice-exporter binary
// (bin/gpuslice-exporter, `make exporter`) against a real control plane and
// reports its resident memory after 20 s of steady state: heartbeats every
// second, PodResources polled, nothing changing. No GPU driver and no
// kubelet run here, so the node is published Degraded; NVML's own library
// (loaded only on GPU nodes) is not in the figure.
//
// RSS is RssAnon (heap, stacks, the runtime's own data) plus RssFile (the
// pages of the mapped binary that are in the page tables). RssFile depends
// on how the file sits in the page cache: where it holds large folios (ext4
// and XFS on recent kernels) a fault maps the whole folio, up to 2 MiB, so
// touching a few bytes of a region makes all of it resident. The same
// binary measured anywhere from ~44 to ~68 MiB depending only on that, so
// the benchmark runs it twice, from a copy of bin/gpuslice-exporter:
//
//   - cached (RSS-MiB, RssAnon-MiB, RssFile-MiB, peakRSS-MiB): the copy is
//     written in one piece and stays in the page cache, as a freshly
//     written file does: the upper bound, where RssFile approaches the
//     binary's size;
//   - cold (coldRSS-MiB, coldRssFile-MiB): the copy is first dropped from
//     the page cache, so its pages are read on demand: the lower bound.
func BenchmarkExporterSteadyStateRSS(b *testing.B) {
	root, err := framework.RepoRoot()
	if err != nil {
		b.Fatal(err)
	}
	bin := filepath.Join(root, "bin", "gpuslice-exporter")
	st, err := os.Stat(bin)
	if err != nil {
		b.Skipf("%s missing: run `make exporter`", bin)
	}
	cp := framework.StartControlPlane(b, framework.Options{})
	ctx := context.Background()
	if err := cluster.InstallCRDs(ctx, cp.Config()); err != nil {
		b.Fatal(err)
	}
	if err := cluster.EnsureNamespace(ctx, cp.Client(), cluster.LeaseNamespace); err != nil {
		b.Fatal(err)
	}
	if _, err := framework.CreateReadyNode(ctx, cp.Client(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}}, corev1.ResourceList{"nvidia.com/gpu": resource.MustParse("8")}); err != nil {
		b.Fatal(err)
	}
	cfg := filepath.Join(b.TempDir(), "config.yaml")
	if err := os.WriteFile(cfg, []byte("version: v1\nflags:\n  migStrategy: mixed\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		b.Fatal(err)
	}
	run := func(exe string) (rss, anon, file, hwm float64) {
		b.Helper()
		cmd := exec.Command(exe, "--kubeconfig="+cp.KubeconfigPath(), "--node-name="+node, "--device-plugin-config="+cfg,
			"--pod-resources-socket="+filepath.Join(b.TempDir(), "kubelet.sock"), "--metrics-bind-address=127.0.0.1:0",
			"--heartbeat-interval=1s", "--poll-interval=1s")
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		time.Sleep(20 * time.Second)
		pid := cmd.Process.Pid
		rss, anon, file, hwm = procStatus(b, pid, "VmRSS"), procStatus(b, pid, "RssAnon"), procStatus(b, pid, "RssFile"), procStatus(b, pid, "VmHWM")
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
		return rss, anon, file, hwm
	}
	for i := 0; i < b.N; i++ {
		exe := filepath.Join(b.TempDir(), "gpuslice-exporter")
		if err := os.WriteFile(exe, data, 0o755); err != nil { // one write(2)
			b.Fatal(err)
		}
		rss, anon, file, hwm := run(exe)
		b.ReportMetric(rss/1024, "RSS-MiB")
		b.ReportMetric(anon/1024, "RssAnon-MiB")
		b.ReportMetric(file/1024, "RssFile-MiB")
		b.ReportMetric(hwm/1024, "peakRSS-MiB")

		dropFromPageCache(b, exe)
		rss, _, file, _ = run(exe)
		b.ReportMetric(rss/1024, "coldRSS-MiB")
		b.ReportMetric(file/1024, "coldRssFile-MiB")
	}
	b.ReportMetric(float64(st.Size())/(1<<20), "binary-MiB")
}

// dropFromPageCache evicts the file's clean, unmapped pages from the page
// cache, so that the next exec reads it from disk.
func dropFromPageCache(b *testing.B, path string) {
	b.Helper()
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		b.Fatal(err)
	}
}

// procStatus reads a kB field of /proc/<pid>/status.
func procStatus(b *testing.B, pid int, field string) float64 {
	b.Helper()
	f, err := os.Open(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), field+":"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb
		}
	}
	b.Fatalf("%s not in /proc/%d/status", field, pid)
	return 0
}
