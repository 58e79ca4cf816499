package openb

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMainContract runs `gpuslice-bench openb` with every policy on a small
// synthetic trace: one JSON object per point with the documented fields,
// every policy and seed present, a plot, and the summary table last.
func TestMainContract(t *testing.T) {
	var nodes, pods strings.Builder
	nodes.WriteString("sn,cpu_milli,memory_mib,gpu,model\n")
	for i := 0; i < 12; i++ {
		fmt.Fprintf(&nodes, "node-%02d,64000,262144,%d,%s\n", i, []int{1, 2, 4, 8}[i%4], []string{"T4", "V100M32", "G2"}[i%3])
	}
	pods.WriteString("name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec\n")
	for i := 0; i < 60; i++ {
		num, milli, spec := 1, []int{250, 460, 1000}[i%3], ""
		switch {
		case i%10 == 0:
			num, milli = 0, 0
		case i%7 == 0:
			num, milli = 2, 1000
		case i%11 == 0:
			spec = "T4|G2"
		}
		fmt.Fprintf(&pods, "pod-%03d,%d,%d,%d,%d,%s\n", i, 2000+1000*(i%5), 4096, num, milli, spec)
	}
	dir := t.TempDir()
	nodesPath, podsPath, plotPath := filepath.Join(dir, "nodes.csv"), filepath.Join(dir, "pods.csv"), filepath.Join(dir, "plot.png")
	if err := os.WriteFile(nodesPath, []byte(nodes.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(podsPath, []byte(pods.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err := Main(context.Background(), []string{
		"--nodes", nodesPath, "--pods", podsPath, "--seeds", "42-43", "--policies", "all", "--json",
		"--plot", plotPath, "--step", "10", "--breakdown", "--floor", "--scheduler-config", filepath.Join("..", "..", "..", "manifests", "scheduler", "config.yaml"),
	}, &out)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var summaryAt int
	for i, line := range lines {
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var p map[string]any
		if err := json.Unmarshal([]byte(line), &p); err != nil {
			t.Fatalf("line %d: %v: %s", i, err, line)
		}
		for _, k := range []string{"policy", "seed", "arrived_pct", "unallocated_gpu_pct"} {
			if _, ok := p[k]; !ok {
				t.Fatalf("line %d lacks %s: %s", i, k, line)
			}
		}
		if u := p["unallocated_gpu_pct"].(float64); u < 0 || u > 100 {
			t.Fatalf("unallocated %v out of range", u)
		}
		seen[fmt.Sprintf("%v/%v", p["policy"], p["seed"])] = true
		summaryAt = i + 1
	}
	for _, name := range policyNames() {
		for _, seed := range []string{"42", "43"} {
			if !seen[name+"/"+seed] {
				t.Errorf("no points for %s seed %s", name, seed)
			}
		}
	}
	summary := strings.Join(lines[summaryAt:], "\n")
	bd := strings.Index(summary, "where the capacity went at 100 % arrived")
	if bd < 0 || bd > strings.Index(summary, "unalloc GPU % @100") || !strings.Contains(summary[bd:], "idle cpu-bound") {
		t.Errorf("breakdown missing or not before the summary:\n%s", summary)
	}
	if fl := strings.Index(summary, "sharing-pod floor at 100 % arrived"); fl < 0 || fl > strings.Index(summary, "unalloc GPU % @100") {
		t.Errorf("floor missing or not before the summary:\n%s", summary)
	}
	if !strings.Contains(summary, "unalloc GPU % @100") || !strings.Contains(summary, "FGD") || !strings.Contains(summary, "gpuslice-fragmentation-aware") {
		t.Errorf("summary table missing or not last:\n%s", summary)
	}
	f, err := os.Open(plotPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := png.Decode(f); err != nil {
		t.Errorf("plot: %v", err)
	}

	// --replot draws the same plot from the --json output alone.
	jsonPath, replotPath := filepath.Join(dir, "out.jsonl"), filepath.Join(dir, "replot.png")
	if err := os.WriteFile(jsonPath, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Main(context.Background(), []string{"--pods", podsPath, "--replot", jsonPath, "--plot", replotPath}, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	first, err := os.ReadFile(plotPath)
	if err != nil {
		t.Fatal(err)
	}
	again, err := os.ReadFile(replotPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, again) {
		t.Error("--replot drew a different plot from the same points")
	}
}

func TestReplotRejectsBadInput(t *testing.T) {
	dir := t.TempDir()
	noPoints := filepath.Join(dir, "none.txt")
	bad := filepath.Join(dir, "bad.jsonl")
	if err := os.WriteFile(noPoints, []byte("# header only\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("{\"policy\": 3}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"--replot", noPoints},
		{"--replot", noPoints, "--plot", filepath.Join(dir, "p.png")},
		{"--replot", bad, "--plot", filepath.Join(dir, "p.png")},
		{"--replot", filepath.Join(dir, "missing"), "--plot", filepath.Join(dir, "p.png")},
	} {
		if err := Main(context.Background(), args, &bytes.Buffer{}); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}

func TestMainRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--seeds", "51-42"},
		{"--policies", "nope"},
		{"--nodes", "/does/not/exist.csv"},
	} {
		if err := Main(context.Background(), args, &bytes.Buffer{}); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}
