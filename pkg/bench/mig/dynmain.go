package mig

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gpuslice/gpuslice/pkg/bench/benchutil"
	"github.com/gpuslice/gpuslice/pkg/repartition"
	"github.com/gpuslice/gpuslice/pkg/sim"
	"github.com/gpuslice/gpuslice/pkg/topology"
)

// StaticLayout is a static partitioning of the dynamic benchmark's cluster:
// a mig-parted named config for the A100 nodes and one for the H100 nodes
// (Default: DefaultCluster's mixture of named configs).
type StaticLayout struct {
	Name       string
	A100, H100 string
	Default    bool
}

// StaticLayouts are the static layouts the dynamic benchmark compares
// with: DefaultCluster's mixture and every uniform named config that
// exists on both products.
func StaticLayouts() []StaticLayout {
	return []StaticLayout{
		{Name: "default-mixture", Default: true},
		{Name: "all-balanced", A100: "all-balanced", H100: "all-balanced"},
		{Name: "all-1g", A100: "all-1g.5gb", H100: "all-1g.10gb"},
		{Name: "all-2g", A100: "all-2g.10gb", H100: "all-2g.20gb"},
		{Name: "all-3g", A100: "all-3g.20gb", H100: "all-3g.40gb"},
		{Name: "all-7g", A100: "all-7g.40gb", H100: "all-7g.80gb"},
	}
}

// dynamicCluster is DefaultCluster's GPU nodes (8 DGX A100 40GB, 8 DGX
// H100 80GB) with the static layout applied.
func dynamicCluster(l StaticLayout, cat *topology.Catalog, parted *topology.MIGParted) (ClusterSpec, error) {
	c := DefaultCluster()
	var groups []NodeGroup
	for _, g := range c.Groups {
		if g.GPUs == 0 {
			continue
		}
		groups = append(groups, g)
	}
	if !l.Default {
		a, h := groups[0], groups[0]
		for _, g := range groups {
			if g.Product == a100Product {
				a = g
			} else {
				h = g
			}
		}
		a.Prefix, a.Count, a.Layout = "a100", 8, l.A100
		h.Prefix, h.Count, h.Layout = "h100", 8, l.H100
		groups = []NodeGroup{a, h}
	}
	c.Groups = groups
	return c.Resolve(cat, parted)
}

