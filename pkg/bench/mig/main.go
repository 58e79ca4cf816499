// Package mig is `gpuslice-bench mig`: a MIG request mix placed on A100 and
// H100 nodes partitioned with NVIDIA's named mig-parted layouts, by gpuslice
// (binpack and fragmentation-aware) and by kube-scheduler's default profile
// (LeastAllocated) and its MostAllocated variant, each in the real scheduler
// framework in-process (test/bench/sim). It reports how many GPU nodes and
// GPUs hold at least one pod after the whole mix is placed, one pod at a
// time and without departures: the nodes an autoscaler or operator could
// not drain or repartition.
//
// The cluster is DefaultCluster, the mix DefaultMix; both are documented
// there. Layouts are read from mig-parted's config-default.yaml (--mig-parted),
// never copied into the repository.
package mig

import (
	"context"
	"flag"
	"fmt"
	"io"
	"runtime"
	"sort"
	"strings"

	"github.com/gpuslice/gpuslice/pkg/bench/benchutil"

	"github.com/gpuslice/gpuslice/pkg/topology"
)

// Main runs the mig benchmark with command-line args, writing results to stdout.
func Main(ctx context.Context, args []string, stdout io.Writer) error {
	for _, a := range args {
		if a == "--dynamic" || a == "-dynamic" || a == "--dynamic=true" || a == "-dynamic=true" {
			return DynamicMain(ctx, args, stdout)
		}
	}
	fs := flag.NewFlagSet("mig", flag.ContinueOnError)
	fs.SetOutput(stdout)
	partedPath := fs.String("mig-parted", "../shared/data/mig-parted-config-default.yaml", "NVIDIA mig-parted config-default.yaml with the named MIG layouts")
	schedCfg := fs.String("scheduler-config", "manifests/scheduler/config.yaml", "gpuslice's scheduler ConfigMap (profile gpuslice-binpack)")
	seeds := fs.String("seeds", "1-5", "seeds (arrival order and tie-breaks): ranges and lists, e.g. 1-5 or 1,3")
	nPods := fs.Int("pods", 240, "pods of the mix to place")
	policies := fs.String("policies", "all", "comma-separated policies, or all: "+strings.Join(PolicyNames(), ", "))
	asJSON := fs.Bool("json", false, "also print one JSON object per (policy, seed) and per policy summary")
	parallel := fs.Int("parallel", runtime.GOMAXPROCS(0), "runs at once")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %v", fs.Args())
	}
	seedList, err := benchutil.ParseSeeds(*seeds)
	if err != nil {
		return err
	}
	if *parallel < 1 || *nPods < 1 {
		return fmt.Errorf("--parallel and --pods must be at least 1")
	}
	cluster := DefaultCluster()
	parted, err := topology.LoadMIGParted(*partedPath)
	if err != nil {
		return err
	}
	cat := topology.NewCatalog()
	if cluster, err = cluster.Resolve(cat, parted); err != nil {
		return err
	}
	var names []string
	for _, n := range strings.Split(*policies, ",") {
		if n = strings.TrimSpace(n); n != "" {
			names = append(names, n)
		}
	}
	pols, err := Policies(names, *schedCfg, cluster.GPUResources())
	if err != nil {
		return err
	}
	mix := DefaultMix()
	if err := writeHeader(stdout, cluster, mix, *nPods, *partedPath, *seeds); err != nil {
		return err
	}

	results, err := runAll(ctx, pols, cluster, mix, *nPods, seedList, *parallel)
	if err != nil {
		return err
	}
	polNames := make([]string, len(pols))
	for i, p := range pols {
		polNames[i] = p.Name
	}
	sums := Summarize(polNames, results)
	if err := WriteUnplaced(stdout, results); err != nil {
		return err
	}
	if *asJSON {
		if err := WriteJSON(stdout, results, sums); err != nil {
			return err
		}
	}
	if err := WriteTable(stdout, sums); err != nil {
		return err
	}
	// gpuslice must predict the device plugin's pick exactly.
	for _, r := range results {
		for _, p := range pols {
			if p.Name == r.Policy && p.GPUSlice && r.Mispredicted != 0 {
				return fmt.Errorf("%s seed %d: %d mispredicted device picks", r.Policy, r.Seed, r.Mispredicted)
			}
		}
	}
	return nil
}

