// Package dashboards checks the Grafana dashboards in manifests/dashboards:
// every panel's query parses (Prometheus' own parser, run from the
// hack/tools/dashboards module so that Prometheus stays out of go.mod) and
// names only metrics that gpuslice-scheduler or gpuslice-exporter really
// export, as collected here from the same registrations the binaries make.
package dashboards

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"

	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // as cmd/gpuslice-scheduler
	_ "k8s.io/component-base/metrics/prometheus/version"  // as cmd/gpuslice-scheduler
	schedmetrics "k8s.io/kubernetes/pkg/scheduler/metrics"

	"github.com/gpuslice/gpuslice/pkg/exporter/agent"
	"github.com/gpuslice/gpuslice/pkg/plugins/gpuslice"
)

// query is what hack/tools/dashboards prints per panel target.
type query struct {
	File    string   `json:"file"`
	Panel   string   `json:"panel"`
	Expr    string   `json:"expr"`
	Metrics []string `json:"metrics"`
}

func TestDashboardQueriesNameExportedMetrics(t *testing.T) {
	files, err := filepath.Glob("../../manifests/dashboards/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards in manifests/dashboards (%v)", err)
	}
	for i, f := range files {
		if files[i], err = filepath.Abs(f); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(goBinary(t), append([]string{"run", "."}, files...)...)
	cmd.Dir = "../../hack/tools/dashboards"
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("parsing the dashboards' PromQL: %v\n%s", err, stderr.String())
	}
	var queries []query
	if err := json.Unmarshal(out, &queries); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}

	exported := exportedNames(t)
	used := map[string]bool{}
	for _, q := range queries {
		if len(q.Metrics) == 0 {
			t.Errorf("%s: panel %q: %q selects no metric", filepath.Base(q.File), q.Panel, q.Expr)
		}
		for _, m := range q.Metrics {
			used[m] = true
			if !exported[m] {
				t.Errorf("%s: panel %q queries %s, which neither gpuslice-scheduler nor gpuslice-exporter exports", filepath.Base(q.File), q.Panel, m)
			}
		}
	}
	// What the dashboards leave out, for the reader of the test log.
	var unused []string
	for m := range exported {
		if strings.HasPrefix(m, "gpuslice_") && !used[m] && !used[m+"_bucket"] && !strings.HasSuffix(m, "_sum") && !strings.HasSuffix(m, "_count") && !strings.HasSuffix(m, "_bucket") {
			unused = append(unused, m)
		}
	}
	sort.Strings(unused)
	t.Logf("%d queries; gpuslice metrics not on a dashboard: %v", len(queries), unused)
}

// exportedNames collects the names of every series the two binaries
// export: the metrics they register (GPUSlice's in kube-scheduler's
// registry, the exporter's in its own) and what kube-scheduler's registry
// gathers (kube-scheduler's, client-go's and the build's metrics, Go and
// process collectors). Histograms and summaries export _bucket, _sum and
// _count series.
func exportedNames(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	collect := func(rs ...metrics.Registerable) {
		for _, r := range rs {
			n := r.FQName()
			names[n] = true
			switch r.(type) {
			case *metrics.Histogram, *metrics.HistogramVec, *metrics.Summary, *metrics.SummaryVec:
				for _, s := range []string{"_bucket", "_sum", "_count"} {
					names[n+s] = true
				}
			}
		}
	}
	gpuslice.NewMetrics().Register(collect)
	agent.NewMetrics().Register(collect)
	if len(names) == 0 {
		t.Fatal("no metric collected from the registrations")
	}
	schedmetrics.Register()
	families, err := legacyregistry.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		names[f.GetName()] = true
		switch f.GetType().String() {
		case "HISTOGRAM", "SUMMARY":
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				names[f.GetName()+s] = true
			}
		}
	}
	return names
}

// goBinary is the go command that runs this test.
func goBinary(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	p := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("no go command on PATH or in GOROOT: %v", err)
	}
	return p
}
