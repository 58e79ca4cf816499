package cli

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	schedconfig "k8s.io/kubernetes/pkg/scheduler/apis/config"

	"github.com/gpuslice/gpuslice/manifests"
	"github.com/gpuslice/gpuslice/pkg/sim"
	"github.com/gpuslice/gpuslice/pkg/topology"
	"github.com/gpuslice/gpuslice/pkg/topology/migparted"
	"github.com/gpuslice/gpuslice/pkg/whatif"
)

type whatifOptions struct {
	*Options
	snapshot, prices, plot, migParted, schedulerConfig, output string
	profiles                                                   []string
	seed                                                       uint64
}

func newWhatifCommand(o *Options) *cobra.Command {
	w := &whatifOptions{Options: o}
	cmd := &cobra.Command{
		Use:   "whatif",
		Short: "Replay the cluster's GPU pods under the default scheduler and gpuslice's profiles",
		Long: `whatif answers "how many GPU nodes, and dollars a month, would gpuslice's packing
save on this cluster?", before gpuslice is installed.

It reads the cluster (read-only: nodes, pods of every namespace, GPUNodes if
gpuslice is installed) or a snapshot file, takes each node's GPU topology from
its GPUNode or infers it from NVIDIA GPU feature discovery labels, the
allocatable and the MIG catalog (saying per node how sure it is: -o wide),
and replays the current GPU pods in creation order, with their requests,
affinities and tolerations, under kube-scheduler's default profile and each
gpuslice profile, in-process with the real scheduler framework and
gpuslice's plugin. Pods without GPUs keep their nodes. It always reads
every namespace: a replay of part of the GPU pods would not say what the
nodes could hold (-n is not used).`,
		Example: `  # the current context's cluster
  kubectl gpuslice whatif

  # a snapshot, with prices, as JSON, and a chart for a design review
  kubectl get nodes,pods -A -o yaml > cluster.yaml
  kubectl gpuslice whatif --snapshot cluster.yaml --prices prices.yaml -o json --plot whatif.png`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return w.run(cmd.Context()) },
	}
	f := cmd.Flags()
	f.StringVar(&w.snapshot, "snapshot", "", "read the cluster from this file (kubectl get nodes,pods -A -o yaml) instead of the API server")
	f.StringVar(&w.prices, "prices", "", "instance prices in $/hour keyed by node.kubernetes.io/instance-type (YAML/JSON map)")
	f.StringVar(&w.plot, "plot", "", "also write a PNG chart to this file")
	f.StringVar(&w.migParted, "mig-parted", "", "mig-parted config file resolving nvidia.com/mig.config layouts (default: NVIDIA's config-default.yaml, built in)")
	f.StringVar(&w.schedulerConfig, "scheduler-config", "", "gpuslice scheduler configuration: ConfigMap or KubeSchedulerConfiguration file (default: the shipped one, built in)")
	f.StringSliceVar(&w.profiles, "profiles", nil, "gpuslice profiles to replay, by schedulerName (default: all in the configuration)")
	f.Uint64Var(&w.seed, "seed", 1, "seed of the scheduler's random tie-breaks")
	f.StringVarP(&w.output, "output", "o", "", "output format: json, yaml or wide (default: a table)")
	return cmd
}

func (w *whatifOptions) run(ctx context.Context) error {
	if err := checkOutput(w.output, "", "wide", "json", "yaml"); err != nil {
		return err
	}
	if w.plot != "" && !strings.HasSuffix(strings.ToLower(w.plot), ".png") {
		return fmt.Errorf("--plot %s: want a .png file", w.plot)
	}
	opts := whatif.Options{Seed: w.seed}
	var err error
	if opts.Baseline, opts.Profiles, err = w.loadProfiles(); err != nil {
		return err
	}
	parted, err := migparted.Default()
	if w.migParted != "" {
		parted, err = topology.LoadMIGParted(w.migParted)
	}
	if err != nil {
		return fmt.Errorf("mig-parted config: %w", err)
	}
	opts.Inferrer = &whatif.Inferrer{Catalog: topology.NewCatalog(), MIGParted: parted}
	if w.prices != "" {
		if opts.Prices, err = whatif.LoadPrices(w.prices); err != nil {
			return err
		}
	}
	var cluster *whatif.Cluster
	if w.snapshot != "" {
		cluster, err = whatif.LoadSnapshot(w.snapshot)
	} else {
		kube, gpu, cerr := w.clients()
		if cerr != nil {
			return cerr
		}
		cluster, err = whatif.ReadLive(ctx, kube, gpu)
	}
	if err != nil {
		return err
	}
	report, err := whatif.Analyze(ctx, cluster, opts)
	if err != nil {
		return err
	}
	if w.plot != "" {
		f, err := os.Create(w.plot)
		if err != nil {
			return err
		}
		if err := report.WritePNG(f); err != nil {
			f.Close()
			return fmt.Errorf("--plot: %w", err)
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	switch w.output {
	case "json":
		return report.WriteJSON(w.Out)
	case "yaml":
		return report.WriteYAML(w.Out)
	default:
		return report.WriteTable(w.Out, w.output == "wide")
	}
}

// loadProfiles returns kube-scheduler's default profile and, after it, the
// gpuslice profiles asked for.
func (w *whatifOptions) loadProfiles() (*schedconfig.KubeSchedulerProfile, []*schedconfig.KubeSchedulerProfile, error) {
	stock, err := sim.StockConfig("")
	if err != nil {
		return nil, nil, err
	}
	base, err := sim.Profile(stock, "default-scheduler")
	if err != nil {
		return nil, nil, err
	}
	var cfg *schedconfig.KubeSchedulerConfiguration
	if w.schedulerConfig == "" {
		cfg, err = sim.LoadConfigMap(manifests.SchedulerConfigMap())
	} else {
		data, rerr := os.ReadFile(w.schedulerConfig)
		if rerr != nil {
			return nil, nil, rerr
		}
		if cfg, err = sim.LoadConfigMap(data); err != nil {
			cfg, err = sim.LoadConfig(data)
		}
		if err != nil {
			err = fmt.Errorf("%s: neither a ConfigMap with config.yaml nor a KubeSchedulerConfiguration: %w", w.schedulerConfig, err)
		}
	}
	if err != nil {
		return nil, nil, err
	}
	gs, err := sim.Profiles(cfg, w.profiles...)
	if err != nil {
		return nil, nil, err
	}
	profiles := []*schedconfig.KubeSchedulerProfile{base}
	for _, p := range gs {
		if p.SchedulerName == base.SchedulerName {
			continue // replayed once, as the stock profile
		}
		profiles = append(profiles, p)
	}
	return base, profiles, nil
}