// runAll runs every (policy, seed), parallel at a time, and returns the
// results ordered by policy (as given), then seed.
func runAll(ctx context.Context, pols []Policy, cluster ClusterSpec, mix []Class, nPods int, seeds []int64, parallel int) ([]*Result, error) {
	return benchutil.RunGrid(ctx, pols, seeds, parallel, func(ctx context.Context, p Policy, seed int64) (*Result, error) {
		// Every run gets its own pod objects (same seed: same order).
		pods, err := Workload(mix, nPods, seed)
		if err == nil {
			var r *Result
			if r, err = Run(ctx, p, cluster, pods, seed); err == nil {
				return r, nil
			}
		}
		return nil, fmt.Errorf("%s seed %d: %w", p.Name, seed, err)
	})
}

// writeHeader describes the cluster, the mix and how much of each MIG
// resource the mix asks for.
func writeHeader(w io.Writer, c ClusterSpec, mix []Class, nPods int, partedPath, seeds string) error {
	nodes, gpus := c.GPUNodes()
	all := 0
	for _, g := range c.Groups {
		all += g.Count
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# mig: %d nodes (%d GPU nodes, %d GPUs; MIG strategy mixed, no time-slicing; device plugin policy %s); layouts from %s\n",
		all, nodes, gpus, c.Policy, partedPath)
	for _, g := range c.Groups {
		if g.GPUs == 0 {
			fmt.Fprintf(&b, "#   %d x %s: CPU only, %d CPU, %d GiB\n", g.Count, g.Prefix, g.CPUMilli/1000, g.MemoryGiB)
			continue
		}
		fmt.Fprintf(&b, "#   %d x %s: %d x %s, %s = %s per GPU; %d CPU, %d GiB\n",
			g.Count, g.Prefix, g.GPUs, g.Product, g.Layout, profileCounts(g.Profiles), g.CPUMilli/1000, g.MemoryGiB)
	}
	counts, err := Counts(mix, nPods)
	if err != nil {
		return err
	}
	demand := map[string]int64{}
	var parts []string
	for i := range mix {
		parts = append(parts, fmt.Sprintf("%s %d", mix[i].Name, counts[i]))
		for r, n := range mix[i].Devices() {
			demand[r] += n * int64(counts[i])
		}
	}
	fmt.Fprintf(&b, "# mix: %d pods, one at a time, no departures: %s; seeds %s\n", nPods, strings.Join(parts, ", "), seeds)
	capacity := c.Capacity()
	var load []string
	for _, r := range c.GPUResources() {
		load = append(load, fmt.Sprintf("%s %d/%d (%.0f%%)", strings.TrimPrefix(r, topology.MIGResourcePrefix), demand[r], capacity[r], 100*float64(demand[r])/float64(capacity[r])))
	}
	fmt.Fprintf(&b, "# MIG devices asked/advertised: %s\n", strings.Join(load, ", "))
	b.WriteString("# non-empty: holding at least one MIG device in use at the end. Among a node's free MIG devices the kubelet's\n" +
		"# pick is arbitrary; the simulated one takes the first in GPU order (gpuslice's prediction), for every policy alike.\n")
	_, err = io.WriteString(w, b.String())
	return err
}

// profileCounts writes a sorted profile list as "1g.5gb x2 + 2g.10gb".
func profileCounts(profiles []string) string {
	n := map[string]int{}
	var order []string
	for _, p := range profiles {
		if n[p] == 0 {
			order = append(order, p)
		}
		n[p]++
	}
	sort.Strings(order)
	parts := make([]string, len(order))
	for i, p := range order {
		parts[i] = p
		if n[p] > 1 {
			parts[i] = fmt.Sprintf("%d x %s", n[p], p)
		}
	}
	return strings.Join(parts, " + ")
}
