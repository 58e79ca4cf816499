package v1

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
)

// Defaults of GPUSliceArgs.
const (
	DefaultScoringStrategy        = "binpack"
	DefaultGPUWeight        int64 = 2
	DefaultNodeWeight       int64 = 1
	DefaultMixHalfLife      int64 = 1000
	DefaultHeartbeatTimeout       = 40 * time.Second
	DefaultAllocationPolicy       = "distributed"
	DefaultLeaseNamespace         = "gpuslice-system"
	DefaultSharing                = "DistinctGPUs"
)

func addDefaultingFuncs(scheme *runtime.Scheme) error {
	return RegisterDefaults(scheme)
}

// SetDefaults_GPUSliceArgs fills unset fields.
func SetDefaults_GPUSliceArgs(obj *GPUSliceArgs) {
	s := &obj.ScoringStrategy
	if s.Type == nil {
		s.Type = ptr.To(DefaultScoringStrategy)
	}
	if s.GPUWeight == nil {
		s.GPUWeight = ptr.To(DefaultGPUWeight)
	}
	if s.NodeWeight == nil {
		s.NodeWeight = ptr.To(DefaultNodeWeight)
	}
	if s.MixHalfLife == nil {
		s.MixHalfLife = ptr.To(DefaultMixHalfLife)
	}
	if obj.HeartbeatTimeout == nil {
		obj.HeartbeatTimeout = &metav1.Duration{Duration: DefaultHeartbeatTimeout}
	}
	if obj.DefaultAllocationPolicy == nil {
		obj.DefaultAllocationPolicy = ptr.To(DefaultAllocationPolicy)
	}
	if obj.LeaseNamespace == nil {
		obj.LeaseNamespace = ptr.To(DefaultLeaseNamespace)
	}
	if obj.DefaultSharing == nil {
		obj.DefaultSharing = ptr.To(DefaultSharing)
	}
	if obj.TaintUnusableNodes == nil {
		obj.TaintUnusableNodes = ptr.To(false)
	}
	if obj.DeletionCost == nil {
		obj.DeletionCost = ptr.To(false)
	}
}
