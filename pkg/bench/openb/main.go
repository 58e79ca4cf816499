package openb

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/gpuslice/gpuslice/pkg/bench/benchutil"

	schedconfig "k8s.io/kubernetes/pkg/scheduler/apis/config"

	"github.com/gpuslice/gpuslice/pkg/sim"
)

// Main is `gpuslice-bench openb`.
func Main(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("openb", flag.ContinueOnError)
	nodesPath := fs.String("nodes", "../shared/data/openb/csv/openb_node_list_gpu_node.csv", "node list CSV (sn,cpu_milli,memory_mib,gpu,model)")
	podsPath := fs.String("pods", "../shared/data/openb/csv/openb_pod_list_default.csv", "pod list CSV (name,cpu_milli,memory_mib,num_gpu,gpu_milli[,gpu_spec,...]); any variant of the trace")
	seeds := fs.String("seeds", "42-51", "seeds: ranges and lists, e.g. 42-51 or 42,45")
	policies := fs.String("policies", "all", "comma-separated policies, or all: "+strings.Join(policyNames(), ", "))
	asJSON := fs.Bool("json", false, "print one JSON object per point (policy, seed, arrived_pct, unallocated_gpu_pct, ...)")
	plotPath := fs.String("plot", "", "draw unallocated GPU % against arrived workload (median over seeds) per policy to this PNG")
	tune := fs.Float64("tune", 1.3, "inflate the workload to this multiple of the cluster's GPU capacity")
	step := fs.Float64("step", 1, "report a point every this many percent of GPU capacity arrived")
	schedCfg := fs.String("scheduler-config", "manifests/scheduler/config.yaml", "gpuslice's scheduler ConfigMap (profiles gpuslice-binpack, gpuslice-fragmentation-aware, gpuslice-spread)")
	percent := fs.Int("percentage-of-nodes-to-score", -1, "override percentageOfNodesToScore of the framework policies (-1: as configured; kube-scheduler's adaptive default when unset)")
	parallel := fs.Int("parallel", runtime.GOMAXPROCS(0), "replays run at once")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile to this file")
	breakdown := fs.Bool("breakdown", false, "before the summary, print where the capacity went at 100 % arrived: failed pods' GPU request by shape, idle GPU by cause")
	floor := fs.Bool("floor", false, "before the summary, print per seed the idle GPU that packing the sharing pods arrived by 100 % leaves at best (offline, CPU and memory ignored)")
	replot := fs.String("replot", "", "only draw --plot from this file of --json output (the points of an earlier run), replaying nothing")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *replot != "" {
		if *plotPath == "" {
			return fmt.Errorf("--replot needs --plot")
		}
		runs, err := readPoints(*replot)
		if err != nil {
			return err
		}
		if err := writePlot(*plotPath, runs, *podsPath); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "# plot of %d runs from %s written to %s\n", len(runs), *replot, *plotPath)
		return nil
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	seedList, err := benchutil.ParseSeeds(*seeds)
	if err != nil {
		return err
	}
	nodes, err := ReadNodes(*nodesPath)
	if err != nil {
		return err
	}
	pods, err := ReadPods(*podsPath)
	if err != nil {
		return err
	}
	factories, err := selectPolicies(*policies, *schedCfg, *percent)
	if err != nil {
		return err
	}
	if *parallel < 1 {
		return fmt.Errorf("--parallel must be at least 1")
	}
	fmt.Fprintf(stdout, "# openb: %d nodes (%d GPUs), %d pods from %s; seeds %s; tune %.2f; policies %s; GOMAXPROCS %d\n",
		len(nodes), gpuCount(nodes), len(pods), *podsPath, *seeds, *tune, strings.Join(names(factories), ","), runtime.GOMAXPROCS(0))

	runs, err := replayAll(ctx, factories, seedList, ReplayOptions{Nodes: nodes, Pods: pods, Tune: *tune, Step: *step}, *parallel)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		for _, r := range runs {
			for _, p := range r.Points {
				if err := enc.Encode(p); err != nil {
					return err
				}
			}
		}
	}
	if *plotPath != "" {
		if err := writePlot(*plotPath, runs, *podsPath); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "# plot written to %s\n", *plotPath)
	}
	if *breakdown {
		if err := writeBreakdown(stdout, factories, runs); err != nil {
			return err
		}
	}
	if *floor {
		if err := writeFloor(stdout, nodes, pods, seedList, *tune); err != nil {
			return err
		}
	}
	return writeSummary(stdout, factories, runs)
}

// replayAll runs every (policy, seed) replay, parallel replays at a time,
// and returns the runs ordered by policy (as given) and seed.
func replayAll(ctx context.Context, factories []Factory, seeds []int64, base ReplayOptions, parallel int) ([]*Run, error) {
	return benchutil.RunGrid(ctx, factories, seeds, parallel, func(ctx context.Context, f Factory, seed int64) (*Run, error) {
		o := base
		o.Seed = seed
		return Replay(ctx, f, o)
	})
}

