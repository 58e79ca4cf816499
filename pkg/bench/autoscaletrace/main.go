// Package autoscaletrace is `gpuslice-bench autoscale-trace` (make
// bench-autoscale-trace): the openb trace (Alibaba cluster-trace-gpu-v2023)
// replayed with its creation and deletion times on a cluster that starts
// empty and that an in-process model of Karpenter (pkg/sim/autoscaler,
// WhenEmpty) grows and shrinks, once per policy: gpuslice's profiles and
// kube-scheduler's in the real scheduler framework (pkg/sim), the FGD
// paper's baselines on their ledger (pkg/bench/openb). It reports GPU
// node-hours, dollars, peak nodes, pods placed and failed and pending
// times; the last line is node_hours_ratio=<gpuslice / kube-scheduler>.
//
// With --karpenter-check it instead runs the model on the small workload of
// gpuslice-bench autoscale (the real Karpenter's benchmark: seed 42, a day
// compressed to 4 minutes, its instance types and NodePools) and compares
// its node-hours with the real Karpenter's figures.
package autoscaletrace

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	schedconfig "k8s.io/kubernetes/pkg/scheduler/apis/config"

	"github.com/gpuslice/gpuslice/pkg/autoscale/instancetypes"
	"github.com/gpuslice/gpuslice/pkg/autoscale/workload"
	autoscalebench "github.com/gpuslice/gpuslice/pkg/bench/autoscale"
	"github.com/gpuslice/gpuslice/pkg/bench/openb"
	"github.com/gpuslice/gpuslice/pkg/bench/plot"
	"github.com/gpuslice/gpuslice/pkg/localcluster"
	"github.com/gpuslice/gpuslice/pkg/sim"
	"github.com/gpuslice/gpuslice/pkg/sim/autoscaler"
	"github.com/gpuslice/gpuslice/pkg/topology"
)

// DefaultPolicies are the policies of the figure.
const DefaultPolicies = "gpuslice-binpack,gpuslice-fragmentation-aware,kube-LeastAllocated,kube-MostAllocated,FGD,BestFit"

