// Package app wires the exporter's command: flags, clients, NVML, the
// kubelet's PodResources API, the device-plugin config, /metrics and
// /healthz, and a clean stop on SIGTERM.
package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/gpuslice/gpuslice/pkg/exporter/agent"
	"github.com/gpuslice/gpuslice/pkg/exporter/dpconfig"
	"github.com/gpuslice/gpuslice/pkg/exporter/kubelet"
	"github.com/gpuslice/gpuslice/pkg/exporter/nvml"
	"github.com/gpuslice/gpuslice/pkg/topology"
	"github.com/gpuslice/gpuslice/pkg/version"
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
	// Version: print the version and exit.
	Version bool
}

const (
	name  = "gpuslice-exporter"
	short = "Publish this node's GPU topology (NVML, device-plugin config, kubelet allocations) for gpuslice-scheduler"
)

// logFlushFrequency is --log-flush-frequency.
var logFlushFrequency = 5 * time.Second

// NewFlagSet returns the command's flags, bound to f: the exporter's own and
// klog's -v, -vmodule and -log-flush-frequency. It is the standard library's
// flag package rather than cobra/pflag and k8s.io/component-base/cli, which
// cost the binary (and so its resident memory) more than they do here.
func NewFlagSet(f *Flags) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
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
	fs.BoolVar(&f.Version, "version", false, "print the version and exit")
	// Of klog's flags only -v and -vmodule, as Kubernetes components do
	// (k8s.io/component-base/logs).
	var klogFlags flag.FlagSet
	klog.InitFlags(&klogFlags)
	fs.Var(klogFlags.Lookup("v").Value, "v", "number for the log level verbosity")
	fs.Var(klogFlags.Lookup("vmodule").Value, "vmodule", "comma-separated list of pattern=N settings for file-filtered logging (only works for the default text log format)")
	fs.DurationVar(&logFlushFrequency, "log-flush-frequency", logFlushFrequency, "Maximum number of seconds between log flushes")
	fs.SetOutput(io.Discard) // Main prints errors and usage
	fs.Usage = func() {}
	return fs
}

// printUsage prints the help in pflag's layout.
func printUsage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintf(w, "%s\n\nUsage:\n  %s [flags]\n\nFlags:\n", short, name)
	type line struct{ name, left, usage string }
	lines := []line{{"help", "  -h, --help", "help for " + name}}
	fs.VisitAll(func(f *flag.Flag) {
		typ, usage := flag.UnquoteUsage(f)
		left := "      --" + f.Name
		switch f.Name {
		case "v":
			left, typ = "  -v, --v", "Level"
		case "vmodule":
			typ = "moduleSpec"
		}
		if typ != "" {
			left += " " + typ
		}
		switch f.DefValue {
		case "", "0", "0s":
		default:
			if typ == "string" {
				usage += fmt.Sprintf(" (default %q)", f.DefValue)
			} else {
				usage += fmt.Sprintf(" (default %s)", f.DefValue)
			}
		}
		lines = append(lines, line{f.Name, left, usage})
	})
	slices.SortFunc(lines, func(a, b line) int { return strings.Compare(a.name, b.name) })
	width := 0
	for _, l := range lines {
		width = max(width, len(l.left))
	}
	for _, l := range lines {
		fmt.Fprintf(w, "%-*s   %s\n", width, l.left, l.usage)
	}
}

// Main runs the command with args (without the program name) until SIGTERM
// or SIGINT and returns its exit code.
func Main(args []string) int {
	f := &Flags{}
	fs := NewFlagSet(f)
	if err := parseFlags(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(os.Stdout, fs)
			return 0
		}
		printUsage(os.Stderr, fs)
		fmt.Fprintf(os.Stderr, "Error: %v\n", err)
		return 1
	}
	if f.Version {
		fmt.Fprintf(os.Stdout, "%s %s\n", name, version.Version)
		return 0
	}
	// As k8s.io/component-base/logs.InitLogs: the standard logger writes
	// to klog, klog flushes periodically, contextual logging is off.
	log.SetOutput(klogWriter{})
	log.SetFlags(0)
	klog.StartFlushDaemon(logFlushFrequency)
	klog.EnableContextualLogging(false)
	defer klog.Flush()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := Run(ctx, f); err != nil {
		klog.ErrorS(err, "command failed")
		return 1
	}
	return 0
}

// parseFlags parses args as pflag did for the cobra command: "--a_b" is
// "--a-b", and flags may follow positional arguments (which are ignored)
// up to a "--".
func parseFlags(fs *flag.FlagSet, args []string) error {
	args = normalizeFlagNames(fs, args)
	for {
		if err := fs.Parse(args); err != nil {
			return err
		}
		rest := fs.Args()
		if len(rest) == 0 || len(args)-len(rest) > 0 && args[len(args)-len(rest)-1] == "--" {
			return nil
		}
		args = rest[1:]
	}
}

// normalizeFlagNames replaces "_" with "-" in flag names, not in values.
func normalizeFlagNames(fs *flag.FlagSet, args []string) []string {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return append(out, args[i:]...)
		}
		if len(a) < 2 || a[0] != '-' {
			out = append(out, a)
			continue
		}
		dashes := 1
		if a[1] == '-' {
			dashes = 2
		}
		n, value, hasValue := strings.Cut(a[dashes:], "=")
		n = strings.ReplaceAll(n, "_", "-")
		if hasValue {
			out = append(out, a[:dashes]+n+"="+value)
			continue
		}
		out = append(out, a[:dashes]+n)
		// A flag that takes a value and has none after "=" takes the next
		// argument as it is.
		if fl := fs.Lookup(n); fl != nil && i+1 < len(args) {
			if b, ok := fl.Value.(interface{ IsBoolFlag() bool }); !ok || !b.IsBoolFlag() {
				i++
				out = append(out, args[i])
			}
		}
	}
	return out
}

// klogWriter sends the standard logger's output to klog.
type klogWriter struct{}

func (klogWriter) Write(data []byte) (int, error) {
	klog.InfoDepth(1, string(data))
	return len(data), nil
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
	// REST clients of the three API groups the agent calls, not client-go's
	// clientsets: those register every API group's types, which would make
	// up most of the binary and so of the exporter's resident memory.
	clients, err := agent.NewClients(cfg)
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
	m := agent.NewMetrics()
	a, err := agent.New(agent.Options{
		NodeName: f.NodeName, LeaseNamespace: f.LeaseNamespace,
		HeartbeatInterval: f.HeartbeatInterval, Resync: f.Resync, PollInterval: f.PollInterval,
	}, clients, gpus, allocs, config, m)
	if err != nil {
		return err
	}
	if f.MetricsBindAddress != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", m.Handler())
		mux.HandleFunc("/healthz", a.Healthz)
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
	return a.Run(ctx)
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
	agent.GPUSource
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
	client *kubelet.Client
}

func (l *lazyPodResources) List(ctx context.Context) ([]kubelet.PodDevices, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.client == nil {
		c, err := kubelet.Dial(ctx, l.socket)
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
