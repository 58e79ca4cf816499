// Package scheme registers gpuslice's plugin args with kube-scheduler's
// config scheme. The scheduler's main imports it for that side effect, as
// kube-scheduler does for its own args.
package scheme

import (
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	schedscheme "k8s.io/kubernetes/pkg/scheduler/apis/config/scheme"
	schedv1 "k8s.io/kubernetes/pkg/scheduler/apis/config/v1"

	"github.com/gpuslice/gpuslice/pkg/apis/config"
	configv1 "github.com/gpuslice/gpuslice/pkg/apis/config/v1"
)

func init() {
	AddToScheme(schedscheme.Scheme)
	// kube-scheduler converts and defaults plugin args with a scheme of its
	// own; our args must be known there too.
	AddToScheme(schedv1.GetPluginArgConversionScheme())
}

// AddToScheme adds the internal and v1 args types to a scheme.
func AddToScheme(s *runtime.Scheme) {
	utilruntime.Must(config.AddToScheme(s))
	utilruntime.Must(configv1.AddToScheme(s))
}
