// Package cli is the kubectl plugin `kubectl gpuslice` (binary
// kubectl-gpuslice): commands that read a cluster, never write it, with
// kubectl's connection flags (--kubeconfig, --context, -n, ...) and output
// flag (-o json|yaml|wide).
package cli

import (
	goflag "flag"
	"fmt"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"github.com/gpuslice/gpuslice/pkg/generated/clientset/versioned"
)

// Options are shared by the subcommands.
type Options struct {
	ConfigFlags *genericclioptions.ConfigFlags
	genericiooptions.IOStreams
}

// NewCommand returns the root command of the plugin.
func NewCommand(streams genericiooptions.IOStreams) *cobra.Command {
	o := &Options{ConfigFlags: genericclioptions.NewConfigFlags(true), IOStreams: streams}
	root := &cobra.Command{
		Use:   "kubectl-gpuslice",
		Short: "Inspect GPU packing and what gpuslice would save",
		Long: `kubectl gpuslice reads a cluster (never writes it) to show how its GPUs
are used and what gpuslice's bin-packing would change.`,
		Annotations:   map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl gpuslice"},
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(streams.In)
	root.SetOut(streams.Out)
	root.SetErr(streams.ErrOut)
	o.ConfigFlags.AddFlags(root.PersistentFlags())
	// Component logs (the scheduler framework's) only on request: -v=N.
	gofs := goflag.NewFlagSet("klog", goflag.ContinueOnError)
	klog.InitFlags(gofs)
	_ = gofs.Set("logtostderr", "false")
	_ = gofs.Set("alsologtostderr", "false")
	_ = gofs.Set("stderrthreshold", "FATAL")
	if f := gofs.Lookup("v"); f != nil {
		root.PersistentFlags().AddGoFlag(f)
	}
	root.AddCommand(newWhatifCommand(o), newNodesCommand(o), newTopCommand(o), newExplainCommand(o))
	return root
}

// clients connects to the cluster the flags name.
func (o *Options) clients() (kubernetes.Interface, versioned.Interface, error) {
	cfg, err := o.ConfigFlags.ToRESTConfig()
	if err != nil {
		return nil, nil, err
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, err
	}
	gpu, err := versioned.NewForConfig(cfg)
	if err != nil {
		return nil, nil, err
	}
	return kube, gpu, nil
}

// checkOutput validates -o.
func checkOutput(format string, allowed ...string) error {
	for _, a := range allowed {
		if format == a {
			return nil
		}
	}
	return fmt.Errorf("unknown output format %q (want one of %q)", format, allowed)
}
