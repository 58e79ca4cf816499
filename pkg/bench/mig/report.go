package mig

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/gpuslice/gpuslice/pkg/bench/benchutil"
)

// TargetReduction is issue #6's target: gpuslice leaves at least this
// fraction fewer non-empty GPU nodes than kube-scheduler's default.
const TargetReduction = 0.30

// Summary is one policy's results over all seeds: medians, and the range.
type Summary struct {
	Summary bool   `json:"summary"`
	Policy  string `json:"policy"`
	Seeds   int    `json:"seeds"`
	// Medians over the seeds.
	NonEmptyNodes float64 `json:"median_non_empty_gpu_nodes"`
	NonEmptyGPUs  float64 `json:"median_non_empty_gpus"`
	Unplaced      float64 `json:"median_unplaced"`
	// Ranges over the seeds.
	MinNodes int `json:"min_non_empty_gpu_nodes"`
	MaxNodes int `json:"max_non_empty_gpu_nodes"`
	MinGPUs  int `json:"min_non_empty_gpus"`
	MaxGPUs  int `json:"max_non_empty_gpus"`
	GPUNodes int `json:"gpu_nodes"`
	GPUs     int `json:"gpus"`
	// MaxMispredicted is the largest Mispredicted of any seed.
	MaxMispredicted int `json:"max_mispredicted"`
	// NodeReduction is 1 - NonEmptyNodes / the kube default's (medians),
	// 0 when the kube default was not run; GPUReduction likewise for GPUs.
	NodeReduction float64 `json:"node_reduction_vs_kube_default"`
	GPUReduction  float64 `json:"gpu_reduction_vs_kube_default"`
}

// Summarize reduces results to one Summary per policy, in the order of
// policies.
func Summarize(policies []string, results []*Result) []Summary {
	by := map[string][]*Result{}
	for _, r := range results {
		by[r.Policy] = append(by[r.Policy], r)
	}
	out := make([]Summary, 0, len(policies))
	for _, p := range policies {
		rs := by[p]
		if len(rs) == 0 {
			continue
		}
		s := Summary{Summary: true, Policy: p, Seeds: len(rs), GPUNodes: rs[0].GPUNodes, GPUs: rs[0].GPUs,
			MinNodes: rs[0].NonEmptyNodes, MaxNodes: rs[0].NonEmptyNodes, MinGPUs: rs[0].NonEmptyGPUs, MaxGPUs: rs[0].NonEmptyGPUs}
		var nodes, gpus, unplaced []float64
		for _, r := range rs {
			nodes = append(nodes, float64(r.NonEmptyNodes))
			gpus = append(gpus, float64(r.NonEmptyGPUs))
			unplaced = append(unplaced, float64(r.Unplaced))
			s.MinNodes, s.MaxNodes = min(s.MinNodes, r.NonEmptyNodes), max(s.MaxNodes, r.NonEmptyNodes)
			s.MinGPUs, s.MaxGPUs = min(s.MinGPUs, r.NonEmptyGPUs), max(s.MaxGPUs, r.NonEmptyGPUs)
			s.MaxMispredicted = max(s.MaxMispredicted, r.Mispredicted)
		}
		s.NonEmptyNodes, s.NonEmptyGPUs, s.Unplaced = benchutil.Median(nodes), benchutil.Median(gpus), benchutil.Median(unplaced)
		out = append(out, s)
	}
	for i := range out {
		for _, base := range out {
			if base.Policy != PolicyKubeDefault {
				continue
			}
			out[i].NodeReduction = reduction(out[i].NonEmptyNodes, base.NonEmptyNodes)
			out[i].GPUReduction = reduction(out[i].NonEmptyGPUs, base.NonEmptyGPUs)
		}
	}
	return out
}

func reduction(x, base float64) float64 {
	if base == 0 {
		return 0
	}
	return 1 - x/base
}

// WriteTable prints the summaries as a table, then whether each gpuslice
// policy meets TargetReduction.
func WriteTable(w io.Writer, sums []Summary) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "policy\tnon-empty GPU nodes\t[min-max]\tnon-empty GPUs\t[min-max]\tunplaced pods\tmispredicted\tnodes vs kube-default\tGPUs vs kube-default\t")
	haveBase := false
	for _, s := range sums {
		haveBase = haveBase || s.Policy == PolicyKubeDefault
	}
	for _, s := range sums {
		vsNodes, vsGPUs := "-", "-"
		if haveBase {
			vsNodes, vsGPUs = pct(-s.NodeReduction), pct(-s.GPUReduction)
		}
		fmt.Fprintf(tw, "%s\t%s of %d\t[%d-%d]\t%s of %d\t[%d-%d]\t%s\t%d\t%s\t%s\t\n",
			s.Policy, num(s.NonEmptyNodes), s.GPUNodes, s.MinNodes, s.MaxNodes,
			num(s.NonEmptyGPUs), s.GPUs, s.MinGPUs, s.MaxGPUs, num(s.Unplaced), s.MaxMispredicted, vsNodes, vsGPUs)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if !haveBase {
		return nil
	}
	for _, s := range sums {
		if !strings.HasPrefix(s.Policy, "gpuslice-") {
			continue
		}
		verdict := "met"
		if s.NodeReduction < TargetReduction {
			verdict = "NOT met"
		}
		if _, err := fmt.Fprintf(w, "target (>= %.0f%% fewer non-empty GPU nodes than kube-default): %s %.1f%% fewer, %s\n",
			100*TargetReduction, s.Policy, 100*s.NodeReduction, verdict); err != nil {
			return err
		}
	}
	return nil
}

// WriteJSON prints one JSON object per result, then one per summary.
func WriteJSON(w io.Writer, results []*Result, sums []Summary) error {
	enc := json.NewEncoder(w)
	for _, r := range results {
		if err := enc.Encode(r); err != nil {
			return err
		}
	}
	for _, s := range sums {
		if err := enc.Encode(s); err != nil {
			return err
		}
	}
	return nil
}

// WriteUnplaced prints, per policy and pod class, how many pods were left
// unplaced over all seeds, in which seeds, and the first reason given.
func WriteUnplaced(w io.Writer, results []*Result) error {
	type key struct{ policy, class string }
	type agg struct {
		n      int
		seeds  []string
		reason string
	}
	var keys []key
	by := map[key]*agg{}
	for _, r := range results {
		for _, o := range r.Outcomes {
			if o.Node != "" {
				continue
			}
			k := key{r.Policy, o.Class}
			a, ok := by[k]
			if !ok {
				a = &agg{reason: o.Reason}
				by[k] = a
				keys = append(keys, k)
			}
			a.n++
			if seed := fmt.Sprint(r.Seed); len(a.seeds) == 0 || a.seeds[len(a.seeds)-1] != seed {
				a.seeds = append(a.seeds, seed)
			}
		}
	}
	for _, k := range keys {
		a := by[k]
		if _, err := fmt.Fprintf(w, "# unplaced %s: %d x %s over seeds %s; first reason: %s\n",
			k.policy, a.n, k.class, strings.Join(a.seeds, ","), a.reason); err != nil {
			return err
		}
	}
	return nil
}

func num(x float64) string {
	if x == float64(int64(x)) {
		return fmt.Sprintf("%d", int64(x))
	}
	return fmt.Sprintf("%.1f", x)
}

func pct(x float64) string {
	if x == 0 {
		return "0.0%" // not "-0.0%"
	}
	return fmt.Sprintf("%+.1f%%", 100*x)
}
