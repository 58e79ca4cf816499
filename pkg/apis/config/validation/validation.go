// Package validation checks gpuslice's plugin args.
package validation

import (
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/gpuslice/gpuslice/pkg/apis/config"
)

var (
	strategies = []string{config.Binpack, config.Spread, config.FragmentationAware}
	policies   = []string{"distributed", "packed", "spread"}
	sharings   = []string{config.SharingDistinctGPUs, config.SharingExclusive, config.SharingAny}
)

// ValidateGPUSliceArgs returns every invalid field of args.
func ValidateGPUSliceArgs(path *field.Path, args *config.GPUSliceArgs) error {
	var errs field.ErrorList
	s := path.Child("scoringStrategy")
	if !contains(strategies, args.ScoringStrategy.Type) {
		errs = append(errs, field.NotSupported(s.Child("type"), args.ScoringStrategy.Type, strategies))
	}
	if w := args.ScoringStrategy.GPUWeight; w < 0 || w > 100 {
		errs = append(errs, field.Invalid(s.Child("gpuWeight"), w, "must be between 0 and 100"))
	}
	if w := args.ScoringStrategy.NodeWeight; w < 0 || w > 100 {
		errs = append(errs, field.Invalid(s.Child("nodeWeight"), w, "must be between 0 and 100"))
	}
	if args.ScoringStrategy.GPUWeight == 0 && args.ScoringStrategy.NodeWeight == 0 {
		errs = append(errs, field.Invalid(s.Child("gpuWeight"), 0, "gpuWeight and nodeWeight cannot both be 0"))
	}
	if h := args.ScoringStrategy.MixHalfLife; h < 1 {
		errs = append(errs, field.Invalid(s.Child("mixHalfLife"), h, "must be at least 1"))
	}
	if d := args.HeartbeatTimeout.Duration; d <= 0 {
		errs = append(errs, field.Invalid(path.Child("heartbeatTimeout"), args.HeartbeatTimeout.String(), "must be positive"))
	}
	if !contains(policies, args.DefaultAllocationPolicy) {
		errs = append(errs, field.NotSupported(path.Child("defaultAllocationPolicy"), args.DefaultAllocationPolicy, policies))
	}
	if !contains(sharings, args.DefaultSharing) {
		errs = append(errs, field.NotSupported(path.Child("defaultSharing"), args.DefaultSharing, sharings))
	}
	if args.LeaseNamespace == "" {
		errs = append(errs, field.Required(path.Child("leaseNamespace"), "namespace of the exporters' Leases"))
	}
	return errs.ToAggregate()
}

func contains(set []string, v string) bool {
	for _, s := range set {
		if s == v {
			return true
		}
	}
	return false
}