// Main runs the benchmark with command-line args.
func Main(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("autoscale-trace", flag.ContinueOnError)
	fs.SetOutput(stdout)
	nodesPath := fs.String("nodes", "../shared/data/openb/csv/openb_node_list_gpu_node.csv", "node list CSV: its distinct shapes are the instance types")
	podsPath := fs.String("pods", "../shared/data/openb/csv/openb_pod_list_default.csv", "pod list CSV with creation_time, deletion_time (scheduled_time optional)")
	policies := fs.String("policies", DefaultPolicies, "comma-separated: gpuslice-binpack, gpuslice-fragmentation-aware, gpuslice-spread, kube-LeastAllocated, kube-MostAllocated, FGD, BestFit, DotProd, GpuPacking, Random")
	schedCfg := fs.String("scheduler-config", "manifests/scheduler/config.yaml", "gpuslice's scheduler ConfigMap")
	fromDay := fs.Float64("from-day", 0, "replay the trace from this day (pods alive then arrive then)")
	toDay := fs.Float64("to-day", 0, "replay the trace until this day and bill until then (0: until every pod is done)")
	speedup := fs.Float64("speedup", 1, "divide every trace time by this (node-hours are reported in trace time)")
	every := fs.Int("every", 1, "keep one pod in this many (subsampling, by position in the list)")
	launch := fs.Duration("launch-delay", 90*time.Second, "from a node's launch (billed) to its taking pods")
	consolidateAfter := fs.Duration("consolidate-after", 0, "the NodePool's consolidateAfter")
	batchIdle := fs.Duration("batch-idle", time.Second, "Karpenter's BATCH_IDLE_DURATION")
	batchMax := fs.Duration("batch-max", 10*time.Second, "Karpenter's BATCH_MAX_DURATION")
	termination := fs.Duration("termination-delay", 7*time.Second, "from cordon to the node's deletion (billing ends)")
	seed := fs.Uint64("seed", 42, "scheduler tie-breaks (and with --karpenter-check, the workload's seed)")
	asJSON := fs.Bool("json", false, "print the results as one JSON object instead of the table")
	plotPath := fs.String("plot", "", "PNG of GPU nodes over time per policy")
	check := fs.Bool("karpenter-check", false, "run the model on gpuslice-bench autoscale's workload and compare with the real Karpenter's figures")
	day := fs.Duration("day", 4*time.Minute, "--karpenter-check: length of the compressed day")
	tail := fs.Duration("tail", 75*time.Second, "--karpenter-check: time billed after the day")
	workloadScale := fs.Int("workload-scale", 1, "--karpenter-check: multiply the workload's Deployments, Jobs and notebooks by this (the real Karpenter's figures are for 1)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %v", fs.Args())
	}
	cfg := autoscaler.Config{
		BatchIdle: *batchIdle, BatchMax: *batchMax, LaunchDelay: *launch,
		ConsolidateAfter: *consolidateAfter, TerminationDelay: *termination,
	}
	if *check {
		set := func(name string) bool {
			seen := false
			fs.Visit(func(f *flag.Flag) { seen = seen || f.Name == name })
			return seen
		}
		if !set("launch-delay") {
			cfg.LaunchDelay = 3 * time.Second
		}
		if !set("batch-max") {
			cfg.BatchMax = 2 * time.Second // as gpuslice-bench autoscale runs Karpenter
		}
		if *workloadScale < 1 {
			return fmt.Errorf("--workload-scale must be at least 1, got %d", *workloadScale)
		}
		return karpenterCheck(ctx, stdout, cfg, int64(*seed), *day, *tail, *workloadScale, *schedCfg, *asJSON)
	}

	nodes, err := openb.ReadNodes(*nodesPath)
	if err != nil {
		return err
	}
	pods, err := openb.ReadTimedPods(*podsPath)
	if err != nil {
		return err
	}
	its, shapes, err := TraceTypes(nodes)
	if err != nil {
		return err
	}
	cfg.NodePools = []autoscaler.NodePool{{Name: "openb", Types: its}}
	dayDur := func(d float64) time.Duration { return time.Duration(d * 24 * float64(time.Hour) / *speedup) }
	actions, end, err := TraceActions(pods, TraceOptions{From: dayDur(*fromDay), To: dayDur(*toDay), Speedup: *speedup, Every: *every})
	if err != nil {
		return err
	}
	all := make([]openb.Pod, len(pods))
	for i := range pods {
		all[i] = pods[i].Pod
	}
	names := splitList(*policies)
	if len(names) == 0 {
		return fmt.Errorf("no policy")
	}
	if !*asJSON {
		fmt.Fprintf(stdout, "# autoscale-trace: %d pods of %s (one in %d, days %g..%s, speedup %g), %d instance types from %s; launch %s, consolidateAfter %s, batch %s/%s\n",
			len(actions), *podsPath, *every, *fromDay, dayLabel(*toDay), *speedup, len(its), *nodesPath, cfg.LaunchDelay, cfg.ConsolidateAfter, cfg.BatchIdle, cfg.BatchMax)
	}
	var results []*Result
	for _, name := range names {
		pl, err := tracePlacer(ctx, name, *schedCfg, shapes, all, *seed)
		if err != nil {
			return err
		}
		start := time.Now()
		r, err := Run(ctx, pl, actions, Options{
			Autoscaler: cfg, End: end, Scale: *speedup, SampleEvery: dayDur(1) / 24,
			GPUWeight: map[string]float64{topology.ResourceGPU: 1.0 / openb.MilliPerGPU},
		})
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if !*asJSON {
			fmt.Fprintf(stdout, "# %s: %.0f GPU node-h, %d nodes launched, %d placed, %d failed (%d of them living less than a batch and a launch) (%s)\n", name, r.NodeHours, r.Launched, r.Placed, r.Failed, r.FailedShort, time.Since(start).Round(time.Second))
		}
		results = append(results, r)
	}
	if *plotPath != "" {
		if err := writePlot(*plotPath, "GPU nodes over the openb trace (Karpenter model, WhenEmpty)", "day", results, 24); err != nil {
			return err
		}
	}
	base := find(results, "kube-LeastAllocated")
	gs := find(results, "gpuslice-fragmentation-aware")
	if gs == nil {
		gs = find(results, "gpuslice-binpack")
	}
	if *asJSON {
		if err := json.NewEncoder(stdout).Encode(map[string]any{"pods": *podsPath, "results": results}); err != nil {
			return err
		}
	} else {
		printTable(stdout, results, base)
	}
	if base != nil && gs != nil && base.NodeHours > 0 {
		fmt.Fprintf(stdout, "node_hours_ratio=%.3f\n", gs.NodeHours/base.NodeHours)
	}
	return nil
}

