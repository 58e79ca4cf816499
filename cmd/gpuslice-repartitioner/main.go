// Command gpuslice-repartitioner asks NVIDIA's MIG manager for MIG layouts
// that follow the demand gpuslice cannot place (pkg/repartition). It is off
// unless deployed and scaled up (manifests/repartitioner), and touches only
// the nodes its --node-selector selects.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/gpuslice/gpuslice/pkg/repartition/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := app.Main(ctx, os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "gpuslice-repartitioner: %v\n", err)
		os.Exit(1)
	}
}
