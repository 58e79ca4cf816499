package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gpuslice/gpuslice/manifests"
	"github.com/gpuslice/gpuslice/pkg/apis/config"
	"github.com/gpuslice/gpuslice/pkg/explain"
	"github.com/gpuslice/gpuslice/pkg/plugins/gpuslice"
	"github.com/gpuslice/gpuslice/pkg/sim"
	"github.com/gpuslice/gpuslice/pkg/topology"
	"github.com/gpuslice/gpuslice/pkg/topology/migparted"
)

type explainOptions struct {
	*Options
	output, schedulerConfig, migParted string
}

func newExplainCommand(o *Options) *cobra.Command {
	e := &explainOptions{Options: o}
	cmd := &cobra.Command{
		Use:   "explain POD",
		Short: "Why a GPU pod is pending and what would fit it; which devices a bound pod got",
		Long: `explain judges a GPU pod as gpuslice's scheduler plugin does, with its own
code (cache, freshness rules, allocation check and Filter messages), from the
cluster's GPUNodes, the exporters' Leases and pods.

For a pending pod: each GPU node's reason to reject it (no GPUNode, stale or
missing heartbeat, Degraded, reconfiguring, not enough free devices of the
kind it asks for, ...), the pod's own Unschedulable message, and what would
fit it: the nodes where it fits now, or else the smallest change (a pod
leaving, a node usable again, a mig-parted layout offering a missing MIG
profile).

For a bound pod: its node, the devices the kubelet gave it (read back by the
exporter), gpuslice's assignment annotation (its prediction, or the kubelet's
devices once the scheduler has rewritten it) and whether the kubelet's pick
matched the prediction: equal, an equal twin (another device of the same
shape), or different.

The pod's schedulerName picks the profile (and its GPUSlice args) in the
scheduler configuration: the shipped one unless --scheduler-config is given.`,
		Example: `  kubectl gpuslice explain -n ml train-0
  kubectl gpuslice explain -n ml train-0 -o yaml`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return e.run(cmd.Context(), args[0]) },
	}
	f := cmd.Flags()
	f.StringVarP(&e.output, "output", "o", "", "output format: json or yaml (default: text)")
	f.StringVar(&e.schedulerConfig, "scheduler-config", "", "gpuslice scheduler configuration: ConfigMap or KubeSchedulerConfiguration file (default: the shipped one, built in)")
	f.StringVar(&e.migParted, "mig-parted", "", "mig-parted config file naming the MIG layouts (default: NVIDIA's config-default.yaml, built in)")
	return cmd
}

func (e *explainOptions) run(ctx context.Context, name string) error {
	if err := checkOutput(e.output, "", "json", "yaml"); err != nil {
		return err
	}
	ns, _, err := e.ConfigFlags.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return err
	}
	kube, gpu, err := e.clients()
	if err != nil {
		return err
	}
	pod, err := kube.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("pod %s/%s not found", ns, name)
	}
	if err != nil {
		return fmt.Errorf("reading pod %s/%s: %w", ns, name, err)
	}
	in := explain.Input{Pod: pod, Now: time.Now(), Catalog: topology.NewCatalog()}
	if in.Args, err = e.gpusliceArgs(pod.Spec.SchedulerName); err != nil {
		return err
	}
	parted, err := migparted.Default()
	if e.migParted != "" {
		parted, err = topology.LoadMIGParted(e.migParted)
	}
	if err != nil {
		return fmt.Errorf("mig-parted config: %w", err)
	}
	in.MIGParted = parted

	gnList, err := gpu.GpusliceV1alpha1().GPUNodes().List(ctx, metav1.ListOptions{})
	switch {
	case apierrors.IsNotFound(err) || meta.IsNoMatchError(err):
		// gpuslice is not installed: no GPUNode, every GPU node says so.
	case err != nil:
		return fmt.Errorf("listing GPUNodes: %w", err)
	default:
		for i := range gnList.Items {
			in.GPUNodes = append(in.GPUNodes, &gnList.Items[i])
		}
	}
	podList, err := kube.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("listing pods: %w", err)
	}
	for i := range podList.Items {
		in.Pods = append(in.Pods, &podList.Items[i])
	}
	nodeList, err := kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("listing nodes: %w", err)
	}
	for i := range nodeList.Items {
		in.Nodes = append(in.Nodes, &nodeList.Items[i])
	}
	if in.Args != nil {
		leases, err := kube.CoordinationV1().Leases(in.Args.LeaseNamespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return fmt.Errorf("listing the exporters' Leases in %s: %w", in.Args.LeaseNamespace, err)
		}
		for i := range leases.Items {
			in.Leases = append(in.Leases, &leases.Items[i])
		}
	}
	report, err := explain.Explain(in)
	if err != nil {
		return err
	}
	if e.output != "" {
		return writeObject(e.Out, e.output, report)
	}
	return writeExplain(e.Out, report)
}

