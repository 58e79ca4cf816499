package validation

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/gpuslice/gpuslice/pkg/apis/config"
	"github.com/gpuslice/gpuslice/pkg/apis/config/scheme"
	configv1 "github.com/gpuslice/gpuslice/pkg/apis/config/v1"
)

// defaulted returns internal args decoded from an empty v1 object through
// the scheme: defaults and conversion as kube-scheduler applies them.
func defaulted(t *testing.T) *config.GPUSliceArgs {
	t.Helper()
	s := runtime.NewScheme()
	scheme.AddToScheme(s)
	in := &configv1.GPUSliceArgs{}
	s.Default(in)
	out := &config.GPUSliceArgs{}
	if err := s.Convert(in, out, nil); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestDefaults(t *testing.T) {
	a := defaulted(t)
	if a.ScoringStrategy.Type != config.Binpack || a.ScoringStrategy.GPUWeight != 2 || a.ScoringStrategy.NodeWeight != 1 ||
		a.ScoringStrategy.MixHalfLife != 1000 || a.HeartbeatTimeout.Duration != 40*time.Second ||
		a.DefaultAllocationPolicy != "distributed" || a.LeaseNamespace != "gpuslice-system" || a.DefaultSharing != config.SharingDistinctGPUs {
		t.Fatalf("defaults %+v", a)
	}
	if err := ValidateGPUSliceArgs(field.NewPath("args"), a); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
}

func TestValidationNamesTheField(t *testing.T) {
	tests := []struct {
		mutate func(*config.GPUSliceArgs)
		field  string
	}{
		{func(a *config.GPUSliceArgs) { a.ScoringStrategy.Type = "most-allocated" }, "args.scoringStrategy.type"},
		{func(a *config.GPUSliceArgs) { a.ScoringStrategy.GPUWeight = -1 }, "args.scoringStrategy.gpuWeight"},
		{func(a *config.GPUSliceArgs) { a.ScoringStrategy.NodeWeight = 101 }, "args.scoringStrategy.nodeWeight"},
		{func(a *config.GPUSliceArgs) { a.ScoringStrategy.GPUWeight, a.ScoringStrategy.NodeWeight = 0, 0 }, "both be 0"},
		{func(a *config.GPUSliceArgs) { a.ScoringStrategy.MixHalfLife = 0 }, "args.scoringStrategy.mixHalfLife"},
		{func(a *config.GPUSliceArgs) { a.HeartbeatTimeout = metav1.Duration{} }, "args.heartbeatTimeout"},
		{func(a *config.GPUSliceArgs) { a.DefaultAllocationPolicy = "random" }, "args.defaultAllocationPolicy"},
		{func(a *config.GPUSliceArgs) { a.LeaseNamespace = "" }, "args.leaseNamespace"},
		{func(a *config.GPUSliceArgs) { a.DefaultSharing = "shared" }, "args.defaultSharing"},
	}
	for _, tc := range tests {
		a := defaulted(t)
		tc.mutate(a)
		err := ValidateGPUSliceArgs(field.NewPath("args"), a)
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("error %v does not name %q", err, tc.field)
		}
	}
}
