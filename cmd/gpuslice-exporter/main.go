// Command gpuslice-exporter publishes its node's GPU topology for
// gpuslice-scheduler. It runs as a DaemonSet on GPU nodes.
package main

import (
	"os"

	"k8s.io/component-base/cli"

	"github.com/gpuslice/gpuslice/pkg/exporter/app"
)

func main() {
	os.Exit(cli.Run(app.NewCommand()))
}
