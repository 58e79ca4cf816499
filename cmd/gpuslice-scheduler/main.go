// Command gpuslice-scheduler is kube-scheduler built with the GPUSlice
// plugin. Profiles are configured in an ordinary KubeSchedulerConfiguration.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/component-base/metrics/legacyregistry"
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go's REST metrics, as kube-scheduler registers them
	_ "k8s.io/component-base/metrics/prometheus/version"  // the build's version metric
	"k8s.io/kubernetes/cmd/kube-scheduler/app"

	// Registers GPUSliceArgs with kube-scheduler's config scheme.
	_ "github.com/gpuslice/gpuslice/pkg/apis/config/scheme"
	"github.com/gpuslice/gpuslice/pkg/plugins/gpuslice"
)

func main() {
	shared := gpuslice.NewShared()
	shared.Metrics().Register(legacyregistry.MustRegister)
	cmd := app.NewSchedulerCommand(app.WithPlugin(gpuslice.Name, shared.New))
	os.Exit(cli.Run(cmd))
}