// policyNames lists every policy in report order.
func policyNames() []string {
	out := []string{"gpuslice-binpack", "gpuslice-fragmentation-aware", "gpuslice-spread"}
	for _, f := range Baselines() {
		out = append(out, f.Name)
	}
	return append(out, "kube-LeastAllocated", "kube-MostAllocated")
}

// selectPolicies builds the factories asked for. gpuslice's policies are
// the shipped profiles; the kube-scheduler ones are the stock profile with
// NodeResourcesFit's LeastAllocated (the default) or MostAllocated.
func selectPolicies(list, schedCfg string, percent int) ([]Factory, error) {
	all := map[string]func() (Factory, error){}
	for _, f := range Baselines() {
		all[f.Name] = func() (Factory, error) { return f, nil }
	}
	shipped := func(name, profile string) func() (Factory, error) {
		return func() (Factory, error) {
			cfg, err := sim.LoadConfigMapFile(schedCfg)
			if err != nil {
				return Factory{}, err
			}
			prof, err := sim.Profile(cfg, profile)
			if err != nil {
				return Factory{}, err
			}
			return FrameworkFactory(name, withPercent(prof, percent)), nil
		}
	}
	stock := func(name, fitArgs string) func() (Factory, error) {
		return func() (Factory, error) {
			cfg, err := sim.StockConfig(fitArgs)
			if err != nil {
				return Factory{}, err
			}
			prof, err := sim.Profile(cfg, "default-scheduler")
			if err != nil {
				return Factory{}, err
			}
			return FrameworkFactory(name, withPercent(prof, percent)), nil
		}
	}
	all["gpuslice-binpack"] = shipped("gpuslice-binpack", "gpuslice-binpack")
	all["gpuslice-fragmentation-aware"] = shipped("gpuslice-fragmentation-aware", "gpuslice-fragmentation-aware")
	all["gpuslice-spread"] = shipped("gpuslice-spread", "gpuslice-spread")
	all["kube-LeastAllocated"] = stock("kube-LeastAllocated", "")
	all["kube-MostAllocated"] = stock("kube-MostAllocated", MostAllocatedArgs)

	want := policyNames()
	if list != "all" {
		want = nil
		for _, p := range strings.Split(list, ",") {
			if p = strings.TrimSpace(p); p != "" {
				want = append(want, p)
			}
		}
	}
	var out []Factory
	for _, name := range want {
		mk, ok := all[name]
		if !ok {
			return nil, fmt.Errorf("unknown policy %q (known: %s)", name, strings.Join(policyNames(), ", "))
		}
		f, err := mk()
		if err != nil {
			return nil, fmt.Errorf("policy %s: %w", name, err)
		}
		out = append(out, f)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no policy selected")
	}
	return out, nil
}

// MostAllocatedArgs is NodeResourcesFit's MostAllocated with the GPU
// resource weighed like CPU and memory (kube-scheduler's documented way to
// bin-pack extended resources).
const MostAllocatedArgs = `      scoringStrategy:
        type: MostAllocated
        resources:
        - name: cpu
          weight: 1
        - name: memory
          weight: 1
        - name: nvidia.com/gpu
          weight: 1
`

func withPercent(prof *schedconfig.KubeSchedulerProfile, percent int) *schedconfig.KubeSchedulerProfile {
	if percent >= 0 {
		p := int32(percent)
		prof.PercentageOfNodesToScore = &p
	}
	return prof
}

func names(fs []Factory) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = f.Name
	}
	return out
}

func gpuCount(nodes []Node) int {
	n := 0
	for _, x := range nodes {
		n += x.GPUs
	}
	return n
}

func seconds(d time.Duration) float64 { return d.Seconds() }

// readPoints reads --json output (one Point per line; other lines, such as
// the "# ..." headers and the summary, are skipped) back into runs, one per
// policy and seed, in order of first appearance.
func readPoints(path string) ([]*Run, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	type key struct {
		policy string
		seed   int64
	}
	index := map[key]*Run{}
	var runs []*Run
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var p Point
		if err := json.Unmarshal([]byte(line), &p); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, i+1, err)
		}
		if p.Policy == "" {
			return nil, fmt.Errorf("%s:%d: a point without a policy", path, i+1)
		}
		k := key{p.Policy, p.Seed}
		r := index[k]
		if r == nil {
			r = &Run{Policy: p.Policy, Seed: p.Seed}
			index[k] = r
			runs = append(runs, r)
		}
		r.Points = append(r.Points, p)
	}
	if len(runs) == 0 {
		return nil, fmt.Errorf("%s: no points (want the output of --json)", path)
	}
	return runs, nil
}
