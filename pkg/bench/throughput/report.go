package throughput

import (
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gpuslice/gpuslice/pkg/bench/benchutil"
)

// profileSummary is one profile's figures over all rounds: medians, with
// every round's result in PerRound. It is what --json prints.
type profileSummary struct {
	Profile             string        `json:"profile"`
	SchedulerName       string        `json:"schedulerName"`
	Nodes               int           `json:"nodes"`
	GPUsPerNode         int           `json:"gpusPerNode"`
	Pods                int           `json:"pods"`
	PodGPUs             []int64       `json:"podGPUs"`
	Rounds              int           `json:"rounds"`
	PodsPerSecond       float64       `json:"podsPerSecond"`
	MedianPodsPerSecond float64       `json:"medianPodsPerSecond"`
	Seconds             float64       `json:"seconds"`
	AttemptP50Seconds   float64       `json:"attemptP50Seconds"`
	AttemptP99Seconds   float64       `json:"attemptP99Seconds"`
	E2EP50Seconds       float64       `json:"e2eP50Seconds"`
	E2EP99Seconds       float64       `json:"e2eP99Seconds"`
	SetupSeconds        float64       `json:"setupSeconds"`
	CPUs                int           `json:"cpus"`
	GOMAXPROCS          int           `json:"gomaxprocs"`
	PerRound            []phaseResult `json:"perRound"`
}

// summarize returns the summary of one profile's results.
func summarize(o *options, e *env, p profile, results []phaseResult) profileSummary {
	s := profileSummary{
		Profile: p.label, SchedulerName: p.schedulerName,
		Nodes: o.nodes, GPUsPerNode: o.gpusPerNode, Pods: o.pods, PodGPUs: o.podGPUs,
		SetupSeconds: e.setup.Seconds(), CPUs: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0),
	}
	for _, r := range results {
		if r.Profile == p.label {
			s.PerRound = append(s.PerRound, r)
		}
	}
	s.Rounds = len(s.PerRound)
	med := func(f func(phaseResult) float64) float64 {
		v := make([]float64, len(s.PerRound))
		for i, r := range s.PerRound {
			v[i] = f(r)
		}
		return benchutil.Median(v)
	}
	s.PodsPerSecond = med(func(r phaseResult) float64 { return r.PodsPerSecond })
	s.MedianPodsPerSecond = med(func(r phaseResult) float64 { return r.MedianPodsPerSecond })
	s.Seconds = med(func(r phaseResult) float64 { return r.Seconds })
	s.AttemptP50Seconds = med(func(r phaseResult) float64 { return r.AttemptP50Seconds })
	s.AttemptP99Seconds = med(func(r phaseResult) float64 { return r.AttemptP99Seconds })
	s.E2EP50Seconds = med(func(r phaseResult) float64 { return r.E2EP50Seconds })
	s.E2EP99Seconds = med(func(r phaseResult) float64 { return r.E2EP99Seconds })
	return s
}

