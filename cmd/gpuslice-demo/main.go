// Command gpuslice-demo runs gpuslice on a local cluster with simulated GPU
// nodes and prints where every MIG slice and time-sliced replica went,
// compared with the default kube-scheduler, then a MIG layout changed for a
// pending pod by gpuslice-repartitioner. Only NVML, the kubelet and MIG
// manager are simulated. `make demo` builds what it needs and runs it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/klog/v2"

	"github.com/gpuslice/gpuslice/pkg/demo"
)

func main() {
	keep := flag.Bool("keep", false, "keep the cluster running after the demo (prints a kubeconfig); Ctrl-C tears it down")
	klog.InitFlags(nil)
	// The demo prints its own view; component logs only on request (-v,
	// -logtostderr=true).
	_ = flag.Set("logtostderr", "false")
	_ = flag.Set("alsologtostderr", "false")
	_ = flag.Set("stderrthreshold", "FATAL")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := demo.Run(ctx, demo.Options{Keep: *keep}); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}
