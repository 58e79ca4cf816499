package demo

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gpuslice/gpuslice/pkg/localcluster/controlplane"
	"github.com/gpuslice/gpuslice/pkg/topology"
	"github.com/gpuslice/gpuslice/pkg/topology/fixtures"
)

// TestDemo runs the demo as `make demo` does and checks what it prints: the
// per-GPU view, that gpuslice leaves at least as many GPUs and nodes empty
// as the default scheduler while binding the same pods, and the round in
// which gpuslice-repartitioner has an idle GPU rebuilt for a pending pod.
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
	checkRepartition(t, text, num(gs[2]))
}

// checkRepartition checks the "MIG layouts that follow demand" round: the
// pod asking for a profile no layout offered runs on the node the
// repartitioner may reconfigure, on a GPU that was idle under gpuslice and
// now has the new layout; the printed line names that GPU and both
// layouts; the node's other GPUs hold what they held; MIG manager was asked,
// went pending and succeeded; and the pods placed before (placed of them)
// all kept their devices.
func checkRepartition(t *testing.T, text string, placed int) {
	t.Helper()
	i := strings.Index(text, "═══ MIG layouts that follow demand ═══")
	j := strings.Index(text, "═══ where every slice went under gpuslice")
	k := strings.Index(text, "═══ same workload, two schedulers ═══")
	if i < 0 || j < 0 || k < j {
		t.Fatal("output lacks the MIG layouts round or the gpuslice view")
	}
	round, gpusliceView := text[i:], text[j:k]
	var spec fixtures.Spec
	for _, s := range Nodes() {
		if s.Name == repartitionNode {
			spec = s
		}
	}
	if len(spec.MIG) == 0 {
		t.Fatalf("demo node %s is not a MIG node", repartitionNode)
	}
	initial := map[string]int{}
	for _, p := range spec.MIG {
		initial[p]++
	}
	lines := regexp.MustCompile(`(?m)^  GPU (\d+): repartitioned (\S+) → (\S+) for (\d+) pending pods? \(([^)]*)\) \(MIG config (\S+)\)$`).FindAllStringSubmatch(round, -1)
	if len(lines) != 1 {
		t.Fatalf("want one repartitioned GPU line, got %q", lines)
	}
	gpu, from, to, pods, config := lines[0][1], lines[0][2], lines[0][3], lines[0][5], lines[0][6]
	if want := topology.FormatCounts(initial); from != want {
		t.Errorf("GPU %s repartitioned from %s, but the node's layout was %s", gpu, from, want)
	}
	if want := "1×" + repartitionProfile; to != want {
		t.Errorf("GPU %s repartitioned to %s, want %s", gpu, to, want)
	}
	if lines[0][4] != "1" || pods != "training-7g-0" {
		t.Errorf("GPU %s repartitioned for %s pods (%s), want 1 (training-7g-0)", gpu, lines[0][4], pods)
	}
	if !strings.HasPrefix(config, "gpuslice-"+repartitionNode+"-") {
		t.Errorf("MIG config %q is not one the repartitioner wrote for %s", config, repartitionNode)
	}
	for _, want := range []string{
		"nvidia.com/mig.config=" + config,
		"nvidia.com/mig.config.state=pending",
		"nvidia.com/mig.config.state=success",
		"training-7g-0: running on " + repartitionNode,
		"event Repartitioned on node " + repartitionNode + ": MIG config " + config + " applied",
		fmt.Sprintf("(MIG manager runs: 1, 1 succeeded; the %d pods placed before kept every device they held)", placed),
	} {
		if !strings.Contains(round, want) {
			t.Errorf("MIG layouts round lacks %q", want)
		}
	}
	before, after := nodeBlock(gpusliceView, repartitionNode), nodeBlock(round, repartitionNode)
	if len(before) != spec.GPUs || len(after) != spec.GPUs {
		t.Fatalf("%s: %d GPU lines under gpuslice, %d after the round; want %d", repartitionNode, len(before), len(after), spec.GPUs)
	}
	for g := range before {
		if strings.Contains(after[g], "GPU "+gpu+" ") {
			if !strings.HasPrefix(before[g], "  · GPU "+gpu+" ") {
				t.Errorf("repartitioned GPU %s was not idle: %q", gpu, before[g])
			}
			if want := fmt.Sprintf("    GPU %s [%s: training-7g-0]", gpu, repartitionProfile); after[g] != want {
				t.Errorf("repartitioned GPU: %q, want %q", after[g], want)
			}
		} else if after[g] != before[g] {
			t.Errorf("a GPU the round did not repartition changed: %q, was %q", after[g], before[g])
		}
	}
}

// nodeBlock returns the per-GPU lines of the node in a printed view.
func nodeBlock(view, node string) []string {
	var out []string
	in := false
	for _, line := range strings.Split(view, "\n") {
		switch {
		case line == node:
			in = true
		case in && regexp.MustCompile(`^  (·| ) GPU \d+ \[`).MatchString(line):
			out = append(out, line)
		case in:
			return out
		}
	}
	return out
}