// DynamicMain is `gpuslice-bench mig --dynamic`.
func DynamicMain(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("mig --dynamic", flag.ContinueOnError)
	fs.SetOutput(stdout)
	fs.Bool("dynamic", true, "demand that shifts over time; layouts that follow it (this mode)")
	partedPath := fs.String("mig-parted", "../shared/data/mig-parted-config-default.yaml", "NVIDIA mig-parted config-default.yaml with the named MIG layouts")
	schedCfg := fs.String("scheduler-config", "manifests/scheduler/config.yaml", "gpuslice's scheduler ConfigMap")
	profile := fs.String("profile", PolicyFragmentation, "scheduler profile of that ConfigMap every run uses")
	loadsFlag := fs.String("loads", "0.6,0.9,1.2", "offered loads (GPU-equivalent demand over GPUs), comma-separated; the last is the heaviest")
	seed := fs.Int64("seed", 1, "seed of arrivals, run times and tie-breaks")
	phaseLen := fs.Duration("phase", 3*time.Hour, "length of each demand phase (inference, training, mixed, inference)")
	patience := fs.Duration("patience", 30*time.Minute, "a pod pending longer is withdrawn")
	window := fs.Duration("window", time.Minute, "repartition planner's batching window")
	reconfig := fs.Duration("reconfig", 4*time.Minute, "MIG manager run, from the decision to allocatable showing the new layout (ConfigMap propagation ~1 min, pod-deletion waits and the run ~2 min, device plugin restart)")
	interval := fs.Duration("min-gpu-interval", 15*time.Minute, "least time between two changes of one GPU")
	maxNodes := fs.Int("max-nodes-in-flight", 4, "nodes reconfiguring at once, at most")
	minAge := fs.Duration("min-demand-age", time.Minute, "pending pods younger than this are not acted on")
	maxDrain := fs.Int("max-draining-gpus", 0, "GPUs drained at once, at most, so that they can change once their pods end (0: no drain, gpuslice-repartitioner's default)")
	drainAfter := fs.Duration("drain-after", 5*time.Minute, "a GPU is drained only for pods pending this long that no idle GPU serves")
	drainGain := fs.Float64("drain-min-gain", 0.1, "a GPU is drained only for a layout that strands this much less of the learned mix (GPU-equivalents)")
	maxDrainTime := fs.Duration("max-drain-time", time.Hour, "a drain whose GPU has not emptied by then is given up")
	staticsFlag := fs.String("statics", "all", "static layouts to compare with, comma-separated, or all: "+strings.Join(staticNames(), ", "))
	asJSON := fs.Bool("json", false, "also print one JSON object per run")
	parallel := fs.Int("parallel", runtime.GOMAXPROCS(0), "runs at once")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %v", fs.Args())
	}
	var loads []float64
	for _, s := range strings.Split(*loadsFlag, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil || v <= 0 {
			return fmt.Errorf("--loads: %q is not a positive number", s)
		}
		loads = append(loads, v)
	}
	if *parallel < 1 || *phaseLen <= 0 || *patience <= 0 || *window <= 0 || *reconfig < 0 {
		return fmt.Errorf("--parallel, --phase, --patience and --window must be positive, --reconfig not negative")
	}
	parted, err := topology.LoadMIGParted(*partedPath)
	if err != nil {
		return err
	}
	cfg, err := sim.LoadConfigMapFile(*schedCfg)
	if err != nil {
		return err
	}
	prof, err := sim.Profile(cfg, *profile)
	if err != nil {
		return err
	}
	cat := topology.NewCatalog()
	clusters := map[string]ClusterSpec{}
	statics, err := selectStatics(*staticsFlag)
	if err != nil {
		return err
	}
	for _, l := range statics {
		c, err := dynamicCluster(l, cat, parted)
		if err != nil {
			return fmt.Errorf("static layout %s: %w", l.Name, err)
		}
		clusters[l.Name] = c
	}
	pcfg := repartition.Config{MinGPUInterval: *interval, MaxNodesInFlight: *maxNodes, BackoffBase: 5 * time.Minute, BackoffMax: time.Hour, MinDemandAge: *minAge, Strategy: repartition.FragmentationAware,
		MaxDrainingGPUs: *maxDrain, DrainAfter: *drainAfter, MaxDrainTime: *maxDrainTime, DrainMinGain: *drainGain}
	if err := pcfg.Validate(); err != nil {
		return err
	}
	classes := DynamicClasses()
	phases := DynamicPhases()
	_, gpus := clusters[statics[0].Name].GPUNodes()

	type job struct {
		o    DynOptions
		load int
	}
	var jobs []job
	for li, load := range loads {
		base := DynOptions{Profile: prof, Load: load, Seed: *seed, PhaseLen: *phaseLen, Patience: *patience, Window: *window, Reconfig: *reconfig, Planner: pcfg, MixHalfLife: 200}
		for _, l := range statics {
			o := base
			o.Layout, o.Static, o.Cluster = LayoutStatic, l.Name, clusters[l.Name]
			jobs = append(jobs, job{o, li})
		}
		for _, lay := range []string{LayoutFirstFit, LayoutDynamic} {
			o := base
			o.Layout, o.Static, o.Cluster = lay, statics[0].Name, clusters[statics[0].Name]
			jobs = append(jobs, job{o, li})
		}
	}
	fmt.Fprintf(stdout, "# mig --dynamic: %d GPU nodes (half DGX A100 40GB, half DGX H100 80GB; %d GPUs, MIG strategy mixed), scheduler profile %s\n", gpus/8, gpus, *profile)
	fmt.Fprintf(stdout, "# demand: phases of %v each: %s; Poisson arrivals, exponential run times; offered loads %s; seed %d; patience %v\n",
		*phaseLen, phaseNames(phases), *loadsFlag, *seed, *patience)
	fmt.Fprintf(stdout, "# planners start from %s and ask a modelled MIG manager for layouts: window %v, run %v (node takes no GPU pod), min GPU interval %v, max nodes in flight %d, min demand age %v, max draining GPUs %d (drain after %v, max drain time %v, min gain %.2f)\n",
		statics[0].Name, *window, *reconfig, *interval, *maxNodes, *minAge, *maxDrain, *drainAfter, *maxDrainTime, *drainGain)
	results, err := benchutil.RunAll(ctx, len(jobs), *parallel, func(ctx context.Context, i int) (*DynResult, error) {
		j := jobs[i]
		arr, err := dynWorkload(cat, classes, phases, j.o.Load, gpus, j.o.PhaseLen, j.o.Seed)
		if err != nil {
			return nil, err
		}
		r, err := RunDynamic(ctx, j.o, arr)
		if err != nil {
			return nil, fmt.Errorf("%s/%s load %.2f: %w", j.o.Layout, j.o.Static, j.o.Load, err)
		}
		return r, nil
	})
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		for _, r := range results {
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
	}
	ratio := 0.0
	for li, load := range loads {
		var rs []*DynResult
		for i, j := range jobs {
			if j.load == li {
				rs = append(rs, results[i])
			}
		}
		best := bestStatic(rs)
		fmt.Fprintf(stdout, "\n## load %.2f: %d pods; best static layout: %s\n", load, rs[0].Pods, best.Static)
		if err := writeDynTable(stdout, rs, best); err != nil {
			return err
		}
		if best.Placed > 0 {
			// No layout policy places more than every pod that arrived.
			fmt.Fprintf(stdout, "ceiling: placing all %d arrived pods would be %+.1f%% against the best static layout\n", best.Pods, 100*(float64(best.Pods)/float64(best.Placed)-1))
		}
		if li == len(loads)-1 {
			if best.Placed > 0 {
				fmt.Fprintf(stdout, "placed_ratio_ceiling=%.3f\n", float64(best.Pods)/float64(best.Placed))
			}
			for _, r := range rs {
				if r.Layout == LayoutDynamic && best.Placed > 0 {
					ratio = float64(r.Placed) / float64(best.Placed)
				}
				if r.Layout == LayoutDynamic && best.UsedGPUHours > 0 {
					// Work served: GPU-equivalents in use over time, against
					// the best static layout (provisioned GPU-hours are the
					// same for every policy on this fixed cluster).
					fmt.Fprintf(stdout, "used_gpu_hours_ratio=%.3f\n", r.UsedGPUHours/best.UsedGPUHours)
				}
			}
		}
	}
	_, err = fmt.Fprintf(stdout, "placed_ratio=%.3f\n", ratio)
	return err
}

