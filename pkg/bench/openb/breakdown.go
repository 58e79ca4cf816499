package openb

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/gpuslice/gpuslice/pkg/bench/benchutil"
)

// Breakdown says where a replay's GPU capacity went unused once 100 % of it
// had arrived: the GPU request of the pods that failed, by shape, and the
// idle GPU capacity, by why it sat idle. Both are in GPUs.
type Breakdown struct {
	// FailedGPUs is the GPU request of the failed pods by shape ("share"
	// for pods with a fraction of one GPU, "1", "2", ... whole GPUs).
	FailedGPUs map[string]float64
	// FailedCPUOnly counts the failed pods that asked for no GPU.
	FailedCPUOnly int
	// Slivers is the idle share of GPUs with less than SliverMilli free,
	// wherever they are: leftovers that only the smallest sharing pods
	// fit (on the default trace, what each 0.81-GPU pod leaves).
	Slivers float64
	// CPUBound is the other idle GPU capacity (whole GPUs, and pieces of
	// at least SliverMilli) on nodes with less than CPUBoundCores cores
	// free: CPU, not GPU, ran out there.
	CPUBound float64
	// Partial is the idle share, SliverMilli or more, of partly used GPUs
	// on the other nodes.
	Partial float64
	// Whole is whole idle GPUs on the other nodes.
	Whole float64
}

// CPUBoundCores is the free CPU under which a node's idle GPUs count as
// CPU-bound: fewer cores than most GPU pods of the trace ask for.
const CPUBoundCores = 4

// SliverMilli is the free share under which a partly used GPU's leftover
// counts as a sliver: below every sharing pod of the default trace but
// its smallest (0.05–0.16 GPU, 1.3 % of its pods), whatever CPU is left.
const SliverMilli = 200

// breakdownShapes are the shapes in the order they are printed.
var breakdownShapes = []string{"share", "1", "2", "4", "8"}

// shape is how a pod is counted in FailedGPUs.
func shape(p *Pod) string {
	if p.Sharing() {
		return "share"
	}
	return fmt.Sprint(p.NumGPU)
}

// observeFailure counts a failed pod.
func (b *Breakdown) observeFailure(p *Pod) {
	if p.NumGPU == 0 {
		b.FailedCPUOnly++
		return
	}
	if b.FailedGPUs == nil {
		b.FailedGPUs = map[string]float64{}
	}
	b.FailedGPUs[shape(p)] += float64(p.GPURequest()) / MilliPerGPU
}

// observeIdle splits the cluster's idle GPU capacity.
func (b *Breakdown) observeIdle(c *Cluster) {
	b.Slivers, b.CPUBound, b.Partial, b.Whole = 0, 0, 0, 0
	for _, n := range c.Nodes {
		for _, g := range n.GPULeft {
			idle := float64(g) / MilliPerGPU
			switch {
			case g < SliverMilli:
				b.Slivers += idle
			case n.CPULeft < CPUBoundCores*1000:
				b.CPUBound += idle
			case g == MilliPerGPU:
				b.Whole += idle
			default:
				b.Partial += idle
			}
		}
	}
}

// writeBreakdown prints, per policy, the median over seeds of each part of
// the breakdown at 100 % arrived.
func writeBreakdown(w io.Writer, factories []Factory, runs []*Run) error {
	fmt.Fprintf(w, "where the capacity went at 100 %% arrived (GPUs, median over seeds): GPU request of failed pods by shape; idle GPU in slivers (GPUs with < %.2f free), on nodes with < %d free cores (cpu-bound), in the rest of partly used GPUs, in whole GPUs\n", float64(SliverMilli)/MilliPerGPU, CPUBoundCores)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "policy\t")
	for _, s := range breakdownShapes {
		fmt.Fprintf(tw, "failed %s\t", s)
	}
	fmt.Fprintln(tw, "failed cpu-only pods\tidle slivers\tidle cpu-bound\tidle partial\tidle whole\t")
	for _, f := range factories {
		cols := make([][]float64, len(breakdownShapes)+5)
		for _, r := range runs {
			if r.Policy != f.Name || r.Breakdown == nil {
				continue
			}
			b := r.Breakdown
			for i, s := range breakdownShapes {
				cols[i] = append(cols[i], b.FailedGPUs[s])
			}
			k := len(breakdownShapes)
			cols[k] = append(cols[k], float64(b.FailedCPUOnly))
			cols[k+1] = append(cols[k+1], b.Slivers)
			cols[k+2] = append(cols[k+2], b.CPUBound)
			cols[k+3] = append(cols[k+3], b.Partial)
			cols[k+4] = append(cols[k+4], b.Whole)
		}
		if len(cols[0]) == 0 {
			continue
		}
		fmt.Fprintf(tw, "%s\t", f.Name)
		for i, c := range cols {
			if i == len(breakdownShapes) {
				fmt.Fprintf(tw, "%.0f\t", benchutil.Median(c))
				continue
			}
			fmt.Fprintf(tw, "%.1f\t", benchutil.Median(c))
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}
