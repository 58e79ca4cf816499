// Package app wires gpuslice-repartitioner: flags, clients, the event
// recorder, metrics and leader election around pkg/repartition/controller.
package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	versioned "github.com/gpuslice/gpuslice/pkg/generated/clientset/versioned"
	"github.com/gpuslice/gpuslice/pkg/repartition"
	"github.com/gpuslice/gpuslice/pkg/repartition/controller"
	"github.com/gpuslice/gpuslice/pkg/version"
)

// Flags are the command's settings.
type Flags struct {
	Kubeconfig                                    string
	ConfigMap, ConfigKey                          string
	NodeSelector                                  string
	SchedulerNames                                string
	Window, Propagation, Timeout                  time.Duration
	MinGPUInterval, MinNodeInterval, MinDemandAge time.Duration
	BackoffBase, BackoffMax                       time.Duration
	MaxNodesInFlight                              int
	MaxDrainingGPUs                               int
	DrainAfter, MaxDrainTime                      time.Duration
	DrainMinGain                                  float64
	LeaseNamespace, LeaseName                     string
	MetricsAddress                                string
	SyncInterval                                  time.Duration
	// Version: print the version and exit.
	Version bool
}

// NewFlagSet returns the command's flags bound to f, with their defaults.
func NewFlagSet(f *Flags) *flag.FlagSet {
	d := repartition.DefaultConfig()
	fs := flag.NewFlagSet("gpuslice-repartitioner", flag.ContinueOnError)
	fs.StringVar(&f.Kubeconfig, "kubeconfig", "", "kubeconfig; empty: in-cluster")
	fs.StringVar(&f.ConfigMap, "mig-parted-configmap", "gpu-operator/custom-mig-parted-config", "namespace/name of the mig-parted ConfigMap MIG manager reads (the GPU operator's migManager.config.name)")
	fs.StringVar(&f.ConfigKey, "mig-parted-key", "config.yaml", "key of the config file in that ConfigMap")
	fs.StringVar(&f.NodeSelector, "node-selector", "gpuslice.io/repartition=enabled", "label selector of the nodes the controller may reconfigure")
	fs.StringVar(&f.SchedulerNames, "scheduler-names", "gpuslice-binpack,gpuslice-fragmentation-aware", "schedulerName values of the pods whose demand counts, comma-separated")
	fs.DurationVar(&f.Window, "window", time.Minute, "how often the planner runs (demand is batched over it)")
	fs.DurationVar(&f.Propagation, "propagation", 90*time.Second, "wait after writing the ConfigMap before setting nvidia.com/mig.config (kubelet's ConfigMap sync); the GPUs a change rebuilds are fenced (annotation gpuslice.io/mig-drain: gpuslice places no new pod there) from before the write until the run ends")
	fs.DurationVar(&f.Timeout, "run-timeout", 20*time.Minute, "a run not ended by then counts as failed")
	fs.DurationVar(&f.MinGPUInterval, "min-gpu-interval", d.MinGPUInterval, "least time between two changes of one GPU")
	fs.DurationVar(&f.MinNodeInterval, "min-node-interval", d.MinNodeInterval, "least time between two runs of MIG manager on one node (a run takes the node's device plugin down); 0: only --min-gpu-interval")
	fs.DurationVar(&f.MinDemandAge, "min-demand-age", d.MinDemandAge, "pending pods younger than this are not acted on")
	fs.DurationVar(&f.BackoffBase, "backoff", d.BackoffBase, "how long a node whose run failed is left alone (doubling per failure)")
	fs.DurationVar(&f.BackoffMax, "backoff-max", d.BackoffMax, "longest back-off")
	fs.IntVar(&f.MaxNodesInFlight, "max-nodes-in-flight", d.MaxNodesInFlight, "nodes reconfiguring at once, at most")
	fs.IntVar(&f.MaxDrainingGPUs, "max-draining-gpus", d.MaxDrainingGPUs, "busy GPUs drained at once, at most, so that they can change once their pods end (annotation gpuslice.io/mig-drain: gpuslice places no new pod there, running pods are left alone); 0: no drain")
	fs.DurationVar(&f.DrainAfter, "drain-after", d.DrainAfter, "a GPU is drained only for pods pending at least this long that no idle GPU serves")
	fs.DurationVar(&f.MaxDrainTime, "max-drain-time", d.MaxDrainTime, "a drain whose GPU has not emptied by then is given up (and the GPU not drained again before --min-gpu-interval)")
	fs.Float64Var(&f.DrainMinGain, "drain-min-gain", d.DrainMinGain, "a GPU is drained only for a layout that strands at least this much less of the learned pod mix (GPU-equivalents) than its current one")
	fs.StringVar(&f.LeaseNamespace, "lease-namespace", "gpuslice-system", "namespace of the leader-election Lease")
	fs.StringVar(&f.LeaseName, "lease-name", "gpuslice-repartitioner", "name of the leader-election Lease")
	fs.StringVar(&f.MetricsAddress, "metrics-address", ":8080", "address of /metrics; empty: none")
	fs.DurationVar(&f.SyncInterval, "sync-interval", 5*time.Second, "how often runs in flight are followed")
	fs.BoolVar(&f.Version, "version", false, "print the version and exit")
	return fs
}

