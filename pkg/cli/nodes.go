package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	gpusliceapi "github.com/gpuslice/gpuslice/pkg/apis/gpuslice/v1alpha1"
	"github.com/gpuslice/gpuslice/pkg/gpuview"
)

// readView lists the GPUNodes, pods and nodes and builds the per-GPU view.
// Without gpuslice's CRD or any GPUNode it says so.
func (o *Options) readView(ctx context.Context) (*gpuview.Cluster, error) {
	kube, gpu, err := o.clients()
	if err != nil {
		return nil, err
	}
	gnList, err := gpu.GpusliceV1alpha1().GPUNodes().List(ctx, metav1.ListOptions{})
	if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
		return nil, fmt.Errorf("gpuslice is not installed here (no GPUNode API); `kubectl gpuslice whatif` works without it")
	}
	if err != nil {
		return nil, fmt.Errorf("listing GPUNodes: %w", err)
	}
	if len(gnList.Items) == 0 {
		return nil, fmt.Errorf("no GPUNodes: is gpuslice's exporter running on the GPU nodes?")
	}
	podList, err := kube.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing pods: %w", err)
	}
	nodeList, err := kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing nodes: %w", err)
	}
	gns := make([]*gpusliceapi.GPUNode, len(gnList.Items))
	for i := range gnList.Items {
		gns[i] = &gnList.Items[i]
	}
	pods := make([]*corev1.Pod, len(podList.Items))
	for i := range podList.Items {
		pods[i] = &podList.Items[i]
	}
	nodes := make([]*corev1.Node, len(nodeList.Items))
	for i := range nodeList.Items {
		nodes[i] = &nodeList.Items[i]
	}
	return gpuview.Build(gns, pods, nodes, gpuview.Options{}), nil
}

