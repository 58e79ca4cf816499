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
	for i := 0; i < b.N; i++ {
		cmd := exec.Command(bin, "--kubeconfig="+cp.KubeconfigPath(), "--node-name="+node, "--device-plugin-config="+cfg,
			"--pod-resources-socket="+filepath.Join(b.TempDir(), "kubelet.sock"), "--metrics-bind-address=127.0.0.1:0",
			"--heartbeat-interval=1s", "--poll-interval=1s")
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		time.Sleep(20 * time.Second)
		rss, hwm := procStatus(b, cmd.Process.Pid, "VmRSS"), procStatus(b, cmd.Process.Pid, "VmHWM")
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
		b.ReportMetric(rss/1024, "RSS-MiB")
		b.ReportMetric(hwm/1024, "peakRSS-MiB")
	}
	b.ReportMetric(float64(st.Size())/(1<<20), "binary-MiB")
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
