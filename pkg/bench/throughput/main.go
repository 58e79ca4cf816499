// Package throughput measures gpuslice's scheduling throughput in the style
// of Kubernetes' scheduler_perf: a real etcd and kube-apiserver
// (test/framework), thousands of simulated GPU nodes, and one in-process
// gpuslice-scheduler with two profiles — the stock `default-scheduler` and
// the shipped `gpuslice-binpack` (manifests/scheduler/config.yaml) — that
// schedule the same pods on the same nodes, one profile after the other.
//
// Each node is a Ready Node advertising --gpus-per-node nvidia.com/gpu
// (whole GPUs of --product, no MIG, no time-slicing), its GPUNode and one
// exporter Lease written at setup. GPUSlice's heartbeatTimeout is raised to
// an hour so that no Lease needs renewing during the run. Pods ask for
// nvidia.com/gpu (--pod-gpus, 1 by default), 100m CPU and 128Mi memory.
//
// A round runs the stock phase, then the gpuslice phase, each in a
// namespace of its own; between phases the pods are deleted and the run
// waits until the scheduler's cache is empty, so every phase starts from
// empty nodes. Per phase it reports pods/s (pods ÷ time from the first create
// sent to the last binding observed through a pod informer), the median of
// per-second binding rates, p50/p99 of the scheduler's own
// scheduling_attempt_duration_seconds histogram for that profile
// (interpolated from its buckets like histogram_quantile), p50/p99 of the
// end-to-end latency (binding observed − create sent), and, to explain the
// figures, the CPU time of the scheduler process, kube-apiserver and etcd and
// the API requests per pod. With --rounds > 1 the figures are medians over
// rounds. The last line of its output is
// `throughput_ratio=<gpuslice pods/s ÷ stock pods/s>`.
//
// Both profiles run in one process with one set of informers: GPUSlice's
// pod handler (its cache counts every GPU pod) runs during the stock phase
// too, as it would in a cluster. The shipped profile lists GPUSlice first at
// the bind extension point: it binds its pods with the assignment in the
// Binding (see the plugin's bind.go), one API write per pod as for stock.
//
// Files: main.go (flags, the run), setup.go (control plane, nodes),
// config.go (scheduler configuration), watch.go (pod informer, per-phase
// trackers), phase.go (one measured phase), metrics.go (the scheduler's
// histograms), apiserver.go (the API server's request counts), cpu.go (CPU
// time per process), report.go (table, JSON, ratio).
package throughput

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"
)

// options are the benchmark's settings, from the command line.
type options struct {
	nodes         int
	gpusPerNode   int
	pods          int
	podGPUs       []int64 // GPUs per pod, cycled over the pods
	product       string
	rounds        int
	warmup        int
	timeout       time.Duration
	stall         time.Duration
	json          bool
	cpuProfile    string
	setupWorkers  int
	createWorkers int
	dir           string
	stockBatched  bool

	// inspect, when set (tests), is called after each measured phase, while
	// its pods still exist, before they are deleted.
	inspect func(ctx context.Context, kube kubernetes.Interface, ph phaseSpec) error
}