// gpusliceArgs are the GPUSlice args of the profile named schedulerName;
// nil when no profile of the configuration has that name or it does not
// configure GPUSlice.
func (e *explainOptions) gpusliceArgs(schedulerName string) (*config.GPUSliceArgs, error) {
	if schedulerName == "" {
		schedulerName = corev1.DefaultSchedulerName
	}
	var data []byte
	if e.schedulerConfig == "" {
		data = manifests.SchedulerConfigMap()
	} else {
		var err error
		if data, err = os.ReadFile(e.schedulerConfig); err != nil {
			return nil, err
		}
	}
	cfg, err := sim.LoadConfigMap(data)
	if err != nil {
		if cfg, err = sim.LoadConfig(data); err != nil {
			return nil, fmt.Errorf("scheduler configuration: neither a ConfigMap with config.yaml nor a KubeSchedulerConfiguration: %w", err)
		}
	}
	for _, p := range cfg.Profiles {
		if p.SchedulerName != schedulerName {
			continue
		}
		for _, pc := range p.PluginConfig {
			if a, ok := pc.Args.(*config.GPUSliceArgs); ok && pc.Name == gpuslice.Name {
				return a, nil
			}
		}
	}
	return nil, nil
}

func writeExplain(w io.Writer, r *explain.Report) error {
	fmt.Fprintf(w, "Pod:        %s (schedulerName %s)\n", r.Pod, r.SchedulerName)
	if len(r.Request) > 0 {
		req := strings.Join(r.Request, ", ")
		if r.Sharing != "" {
			req += " (sharing " + r.Sharing + ")"
		}
		fmt.Fprintf(w, "Request:    %s\n", req)
	}
	fmt.Fprintf(w, "Status:     %s: %s\n", r.Status, r.Summary)
	if r.Unschedulable != "" {
		fmt.Fprintf(w, "Scheduler:  %s\n", r.Unschedulable)
	}
	if len(r.Nodes) > 0 {
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "NODE\tVERDICT\tREASON")
		for _, v := range r.Nodes {
			verdict, reasons := "fits", []string{}
			if v.GPUs != "" {
				reasons = append(reasons, v.GPUs)
			}
			reasons = append(reasons, v.Other...)
			if !v.Fits() {
				verdict = "rejected"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", v.Node, verdict, strings.Join(reasons, "; "))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(r.WouldFit) > 0 {
		fmt.Fprintln(w, "\nWhat would fit it:")
		for _, s := range r.WouldFit {
			fmt.Fprintf(w, "  - %s\n", s)
		}
	}
	if b := r.Bound; b != nil {
		fmt.Fprintf(w, "Node:       %s\n", b.Node)
		fmt.Fprintf(w, "Kubelet:    %s\n", devicesText(b.Kubelet, "(not reported)"))
		src := ""
		if b.AssignmentSource != "" {
			src = " (" + b.AssignmentSource + ")"
		}
		fmt.Fprintf(w, "Assignment: %s%s\n", devicesText(b.Assignment, "(none)"), src)
		fmt.Fprintf(w, "Match:      %s\n", b.Match)
		if b.Note != "" {
			fmt.Fprintf(w, "Note:       %s\n", b.Note)
		}
	}
	return nil
}

func devicesText(ds []explain.Devices, none string) string {
	if len(ds) == 0 {
		return none
	}
	var parts []string
	for _, d := range ds {
		parts = append(parts, fmt.Sprintf("%s %s=%s", d.Container, d.Resource, strings.Join(d.DeviceIDs, ",")))
	}
	return strings.Join(parts, "; ")
}