func writeObject(w io.Writer, format string, v any) error {
	if format == "yaml" {
		data, err := yaml.Marshal(v)
		if err != nil {
			return err
		}
		_, err = w.Write(data)
		return err
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// ANSI colours of the slot map.
var colours = map[string]string{"free": "32", "held": "36", "predicted": "33", "unhealthy": "31", "state": "33"}

func ansi(kind, text string) string {
	c, ok := colours[kind]
	if !ok {
		return text
	}
	return "\x1b[" + c + "m" + text + "\x1b[0m"
}

// useColour decides --color: auto colours a terminal only.
func useColour(mode string, w io.Writer) (bool, error) {
	switch mode {
	case "always":
		return true, nil
	case "never":
		return false, nil
	case "auto":
		f, ok := w.(*os.File)
		return ok && term.IsTerminal(int(f.Fd())) && os.Getenv("NO_COLOR") == "", nil
	}
	return false, fmt.Errorf("--color %q: want auto, always or never", mode)
}

func newNodesCommand(o *Options) *cobra.Command {
	var output, colour string
	cmd := &cobra.Command{
		Use:   "nodes [NODE]",
		Short: "Per-GPU slot map of gpuslice's GPU nodes: which slice holds which pod",
		Long: `nodes prints, for every GPU node gpuslice's exporter publishes (or one),
each GPU's MIG slices, whole GPUs or time-sliced replicas with the pods that
hold them (as the kubelet reported them; "(predicted)" where only the
scheduler's assignment says so), free slots, unhealthy GPUs and nodes being
reconfigured.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output, "", "wide", "json", "yaml"); err != nil {
				return err
			}
			coloured, err := useColour(colour, o.Out)
			if err != nil {
				return err
			}
			view, err := o.readView(cmd.Context())
			if err != nil {
				return err
			}
			if len(args) == 1 {
				var keep []gpuview.Node
				for _, n := range view.Nodes {
					if n.Name == args[0] {
						keep = append(keep, n)
					}
				}
				if len(keep) == 0 {
					return fmt.Errorf("no GPUNode %q", args[0])
				}
				view.Nodes = keep
			}
			if output == "json" || output == "yaml" {
				return writeObject(o.Out, output, view)
			}
			var style gpuview.Style
			if coloured {
				style = ansi
			}
			writeNodes(o.Out, view, output == "wide", style, time.Now())
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json, yaml or wide (default: the slot map)")
	cmd.Flags().StringVar(&colour, "color", "auto", "colour the slot map: auto (on a terminal, unless NO_COLOR is set), always or never")
	return cmd
}

func writeNodes(w io.Writer, view *gpuview.Cluster, wide bool, style gpuview.Style, now time.Time) {
	plain := func(_, text string) string { return text }
	if style == nil {
		style = plain
	}
	for i := range view.Nodes {
		n := &view.Nodes[i]
		state := n.State
		if n.Reconfiguring && state != string(gpusliceapi.StateReconfiguring) {
			state += ", reconfiguring"
		}
		if state != string(gpusliceapi.StateReady) {
			state = style("state", state)
		}
		fmt.Fprintf(w, "%s  %s", n.Name, state)
		if n.Message != "" {
			fmt.Fprintf(w, " (%s)", n.Message)
		}
		fmt.Fprintln(w)
		if n.Reconfiguring && n.MIGConfig != "" {
			who := "MIG manager"
			if strings.HasPrefix(n.MIGConfig, "gpuslice-") {
				who = "gpuslice-repartitioner through MIG manager"
			}
			fmt.Fprintf(w, "  %s: %s, MIG config %s (%s)\n", style("state", "reconfiguring"), who, n.MIGConfig, n.MIGConfigState)
		}
		for j := range n.GPUs {
			g := &n.GPUs[j]
			mark := "  "
			if g.Empty() {
				mark = "· "
			}
			line := g.StyledLine(style)
			if wide {
				line += fmt.Sprintf("  %.2f/%.0f used  %s", g.Used, g.Capacity, g.UUID)
			}
			fmt.Fprintf(w, "  %s%s\n", mark, line)
		}
		if len(n.Unattributed) > 0 {
			fmt.Fprintf(w, "  GPU pods without reported devices: %s\n", strings.Join(n.Unattributed, ", "))
		}
		for _, p := range n.Problems {
			fmt.Fprintf(w, "  problem: %s\n", p)
		}
	}
	if len(view.PendingGPUPods) > 0 {
		fmt.Fprintf(w, "pending GPU pods: %s\n", strings.Join(view.PendingGPUPods, ", "))
	}
	for i := range view.MIGDemand {
		fmt.Fprintln(w, view.MIGDemand[i].Line(now))
	}
	fmt.Fprintln(w, "(· = GPU with nothing on it)")
}

func newTopCommand(o *Options) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "top",
		Short: "Cluster GPU use: GPU-equivalents used, free and stranded; empty GPUs and nodes",
		Long: `top sums gpuslice's GPU nodes: capacity, used and free GPU-equivalents of
healthy GPUs (a MIG 3g slice of a 7-slice GPU is 3/7), stranded capacity
(free capacity on partly used GPUs: slices, never a whole GPU), empty GPUs
and nodes (what a whole-GPU job or the autoscaler can have), unhealthy GPUs,
nodes not Ready and pending GPU pods. -o wide adds one line per node.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output, "", "wide", "json", "yaml"); err != nil {
				return err
			}
			view, err := o.readView(cmd.Context())
			if err != nil {
				return err
			}
			t := view.Totals()
			if output == "json" || output == "yaml" {
				return writeObject(o.Out, output, t)
			}
			tw := tabwriter.NewWriter(o.Out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "GPU NODES\tGPUS\tUSED\tFREE\tSTRANDED\tEMPTY GPUS\tEMPTY NODES\tUNHEALTHY GPUS\tNOT READY NODES\tPENDING GPU PODS")
			fmt.Fprintf(tw, "%d\t%d\t%.2f\t%.2f\t%.2f\t%d\t%d\t%d\t%d\t%d\n", t.GPUNodes, t.GPUs, t.Used, t.Free, t.Stranded, t.EmptyGPUs, t.EmptyNodes, t.UnhealthyGPUs, t.NotReadyNodes, t.PendingGPUPods)
			if err := tw.Flush(); err != nil {
				return err
			}
			if output == "wide" {
				fmt.Fprintln(o.Out)
				tw = tabwriter.NewWriter(o.Out, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "NODE\tSTATE\tGPUS\tUSED\tEMPTY GPUS")
				for i := range view.Nodes {
					n := &view.Nodes[i]
					used, empty := 0.0, 0
					for j := range n.GPUs {
						used += n.GPUs[j].Used
						if n.GPUs[j].Empty() && n.GPUs[j].Healthy {
							empty++
						}
					}
					fmt.Fprintf(tw, "%s\t%s\t%d\t%.2f\t%d\n", n.Name, n.State, len(n.GPUs), used, empty)
				}
				return tw.Flush()
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json, yaml or wide (default: one line)")
	return cmd
}