// Options turns the flags into controller options (clients aside).
func (f *Flags) Options() (controller.Options, error) {
	ns, name, ok := strings.Cut(f.ConfigMap, "/")
	if !ok || ns == "" || name == "" {
		return controller.Options{}, fmt.Errorf("--mig-parted-configmap %q: want namespace/name", f.ConfigMap)
	}
	sel, err := labels.Parse(f.NodeSelector)
	if err != nil {
		return controller.Options{}, fmt.Errorf("--node-selector: %w", err)
	}
	if sel.Empty() {
		return controller.Options{}, errors.New("--node-selector must select: an empty selector would let the controller reconfigure every node")
	}
	var names []string
	for _, n := range strings.Split(f.SchedulerNames, ",") {
		if n = strings.TrimSpace(n); n != "" {
			names = append(names, n)
		}
	}
	pc := repartition.DefaultConfig()
	pc.MinGPUInterval, pc.MinDemandAge, pc.BackoffBase, pc.BackoffMax, pc.MaxNodesInFlight = f.MinGPUInterval, f.MinDemandAge, f.BackoffBase, f.BackoffMax, f.MaxNodesInFlight
	pc.MinNodeInterval = f.MinNodeInterval
	pc.MaxDrainingGPUs, pc.DrainAfter, pc.MaxDrainTime, pc.DrainMinGain = f.MaxDrainingGPUs, f.DrainAfter, f.MaxDrainTime, f.DrainMinGain
	if err := pc.Validate(); err != nil {
		return controller.Options{}, err
	}
	if f.SyncInterval <= 0 {
		return controller.Options{}, errors.New("--sync-interval must be positive")
	}
	return controller.Options{ConfigMapNamespace: ns, ConfigMapName: name, ConfigKey: f.ConfigKey, Nodes: sel, SchedulerNames: names,
		Window: f.Window, Propagation: f.Propagation, Timeout: f.Timeout, Planner: pc}, nil
}

// Main runs the command with args until ctx ends.
func Main(ctx context.Context, args []string) error {
	var f Flags
	fs := NewFlagSet(&f)
	klogFlags := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(klogFlags)
	klogFlags.VisitAll(func(fl *flag.Flag) { fs.Var(fl.Value, fl.Name, fl.Usage) })
	if err := fs.Parse(args); err != nil {
		return err
	}
	if f.Version {
		_, err := fmt.Fprintln(os.Stdout, "gpuslice-repartitioner", version.Version)
		return err
	}
	o, err := f.Options()
	if err != nil {
		return err
	}
	var cfg *rest.Config
	if f.Kubeconfig != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", f.Kubeconfig)
	} else {
		cfg, err = rest.InClusterConfig()
	}
	if err != nil {
		return err
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	gpu, err := versioned.NewForConfig(cfg)
	if err != nil {
		return err
	}
	logger := klog.FromContext(ctx)
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kube.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	o.Recorder = broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "gpuslice-repartitioner"})
	o.Metrics = controller.NewMetrics()
	if f.MetricsAddress != "" {
		ln, err := net.Listen("tcp", f.MetricsAddress)
		if err != nil {
			return err
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", o.Metrics.Handler())
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
		logger.Info("Serving metrics", "address", ln.Addr().String())
	}
	c, err := controller.New(kube, gpu, o)
	if err != nil {
		return err
	}
	id, err := os.Hostname()
	if err != nil {
		return err
	}
	return c.RunWithLeaderElection(ctx, f.SyncInterval, controller.LeaderOptions{Namespace: f.LeaseNamespace, Name: f.LeaseName, Identity: id})
}