func staticNames() []string {
	var out []string
	for _, l := range StaticLayouts() {
		out = append(out, l.Name)
	}
	return out
}

// selectStatics picks static layouts by name; the first is always the
// default mixture, which the planners start from.
func selectStatics(list string) ([]StaticLayout, error) {
	all := StaticLayouts()
	if list == "all" {
		return all, nil
	}
	out := []StaticLayout{all[0]}
	for _, name := range strings.Split(list, ",") {
		name = strings.TrimSpace(name)
		found := false
		for _, l := range all {
			if l.Name == name {
				found = true
				if !l.Default {
					out = append(out, l)
				}
			}
		}
		if !found {
			return nil, fmt.Errorf("--statics: unknown static layout %q (known: %s)", name, strings.Join(staticNames(), ", "))
		}
	}
	return out, nil
}

func phaseNames(ps []Phase) string {
	names := make([]string, len(ps))
	for i, p := range ps {
		names[i] = p.Name
	}
	return strings.Join(names, " → ")
}

// bestStatic is the static run that placed the most pods (ties: fewer
// busy GPU-hours).
func bestStatic(rs []*DynResult) *DynResult {
	var best *DynResult
	for _, r := range rs {
		if r.Layout != LayoutStatic {
			continue
		}
		if best == nil || r.Placed > best.Placed || (r.Placed == best.Placed && r.BusyGPUHours < best.BusyGPUHours) {
			best = r
		}
	}
	return best
}

func writeDynTable(w io.Writer, rs []*DynResult, best *DynResult) error {
	sorted := append([]*DynResult(nil), rs...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Layout != LayoutStatic && sorted[j].Layout == LayoutStatic })
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "layouts\tplaced\tvs best static\twithdrawn\tpending at end\twait p50 (s)\twait p99 (s)\tbusy GPU-h\tused GPU-h\tGPUs rebuilt\tMIG manager runs\tnode-h reconfiguring\tdrains\t")
	for _, r := range sorted {
		name := r.Layout
		if r.Layout == LayoutStatic {
			name = "static " + r.Static
		}
		vs := "-"
		if best != nil && best.Placed > 0 {
			vs = fmt.Sprintf("%+.1f%%", 100*(float64(r.Placed)/float64(best.Placed)-1))
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\t%.0f\t%.0f\t%.1f\t%.1f\t%d\t%d\t%.1f\t%d\t\n", name, r.Placed, vs, r.Withdrawn, r.Pending, r.WaitP50, r.WaitP99, r.BusyGPUHours, r.UsedGPUHours, r.Reconfigurations, r.NodeRuns, r.ReconfigNodeHours, r.Drains)
	}
	return tw.Flush()
}
