package openb

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/gpuslice/gpuslice/pkg/bench/benchutil"
	"github.com/gpuslice/gpuslice/pkg/bench/plot"
)

// writeSummary prints, per policy, the median over seeds of the unallocated
// GPU % at 100 % and 130 % arrived workload, the failed pods, and the time
// a replay took. It is the last thing printed.
func writeSummary(w io.Writer, factories []Factory, runs []*Run) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "policy\tseeds\tunalloc GPU % @100\t@130\tmin..max @100\tfailed pods\ts/replay\tmispredicted\t")
	for _, f := range factories {
		var at100, at130, failed, secs []float64
		mis := 0
		for _, r := range runs {
			if r.Policy != f.Name {
				continue
			}
			if v, ok := r.At(100); ok {
				at100 = append(at100, v)
			}
			if v, ok := r.At(130); ok {
				at130 = append(at130, v)
			}
			failed = append(failed, float64(r.Failed))
			secs = append(secs, seconds(r.Duration))
			if r.Sim != nil {
				mis += r.Sim.Mispredicted
			}
		}
		lo, hi := minMax(at100)
		fmt.Fprintf(tw, "%s\t%d\t%.2f\t%.2f\t%.2f..%.2f\t%.0f\t%.1f\t%d\t\n", f.Name, len(secs), benchutil.Median(at100), benchutil.Median(at130), lo, hi, benchutil.Median(failed), benchutil.Median(secs), mis)
	}
	return tw.Flush()
}

func minMax(xs []float64) (float64, float64) {
	if len(xs) == 0 {
		return 0, 0
	}
	lo, hi := xs[0], xs[0]
	for _, x := range xs {
		lo, hi = min(lo, x), max(hi, x)
	}
	return lo, hi
}

// The arrived-workload range of the plot, in percent of GPU capacity.
const plotFromPct, plotToPct = 80, 130

// writePlot draws the median over seeds of unallocated GPU % against
// arrived workload, one line per policy.
func writePlot(path string, runs []*Run, podsPath string) error {
	type key struct {
		policy string
		pct    float64
	}
	vals := map[key][]float64{}
	var order []string
	seen := map[string]bool{}
	for _, r := range runs {
		if !seen[r.Policy] {
			seen[r.Policy] = true
			order = append(order, r.Policy)
		}
		for _, p := range r.Points {
			k := key{r.Policy, p.ArrivedPct}
			vals[k] = append(vals[k], p.UnallocatedGPUPct)
		}
	}
	// Zoomed where the policies differ: from 80 % of the GPU capacity
	// arrived, where the first pods start to fail, to the end of the
	// replay (130 %); Y is scaled to that range.
	chart := &plot.Chart{
		Title:  "openb " + strings.TrimSuffix(filepath.Base(podsPath), ".csv") + ": unallocated GPU (median over seeds)",
		XLabel: "arrived workload (% of GPU capacity)",
		YLabel: "unallocated GPU %",
		XMin:   plotFromPct, XMax: plotToPct,
	}
	for _, name := range order {
		s := plot.Series{Name: name}
		for k, v := range vals {
			if k.policy == name {
				s.Points = append(s.Points, plot.Point{X: k.pct, Y: benchutil.Median(v)})
			}
		}
		chart.Series = append(chart.Series, s)
	}
	return chart.WritePNG(path)
}
