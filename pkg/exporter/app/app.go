// Package app wires the exporter's command: flags, clients, NVML, the
// kubelet's PodResources API, the device-plugin config, /metrics and
// /healthz, and a clean stop on SIGTERM.
package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/gpuslice/gpuslice/pkg/exporter"
	"github.com/gpuslice/gpuslice/pkg/exporter/dpconfig"
	"github.com/gpuslice/gpuslice/pkg/exporter/nvml"
	"github.com/gpuslice/gpuslice/pkg/exporter/podresources"
	versioned "github.com/gpuslice/gpuslice/pkg/generated/clientset/versioned"
	"github.com/gpuslice/gpuslice/pkg/topology"
)

// Flags are the command's settings.
type Flags struct {
	NodeName           string
	Kubeconfig         string
	DevicePluginConfig string
	AllocationPolicy   string
	PodResourcesSocket string
	LeaseNamespace     string
	MetricsBindAddress string
	HeartbeatInterval  time.Duration
	Resync             time.Duration
	PollInterval       time.Duration
}

// NewCommand returns the gpuslice-exporter command.
func NewCommand() *cobra.Command {
	f := &Flags{}
	cmd := &cobra.Command{
		Use:           "gpuslice-exporter",
		Short:         "Publish this node's GPU topology (NVML, device-plugin config, kubelet allocations) for gpuslice-scheduler",
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, os.Interrupt)
			defer stop()
			return Run(ctx, f)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.NodeName, "node-name", os.Getenv("NODE_NAME"), "name of this node (default $NODE_NAME)")
	fs.StringVar(&f.Kubeconfig, "kubeconfig", "", "kubeconfig file; in-cluster config when empty")
	fs.StringVar(&f.DevicePluginConfig, "device-plugin-config", "/etc/nvidia-device-plugin/config.yaml", "the NVIDIA device plugin's config file")
	fs.StringVar(&f.AllocationPolicy, "allocation-policy", "", "the device plugin's SHARED_DEVICES_ALLOCATION_POLICY (distributed, packed, spread); overrides the config file")
	fs.StringVar(&f.PodResourcesSocket, "pod-resources-socket", "/var/lib/kubelet/pod-resources/kubelet.sock", "the kubelet's PodResources socket")
	fs.StringVar(&f.LeaseNamespace, "lease-namespace", "gpuslice-system", "namespace of the heartbeat Lease")
	fs.StringVar(&f.MetricsBindAddress, "metrics-bind-address", ":8080", "address of /metrics and /healthz; empty disables")
	fs.DurationVar(&f.HeartbeatInterval, "heartbeat-interval", 10*time.Second, "how often the Lease is renewed")
	fs.DurationVar(&f.Resync, "resync", 30*time.Second, "full re-read period")
	fs.DurationVar(&f.PollInterval, "poll-interval", time.Second, "how often PodResources and the config file are checked")
	return cmd
}

// Run runs the exporter until ctx ends.
func Run(ctx context.Context, f *Flags) error {
	logger := klog.FromContext(ctx)
	if f.NodeName == "" {
		return errors.New("--node-name (or $NODE_NAME) is required")
	}
	switch topology.AllocationPolicy(f.AllocationPolicy) {
	case "", topology.PolicyDistributed, topology.PolicyPacked, topology.PolicySpread:
	default:
		return fmt.Errorf("--allocation-policy %q: want distributed, packed or spread", f.AllocationPolicy)
	}
	cfg, err := restConfig(f.Kubeconfig)
	if err != nil {
		return err
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	gpuClient, err := versioned.NewForConfig(cfg)
	if err != nil {
		return err
	}

	gpus := openNVML(logger)
	defer gpus.Close()
	allocs := &lazyPodResources{socket: f.PodResourcesSocket}
	defer allocs.Close()
	overrides := dpconfig.Overrides{AllocationPolicy: f.AllocationPolicy}
	config := func() (*dpconfig.Config, error) {
		return dpconfig.Load(f.DevicePluginConfig, dpconfig.WithOverrides(overrides))
	}
	m := exporter.NewMetrics()
	agent, err := exporter.New(exporter.Options{
		NodeName: f.NodeName, LeaseNamespace: f.LeaseNamespace,
		HeartbeatInterval: f.HeartbeatInterval, Resync: f.Resync, PollInterval: f.PollInterval,
	}, kube, gpuClient, gpus, allocs, config, m)
	if err != nil {
		return err
	}
	if f.MetricsBindAddress != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", m.Handler())
		mux.HandleFunc("/healthz", agent.Healthz)
		ln, err := net.Listen("tcp", f.MetricsBindAddress)
		if err != nil {
			return fmt.Errorf("metrics listener: %w", err)
		}
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		}()
		logger.Info("Serving metrics", "address", ln.Addr().String())
	}
	return agent.Run(ctx)
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		return clientcmd.BuildConfigFromFlags("", kubeconfig)
	}
	return rest.InClusterConfig()
}

// brokenNVML reports why NVML is unusable on every read, so the node is
// published Degraded with that reason instead of the exporter crashing.
type brokenNVML struct{ err error }

func (b brokenNVML) Snapshot() (*nvml.Snapshot, error) { return nil, b.err }
func (b brokenNVML) WatchHealth(ctx context.Context, _ chan<- nvml.HealthEvent) error {
	<-ctx.Done()
	return nil
}
func (b brokenNVML) Close() error { return nil }

type gpuReader interface {
	exporter.GPUSource
	Close() error
}

func openNVML(logger klog.Logger) gpuReader {
	r, err := nvml.Open()
	if err != nil {
		logger.Error(err, "NVML unavailable; the node is published as Degraded")
		return brokenNVML{err: err}
	}
	return r
}

// lazyPodResources dials the kubelet's socket on first use and again after
// failures (the kubelet may restart).
type lazyPodResources struct {
	socket string
	mu     sync.Mutex
	client *podresources.Client
}

func (l *lazyPodResources) List(ctx context.Context) ([]podresources.PodDevices, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.client == nil {
		c, err := podresources.Dial(ctx, l.socket)
		if err != nil {
			return nil, err
		}
		l.client = c
	}
	devs, err := l.client.List(ctx)
	if err != nil {
		_ = l.client.Close()
		l.client = nil
	}
	return devs, err
}

func (l *lazyPodResources) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.client == nil {
		return nil
	}
	return l.client.Close()
}
