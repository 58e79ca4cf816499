package whatif

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"

	"sigs.k8s.io/yaml"
)

// WriteJSON writes the report as one JSON object.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteYAML writes the report as YAML (the JSON form's fields).
func (r *Report) WriteYAML(w io.Writer) error {
	data, err := yaml.Marshal(r)
	if err != nil {
		return err
	}
	_, err = w.Write(data)
	return err
}

func dollars(d *float64) string {
	if d == nil {
		return "-"
	}
	return "$" + thousands(int64(math.Round(*d)))
}

// thousands writes n with comma separators: 101,400.
func thousands(n int64) string {
	if n < 0 {
		return "-" + thousands(-n)
	}
	s := strconv.FormatInt(n, 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// WriteTable writes the report for a person: today's cluster, one row per
// profile and, when wide, each GPU node's inferred topology and every
// unplaced pod.
func (r *Report) WriteTable(w io.Writer, wide bool) error {
	c := r.Current
	fmt.Fprintf(w, "Today: %d GPU nodes (%d GPUs); %d GPU pods", c.GPUNodes, c.GPUs, c.GPUPods)
	if c.PendingGPUPods > 0 {
		fmt.Fprintf(w, " (%d pending)", c.PendingGPUPods)
	}
	fmt.Fprintf(w, " on %d GPU nodes using %d GPUs", c.GPUNodesWithPods, c.GPUsUsed)
	if c.DollarsPerMonth != nil {
		fmt.Fprintf(w, ", %s/month", dollars(c.DollarsPerMonth))
	}
	fmt.Fprintf(w, ".\nTopologies: %s", r.confidenceCounts())
	if n := len(c.NotHeld); n > 0 {
		fmt.Fprintf(w, "; %d running GPU pods do not fit their node as modelled", n)
	}
	if !wide {
		fmt.Fprint(w, " (-o wide for each node)")
	}
	fmt.Fprint(w, ".\n\n")

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PROFILE\tGPU NODES USED\tNODES FREED\tGPUS USED\tGPUS FREED\tPODS UNPLACED\t$/MONTH")
	for _, p := range r.Profiles {
		d := dollars(p.DollarsPerMonth)
		if p.UnpricedNodes > 0 {
			d += fmt.Sprintf(" (+%d unpriced)", p.UnpricedNodes)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%s\n", p.Name, p.GPUNodesUsed, p.GPUNodesFreed, p.GPUsUsed, p.GPUsFreed, p.PodsUnplaced, d)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(r.SkippedPods) > 0 {
		fmt.Fprintf(w, "\n%d GPU pods not replayed (invalid requests)", len(r.SkippedPods))
		if wide {
			fmt.Fprintln(w, ":")
			for _, s := range r.SkippedPods {
				fmt.Fprintf(w, "  %s: %s\n", s.Pod, s.Reason)
			}
		} else {
			fmt.Fprintln(w, ".")
		}
	}
	if !wide {
		return nil
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tINSTANCE TYPE\tGPUS\tGPU PODS TODAY\t$/HOUR\tTOPOLOGY")
	for _, n := range r.Nodes {
		price := "-"
		if n.PricePerHour != nil {
			price = fmt.Sprintf("%.2f", *n.PricePerHour)
		}
		it := n.InstanceType
		if it == "" {
			it = "-"
		}
		topo := string(n.Confidence) + ": " + n.Source
		if len(n.Notes) > 0 {
			topo += " (" + strings.Join(n.Notes, "; ") + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\n", n.Name, it, n.GPUs, n.GPUPodsToday, price, topo)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(c.NotHeld) > 0 {
		fmt.Fprintln(w, "\nRunning GPU pods that do not fit their node as modelled:")
		for _, u := range c.NotHeld {
			fmt.Fprintf(w, "  %s: %s\n", u.Pod, u.Reason)
		}
	}
	for _, p := range r.Profiles {
		if len(p.Unplaced) == 0 {
			continue
		}
		fmt.Fprintf(w, "\nUnplaced under %s:\n", p.Name)
		for _, u := range p.Unplaced {
			fmt.Fprintf(w, "  %s: %s\n", u.Pod, u.Reason)
		}
	}
	return nil
}
