package openb

import (
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
)

// ShareFloor is how well the sharing pods that arrive by 100 % of the
// GPU capacity could be packed at best, offline, onto GPUs of
// MilliPerGPU share units each, with CPU, memory and arrival order
// ignored. Every GPU holding sharing pods idles what they leave of it, so
// a policy that places all of them leaves at least LowerGPUs minus their
// request idle, and an offline best-fit packing leaves BestFitGPUs minus
// it. (A policy can leave less only by failing sharing pods, and an online
// scheduler fails pods only once the cluster is nearly full.)
type ShareFloor struct {
	Seed int64
	// Pods and RequestMilli are the sharing pods arrived by 100 % and
	// their GPU request in share units.
	Pods         int
	RequestMilli int64
	// LowerGPUs is Martello and Toth's L2 lower bound on the GPUs that
	// hold them all; BestFitGPUs is what best-fit decreasing uses.
	LowerGPUs, BestFitGPUs int
	// CapacityGPUs is the cluster's GPU count.
	CapacityGPUs int
}

// IdlePct returns the idle GPU, as a percentage of the cluster's GPUs,
// that packing the sharing pods onto gpus GPUs leaves.
func (f ShareFloor) IdlePct(gpus int) float64 {
	if f.CapacityGPUs == 0 {
		return 0
	}
	return 100 * (float64(gpus) - float64(f.RequestMilli)/MilliPerGPU) / float64(f.CapacityGPUs)
}

// arrivedBy100 is the prefix of the workload that arrives by the time the
// arrived GPU request reaches the capacity: the pods Replay has seen when it
// records the 100 % point.
func arrivedBy100(work []Pod, capacityMilli int64) []Pod {
	total := int64(0)
	for i := range work {
		total += work[i].GPURequest()
		if total >= capacityMilli {
			return work[:i+1]
		}
	}
	return work
}

// shareFloor computes the floor of one seed's workload.
func shareFloor(nodes []Node, pods []Pod, seed int64, tune float64) (ShareFloor, error) {
	c, err := NewCluster(nodes)
	if err != nil {
		return ShareFloor{}, err
	}
	work, err := Workload(pods, c.TotalMilli, seed, tune)
	if err != nil {
		return ShareFloor{}, err
	}
	var sizes []int64
	f := ShareFloor{Seed: seed, CapacityGPUs: int(c.TotalMilli / MilliPerGPU)}
	for _, p := range arrivedBy100(work, c.TotalMilli) {
		if p.Sharing() && p.GPUMilli > 0 {
			sizes = append(sizes, p.GPUMilli)
			f.RequestMilli += p.GPUMilli
		}
	}
	f.Pods = len(sizes)
	f.LowerGPUs = binsLowerBound(sizes, MilliPerGPU)
	f.BestFitGPUs = binsBestFitDecreasing(sizes, MilliPerGPU)
	return f, nil
}

// binsLowerBound is Martello and Toth's bound L2 on the bins of capacity c
// that hold items of the given sizes (each in (0, c]): for a threshold k
// (0 or an item size up to c/2), items above c-k each need a bin of their
// own, so do items above c/2, and items from k to c/2 fill what the latter
// leave before they need bins of their own. (Martello and Toth, "Lower
// bounds and reduction procedures for the bin packing problem", 1990.)
func binsLowerBound(sizes []int64, c int64) int {
	sorted := slices.Clone(sizes)
	slices.Sort(sorted)
	best := 0
	try := func(k int64) {
		var j1, j2 int
		var sum2, sum3 int64
		for _, s := range sorted {
			switch {
			case s > c-k:
				j1++
			case 2*s > c:
				j2++
				sum2 += s
			case s >= k:
				sum3 += s
			}
		}
		spill := sum3 - (int64(j2)*c - sum2)
		n := j1 + j2
		if spill > 0 {
			n += int((spill + c - 1) / c)
		}
		best = max(best, n)
	}
	try(0)
	for i, s := range sorted {
		if 2*s > c {
			break
		}
		if i == 0 || s != sorted[i-1] {
			try(s)
		}
	}
	return best
}

// binsBestFitDecreasing packs the items largest first, each into the
// fullest bin it fits, and returns the bins used.
func binsBestFitDecreasing(sizes []int64, c int64) int {
	sorted := slices.Clone(sizes)
	slices.Sort(sorted)
	slices.Reverse(sorted)
	// open[f] is how many open bins have f units free.
	open := make([]int, c+1)
	bins := 0
	for _, s := range sorted {
		f := s
		for f <= c && open[f] == 0 {
			f++
		}
		if f > c {
			bins++
			open[c-s]++
			continue
		}
		open[f]--
		open[f-s]++
	}
	return bins
}

// writeFloor prints the sharing-pod floor of each seed's workload.
func writeFloor(w io.Writer, nodes []Node, pods []Pod, seeds []int64, tune float64) error {
	fmt.Fprintln(w, "sharing-pod floor at 100 % arrived: GPUs that hold all sharing pods arrived by then, packed offline with CPU, memory and order ignored (lower bound L2 .. best-fit decreasing), and the idle GPU % that leaves")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "seed\tsharing pods\tGPUs asked\tGPUs needed\tidle GPU %\t")
	for _, seed := range seeds {
		f, err := shareFloor(nodes, pods, seed, tune)
		if err != nil {
			return err
		}
		fmt.Fprintf(tw, "%d\t%d\t%.1f\t%d..%d\t%.2f..%.2f\t\n", seed, f.Pods, float64(f.RequestMilli)/MilliPerGPU,
			f.LowerGPUs, f.BestFitGPUs, f.IdlePct(f.LowerGPUs), f.IdlePct(f.BestFitGPUs))
	}
	return tw.Flush()
}