// report prints the table, the JSON objects (with --json) and, last, the
// throughput_ratio line.
func report(w io.Writer, o *options, e *env, results []phaseResult, wall time.Duration) error {
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "round\tprofile\tpods\tseconds\tpods/s\tmedian pods/s\tattempt p50\tattempt p99\te2e p50\te2e p99\tbatched\tfiltered/pod\tnodes used\tCPU s: sched/apiserver/etcd\t")
	for _, r := range results {
		fmt.Fprintf(tw, "%d\t%s\t%d\t%.2f\t%.1f\t%.1f\t%s\t%s\t%s\t%s\t%d\t%.0f\t%d\t%s\t\n", r.Round, r.SchedulerName, r.Pods, r.Seconds, r.PodsPerSecond,
			r.MedianPodsPerSecond, ms(r.AttemptP50Seconds), atLeast(r.AttemptP99Beyond)+ms(r.AttemptP99Seconds), ms(r.E2EP50Seconds), ms(r.E2EP99Seconds), r.Batch["hint_used"], r.NodesFilteredPerPod, r.NodesUsed, cpuText(r.CPUSeconds))
	}
	var summaries []profileSummary
	for _, p := range o.profiles() {
		s := summarize(o, e, p, results)
		summaries = append(summaries, s)
		if o.rounds > 1 {
			fmt.Fprintf(tw, "median\t%s\t%d\t%.2f\t%.1f\t%.1f\t%s\t%s\t%s\t%s\t\t\t\t\t\n", s.SchedulerName, s.Pods, s.Seconds, s.PodsPerSecond,
				s.MedianPodsPerSecond, ms(s.AttemptP50Seconds), ms(s.AttemptP99Seconds), ms(s.E2EP50Seconds), ms(s.E2EP99Seconds))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	for _, r := range results {
		fmt.Fprintf(w, "API requests per pod, round %d, %s: %s\n", r.Round, r.SchedulerName, requestsText(r.APIRequestsPerPod))
	}
	fmt.Fprintln(w, "pods/s: pods ÷ (last binding observed − first create sent); median pods/s: of the bindings observed per second")
	fmt.Fprintln(w, `attempt: scheduler_scheduling_attempt_duration_seconds{result="scheduled"} of the profile, bucket-interpolated (">": beyond its last bucket)`)
	fmt.Fprintln(w, "e2e: binding observed − create sent; batched: cycles that reused the previous pod's filter and score results (opportunistic batching)")
	fmt.Fprintln(w, "filtered/pod: nodes the profile's cycles ran Filter on, per pod (the scheduler stops at percentageOfNodesToScore feasible nodes: full nodes add to it)")
	fmt.Fprintf(w, "nodes used: nodes the phase's pods were bound to (at best %d)\n", minNodes(o))
	fmt.Fprintf(w, "machine: %s; setup %s (nodes' objects %s); wall time %s\n", machine(), short(e.setup), short(e.nodesCreated), short(wall))
	if o.json {
		for _, s := range summaries {
			b, err := json.Marshal(s)
			if err != nil {
				return fmt.Errorf("encoding the %s summary: %w", s.Profile, err)
			}
			fmt.Fprintln(w, string(b))
		}
	}
	stock, gs := summaries[0], summaries[1]
	if stock.PodsPerSecond <= 0 {
		return fmt.Errorf("stock profile measured %v pods/s: no ratio", stock.PodsPerSecond)
	}
	if o.rounds > 1 {
		fmt.Fprintln(w, roundRatiosText(stock.PerRound, gs.PerRound))
	}
	if len(summaries) > 2 && summaries[2].PodsPerSecond > 0 {
		sb := summaries[2]
		fmt.Fprintf(w, "%s: %.1f pods/s; gpuslice ÷ %s = %.3f, %s ÷ stock = %.3f (medians over rounds)\n",
			sb.SchedulerName, sb.PodsPerSecond, sb.Profile, gs.PodsPerSecond/sb.PodsPerSecond, sb.Profile, sb.PodsPerSecond/stock.PodsPerSecond)
	}
	fmt.Fprintf(w, "throughput_ratio=%.3f\n", gs.PodsPerSecond/stock.PodsPerSecond)
	return nil
}

// roundRatiosText formats each round's gpuslice ÷ stock pods/s (the two
// phases of a round run back to back, under the most similar conditions)
// and their median; throughput_ratio is the ratio of the medians.
func roundRatiosText(stock, gs []phaseResult) string {
	var ratios []float64
	var parts []string
	for i := range min(len(stock), len(gs)) {
		r := gs[i].PodsPerSecond / stock[i].PodsPerSecond
		ratios = append(ratios, r)
		parts = append(parts, fmt.Sprintf("%.3f", r))
	}
	return fmt.Sprintf("per-round ratios (gpuslice ÷ stock pods/s): %s (median %.3f); throughput_ratio is median gpuslice pods/s ÷ median stock pods/s",
		strings.Join(parts, " "), benchutil.Median(ratios))
}

// minNodes is a lower bound on the nodes a phase's pods need: their GPUs
// divided by a node's, rounded up.
func minNodes(o *options) int {
	gpus := o.gpuDemand(o.pods)
	per := int64(o.gpusPerNode)
	return int((gpus + per - 1) / per)
}

// atLeast marks a figure that is a lower limit.
func atLeast(beyond bool) string {
	if beyond {
		return ">"
	}
	return ""
}

// ms formats seconds as milliseconds.
func ms(seconds float64) string { return fmt.Sprintf("%.1fms", seconds*1000) }

// short rounds a duration for display.
func short(d time.Duration) time.Duration { return d.Round(10 * time.Millisecond) }

// cpuText formats a phase's CPU seconds per process.
func cpuText(c map[string]float64) string {
	if c == nil {
		return "n/a"
	}
	return fmt.Sprintf("%.1f/%.1f/%.1f", c[selfProcess], c["kube-apiserver"], c["etcd"])
}

// requestsText formats API requests per pod, largest first; those below
// 0.01 per pod are left out of the list (not of the total).
func requestsText(m map[string]float64) string {
	if m == nil {
		return "n/a"
	}
	keys := make([]string, 0, len(m))
	total := 0.0
	for k, v := range m {
		keys = append(keys, k)
		total += v
	}
	sort.Slice(keys, func(i, j int) bool {
		if m[keys[i]] != m[keys[j]] {
			return m[keys[i]] > m[keys[j]]
		}
		return keys[i] < keys[j]
	})
	var parts []string
	for _, k := range keys {
		if m[k] >= 0.01 {
			parts = append(parts, fmt.Sprintf("%s %.2f", k, m[k]))
		}
	}
	return fmt.Sprintf("%.2f (%s)", total, strings.Join(parts, ", "))
}

// gpuListText formats the GPUs per pod.
func gpuListText(g []int64) string {
	parts := make([]string, len(g))
	for i, n := range g {
		parts[i] = fmt.Sprint(n)
	}
	if len(parts) == 1 {
		return parts[0]
	}
	return strings.Join(parts, ",") + " (cycled)"
}
