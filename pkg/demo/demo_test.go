package demo

import (
	"bytes"
	"context"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gpuslice/gpuslice/pkg/localcluster/controlplane"
)

// TestDemo runs the demo as `make demo` does and checks what it prints: the
// per-GPU view, and that gpuslice leaves at least as many GPUs and nodes
// empty as the default scheduler while binding the same pods.
func TestDemo(t *testing.T) {
	root, err := controlplane.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(root + "/bin/kube-apiserver"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("control-plane binaries missing: %s", controlplane.BuildHint)
		}
		t.Skip(controlplane.BuildHint)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := Run(ctx, Options{Out: &out}); err != nil {
		t.Fatalf("demo failed: %v\n%s", err, out.String())
	}
	text := out.String()
	t.Log("\n" + text)
	for _, want := range []string{"where every slice went under gpuslice", "[1g.5gb: mig-inference-", "[time-sliced: time-sliced-", "same workload, two schedulers"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	// whole-gpus.yaml (gpuslice.io/sharing: Exclusive) lands on whole GPUs,
	// one pod per GPU, each pod on two of them.
	section := text[strings.Index(text, "where every slice went under gpuslice"):]
	wholeLines := 0
	for _, line := range strings.Split(section, "\n") {
		if !strings.Contains(line, "whole-gpus-") {
			continue
		}
		wholeLines++
		if !regexp.MustCompile(`^\s+GPU \d+ \[whole GPU: whole-gpus-\d+\]$`).MatchString(line) {
			t.Errorf("whole-gpus not alone on a whole GPU: %q", line)
		}
	}
	if want := 2 * DefaultCopies["whole-gpus.yaml"]; wholeLines != want {
		t.Errorf("whole-gpus pods on %d GPUs, want %d", wholeLines, want)
	}
	rows := regexp.MustCompile(`(?m)^(default kube-scheduler|gpuslice \(binpack\))\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+) of (\d+)\s+(\d+)$`).FindAllStringSubmatch(text, -1)
	if len(rows) != 2 {
		t.Fatalf("summary rows: %v", rows)
	}
	num := func(s string) int { n, _ := strconv.Atoi(s); return n }
	def, gs := rows[0], rows[1]
	if num(gs[2]) != num(def[2]) {
		t.Errorf("gpuslice bound %s pods, default %s", gs[2], def[2])
	}
	// gpuslice gives every pod the GPUs it asks for; the default scheduler
	// may save GPUs by giving a 2-GPU pod two replicas of one: those count
	// as GPUs it would have needed.
	if num(gs[7]) != 0 {
		t.Errorf("under gpuslice pods got %s GPUs fewer than they asked for", gs[7])
	}
	if num(gs[3]) > num(def[3])+num(def[7]) || num(gs[5]) < num(def[5]) {
		t.Errorf("gpuslice used %s GPUs and left %s nodes empty; default %s (+%s it short-changed) and %s", gs[3], gs[5], def[3], def[7], def[5])
	}
}
