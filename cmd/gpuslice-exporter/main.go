// Command gpuslice-exporter publishes its node's GPU topology for
// gpuslice-scheduler. It runs as a DaemonSet on GPU nodes.
package main

import (
	"os"

	"github.com/gpuslice/gpuslice/pkg/exporter/app"
)

func main() {
	os.Exit(app.Main(os.Args[1:]))
}