func dayLabel(d float64) string {
	if d == 0 {
		return "end"
	}
	return fmt.Sprint(d)
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func find(rs []*Result, name string) *Result {
	for _, r := range rs {
		if r.Policy == name {
			return r
		}
	}
	return nil
}

// profile returns a framework policy's profile: gpuslice's shipped ones
// from the ConfigMap, kube-scheduler's from its defaults.
func profile(name, schedCfg string) (*schedconfig.KubeSchedulerProfile, error) {
	var cfg *schedconfig.KubeSchedulerConfiguration
	var err error
	prof := name
	switch name {
	case "gpuslice-binpack", "gpuslice-fragmentation-aware", "gpuslice-spread":
		cfg, err = sim.LoadConfigMapFile(schedCfg)
	case "kube-LeastAllocated":
		cfg, err = sim.StockConfig("")
		prof = "default-scheduler"
	case "kube-MostAllocated":
		cfg, err = sim.StockConfig(openb.MostAllocatedArgs)
		prof = "default-scheduler"
	default:
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return sim.Profile(cfg, prof)
}

func tracePlacer(ctx context.Context, name, schedCfg string, shapes map[string]openb.Node, all []openb.Pod, seed uint64) (Placer, error) {
	prof, err := profile(name, schedCfg)
	if err != nil {
		return nil, err
	}
	if prof != nil {
		return NewFrameworkPlacer(ctx, name, prof, TraceNodeBuilder(shapes), seed, topology.PolicyPacked)
	}
	for _, f := range openb.Baselines() {
		if f.Name == name {
			return NewLedgerPlacer(ctx, f, all, TraceShape(shapes), seed)
		}
	}
	return nil, fmt.Errorf("unknown policy %q", name)
}

func printTable(w io.Writer, rs []*Result, base *Result) {
	fmt.Fprintf(w, "\n%-30s %11s %9s %9s %9s %10s %5s %8s %7s %6s %8s %9s %9s %6s\n",
		"policy", "GPU node-h", "vs kube", "GPU-h", "busy GPU-h", "dollars", "peak", "launched", "placed", "failed", "rejected", "pend-p50", "pend-p99", "mispr")
	for _, r := range rs {
		ratio := "-"
		if base != nil && base.NodeHours > 0 {
			ratio = fmt.Sprintf("%.3f", r.NodeHours/base.NodeHours)
		}
		fmt.Fprintf(w, "%-30s %11.0f %9s %9.0f %9.0f %10.0f %5d %8d %7d %6d %8d %8.0fs %8.0fs %6d\n",
			r.Policy, r.NodeHours, ratio, r.GPUHours, r.BusyGPUHours, r.Dollars, r.PeakNodes, r.Launched, r.Placed, r.Failed, r.Rejections, r.PendingP50, r.PendingP99, r.Mispredicted)
	}
	top := 0.0
	for _, r := range rs {
		top = math.Max(top, r.NodeHours)
	}
	fmt.Fprintf(w, "\nGPU node-hours per policy (each # is %.0f node-h)\n", top/50)
	for _, r := range rs {
		n := 0
		if top > 0 {
			n = int(math.Round(50 * r.NodeHours / top))
		}
		fmt.Fprintf(w, "%-30s %s %.0f\n", r.Policy, strings.Repeat("#", n), r.NodeHours)
	}
}

func writePlot(path, title, xlabel string, rs []*Result, perUnit float64) error {
	c := plot.Chart{Title: title, XLabel: xlabel, YLabel: "GPU nodes"}
	for _, r := range rs {
		s := plot.Series{Name: r.Policy}
		for _, p := range r.Series {
			s.Points = append(s.Points, plot.Point{X: p[0] / perUnit, Y: p[1]})
		}
		c.Series = append(c.Series, s)
	}
	return c.WritePNG(path)
}

// karpenterCheck runs the model on gpuslice-bench autoscale's workload and
// prints its node-hours next to the real Karpenter's.
func karpenterCheck(ctx context.Context, w io.Writer, cfg autoscaler.Config, seed int64, day, tail time.Duration, workloadScale int, schedCfg string, asJSON bool) error {
	set, err := instancetypes.Default()
	if err != nil {
		return err
	}
	wo := workload.Default(seed, day)
	wo.Inference, wo.Jobs, wo.Notebooks = wo.Inference*workloadScale, wo.Jobs*workloadScale, wo.Notebooks*workloadScale
	events, err := workload.Generate(wo)
	if err != nil {
		return err
	}
	bound, err := autoscalebench.LowerBound(set, events, day, tail)
	if err != nil {
		return err
	}
	actions, err := WorkloadActions(events)
	if err != nil {
		return err
	}
	cfg.NodePools = NodePools(set)
	// The bench's own scheduler configuration: gpuslice-binpack as the
	// local cluster runs it, kube-scheduler's default profile.
	kcfg, err := sim.LoadConfig([]byte(localcluster.SchedulerConfig("unused", 10*time.Second) + "- schedulerName: default-scheduler\n"))
	if err != nil {
		return err
	}
	scale := float64(24*time.Hour) / float64(day)
	runs := []struct {
		name, profile string
		cost          bool
	}{
		{"default+WhenEmpty", "default-scheduler", false},
		{"gpuslice+WhenEmpty", "gpuslice-binpack", true},
		{"gpuslice+WhenEmpty, no deletion cost", "gpuslice-binpack", false},
	}
	if !asJSON {
		fmt.Fprintf(w, "# karpenter-check: workload seed %d, day %s (x%.0f), tail %s, %d actions, %d NodePools; launch %s, batch %s/%s, poll 10s + validation 15s, termination %s\n",
			seed, day, scale, tail, len(actions), len(cfg.NodePools), cfg.LaunchDelay, cfg.BatchIdle, cfg.BatchMax, cfg.TerminationDelay)
	}
	var results []*Result
	for _, run := range runs {
		prof, err := sim.Profile(kcfg, run.profile)
		if err != nil {
			return err
		}
		pl, err := NewFrameworkPlacer(ctx, run.name, prof, InstanceNodeBuilder(set), uint64(seed), topology.PolicyDistributed)
		if err != nil {
			return err
		}
		r, err := Run(ctx, pl, actions, Options{Autoscaler: cfg, End: day + tail, Scale: scale, DeletionCost: run.cost, SampleEvery: time.Second})
		if err != nil {
			return fmt.Errorf("%s: %w", run.name, err)
		}
		results = append(results, r)
	}
	if asJSON {
		out := map[string]any{"results": results, "lowerBound": bound}
		if workloadScale == 1 {
			out["karpenter"] = KarpenterFigures()
		}
		return json.NewEncoder(w).Encode(out)
	}
	fmt.Fprintf(w, "\n%-38s %10s %22s %14s %5s %8s %9s %9s\n", "policy", "model", "real Karpenter", "model / real", "peak", "launched", "pend-p50", "pend-p99")
	for _, r := range results {
		real, ratio := "-", "-"
		for _, f := range KarpenterFigures() {
			if f.Policy == r.Policy && workloadScale == 1 {
				var s []string
				lo, hi := math.Inf(1), math.Inf(-1)
				for _, v := range f.NodeHours {
					s = append(s, fmt.Sprintf("%.1f", v))
					lo, hi = math.Min(lo, r.NodeHours/v), math.Max(hi, r.NodeHours/v)
				}
				real = strings.Join(s, ", ")
				ratio = fmt.Sprintf("%.2f", lo)
				if hi-lo > 0.005 {
					ratio = fmt.Sprintf("%.2f-%.2f", lo, hi)
				}
			}
		}
		fmt.Fprintf(w, "%-38s %10.1f %22s %14s %5d %8d %8.1fs %8.1fs\n", r.Policy, r.NodeHours, real, ratio, r.PeakNodes, r.Launched, r.PendingP50, r.PendingP99)
	}
	fmt.Fprintf(w, "%-38s %10.1f   (fluid bound: free repacking, instant nodes; no policy does better)\n", "lower bound", bound.NodeHours)
	def, gs := find(results, "default+WhenEmpty"), find(results, "gpuslice+WhenEmpty")
	if def != nil && gs != nil && def.NodeHours > 0 {
		fmt.Fprintf(w, "node_hours_lower_bound=%.1f\n", bound.NodeHours)
		fmt.Fprintf(w, "node_hours_ratio=%.3f\n", gs.NodeHours/def.NodeHours)
	}
	return nil
}
