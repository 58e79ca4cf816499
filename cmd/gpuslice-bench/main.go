// Command gpuslice-bench measures gpuslice on workloads it did not write:
//
//	gpuslice-bench openb      replay the openb trace (FGD protocol) with gpuslice and baseline policies
//	gpuslice-bench mig        place a MIG request mix on A100/H100 nodes with NVIDIA's layouts
//	gpuslice-bench throughput scheduling throughput against a real kube-apiserver, gpuslice vs stock
//	gpuslice-bench autoscale  a workload that comes and goes on a cluster the real Karpenter scales: node-hours and dollars
//	gpuslice-bench autoscale-trace  the openb trace with departures on a cluster a model of Karpenter scales: node-hours per policy
//
// Each subcommand takes -h for its flags. The packing benchmarks run the real
// GPUSlice plugin inside the scheduler framework, in-process.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/gpuslice/gpuslice/pkg/bench/autoscale"
	"github.com/gpuslice/gpuslice/pkg/bench/autoscaletrace"
	"github.com/gpuslice/gpuslice/pkg/bench/mig"
	"github.com/gpuslice/gpuslice/pkg/bench/openb"
	"github.com/gpuslice/gpuslice/pkg/bench/throughput"
)

type command func(ctx context.Context, args []string, stdout io.Writer) error

func main() {
	commands := map[string]command{
		"openb":           openb.Main,
		"mig":             mig.Main,
		"throughput":      throughput.Main,
		"autoscale":       autoscale.Main,
		"autoscale-trace": autoscaletrace.Main,
	}
	if len(os.Args) < 2 || commands[os.Args[1]] == nil {
		fmt.Fprintln(os.Stderr, "usage: gpuslice-bench openb|mig|throughput|autoscale|autoscale-trace [flags] (-h for flags)")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := commands[os.Args[1]](ctx, os.Args[2:], os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "gpuslice-bench %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}