// Main runs the throughput benchmark with command-line args, writing results to stdout.
func Main(ctx context.Context, args []string, stdout io.Writer) error {
	o, err := parseFlags(args, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	return run(ctx, o, stdout)
}

// parseFlags parses the "throughput" flag set; usage goes to out.
func parseFlags(args []string, out io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("throughput", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.IntVar(&o.nodes, "nodes", 5000, "simulated GPU nodes")
	fs.IntVar(&o.gpusPerNode, "gpus-per-node", 8, "whole GPUs per node (no MIG, no time-slicing)")
	fs.IntVar(&o.pods, "pods", 10000, "pods per profile and round")
	podGPUs := fs.String("pod-gpus", "1", "nvidia.com/gpu per pod, a comma-separated list cycled over the pods (e.g. 1,1,2,4)")
	fs.StringVar(&o.product, "product", "NVIDIA H100 80GB HBM3", "GPU model of every node (NVML name)")
	fs.IntVar(&o.rounds, "rounds", 1, "rounds of (stock, gpuslice); figures are medians over rounds")
	fs.IntVar(&o.warmup, "warmup", 20, "unmeasured pods per profile scheduled first (informers synced, connections open)")
	fs.DurationVar(&o.timeout, "timeout", 45*time.Minute, "limit for the whole run, setup included")
	fs.DurationVar(&o.stall, "stall", 2*time.Minute, "fail a phase when no pod was bound for this long")
	fs.BoolVar(&o.json, "json", false, "also print one JSON object per profile")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of this process (scheduler included) during round 1's gpuslice phase to this file, and of its stock phase to FILE.stock")
	fs.IntVar(&o.setupWorkers, "setup-workers", 64, "concurrent workers creating nodes, GPUNodes and Leases")
	fs.IntVar(&o.createWorkers, "create-workers", 32, "concurrent workers creating pods")
	fs.BoolVar(&o.stockBatched, "stock-batched", false, "also run the stock plugins without the system-default topology spreading (profile default-scheduler-batched, whose pods the scheduler batches like gpuslice's), last in each round")
	fs.StringVar(&o.dir, "dir", "", "directory for the control plane's state and logs (default: a temporary one, removed at the end)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	var err error
	if o.podGPUs, err = parseGPUList(*podGPUs); err != nil {
		return nil, fmt.Errorf("--pod-gpus: %w", err)
	}
	return o, o.validate()
}

func parseGPUList(s string) ([]int64, error) {
	var out []int64
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.ParseInt(strings.TrimSpace(f), 10, 64)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive integer", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func (o *options) validate() error {
	switch {
	case o.nodes < 1 || o.gpusPerNode < 1 || o.pods < 1 || o.rounds < 1:
		return errors.New("--nodes, --gpus-per-node, --pods and --rounds must be positive")
	case o.warmup < 0:
		return errors.New("--warmup must not be negative")
	case o.setupWorkers < 1 || o.createWorkers < 1:
		return errors.New("--setup-workers and --create-workers must be positive")
	case o.timeout <= 0 || o.stall <= 0:
		return errors.New("--timeout and --stall must be positive")
	}
	for _, g := range o.podGPUs {
		if g > int64(o.gpusPerNode) {
			return fmt.Errorf("a pod asking for %d GPUs cannot fit a node with %d", g, o.gpusPerNode)
		}
	}
	// Every pod must fit at once: a phase ends when all are bound.
	if need, have := o.gpuDemand(o.pods), int64(o.nodes)*int64(o.gpusPerNode); need > have {
		return fmt.Errorf("%d pods ask for %d GPUs, the %d nodes have %d", o.pods, need, o.nodes, have)
	}
	return nil
}

// gpusOf returns the GPUs pod i asks for.
func (o *options) gpusOf(i int) int64 { return o.podGPUs[i%len(o.podGPUs)] }

// gpuDemand returns the GPUs the first n pods ask for together.
func (o *options) gpuDemand(n int) int64 {
	var sum int64
	for i := range n {
		sum += o.gpusOf(i)
	}
	return sum
}

// run is the benchmark: setup, warm-up, then per round the stock and the
// gpuslice phase, then the report.
func run(ctx context.Context, o *options, stdout io.Writer) error {
	began := time.Now()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	say := func(format string, a ...any) { fmt.Fprintf(stdout, format+"\n", a...) }

	say("gpuslice throughput benchmark (scheduler_perf style, real etcd + kube-apiserver on 127.0.0.1)")
	say("machine: %s", machine())
	env, err := setUp(ctx, o, say)
	if err != nil {
		return err
	}
	defer env.close()

	var results []phaseResult
	for round := 1; round <= o.rounds; round++ {
		for _, p := range o.profiles() {
			spec := phaseSpec{round: round, profile: p, namespace: fmt.Sprintf("throughput-%s-r%d", p.label, round), pods: o.pods}
			if round == 1 && o.cpuProfile != "" {
				spec.cpuProfile = o.cpuProfile
				if p.label == stockLabel {
					spec.cpuProfile += ".stock"
				}
			}
			res, err := env.measure(ctx, spec)
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", round, p.schedulerName, err)
			}
			say("round %d %-18s %d pods in %.2fs: %.1f pods/s (attempt p99 %s%s, e2e p99 %s)",
				round, p.schedulerName, res.Pods, res.Seconds, res.PodsPerSecond, atLeast(res.AttemptP99Beyond), ms(res.AttemptP99Seconds), ms(res.E2EP99Seconds))
			results = append(results, res)
			if o.inspect != nil {
				if err := o.inspect(ctx, env.kube, spec); err != nil {
					return fmt.Errorf("inspecting round %d, %s: %w", round, p.schedulerName, err)
				}
			}
			if err := env.clear(ctx, spec); err != nil {
				return fmt.Errorf("deleting the pods of round %d, %s: %w", round, p.schedulerName, err)
			}
		}
	}
	return report(stdout, o, env, results, time.Since(began))
}
