package v1

import (
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"

	"github.com/gpuslice/gpuslice/pkg/apis/config"
)

// The switches taintUnusableNodes and deletionCost are off unless set, and
// convert both ways.
func TestBoolSwitchesDefaultAndConversion(t *testing.T) {
	s := runtime.NewScheme()
	if err := AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := config.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	for _, sw := range []struct {
		name     string
		v1       func(*GPUSliceArgs) **bool
		internal func(*config.GPUSliceArgs) bool
	}{
		{"taintUnusableNodes", func(a *GPUSliceArgs) **bool { return &a.TaintUnusableNodes }, func(a *config.GPUSliceArgs) bool { return a.TaintUnusableNodes }},
		{"deletionCost", func(a *GPUSliceArgs) **bool { return &a.DeletionCost }, func(a *config.GPUSliceArgs) bool { return a.DeletionCost }},
	} {
		for _, tc := range []struct {
			in   *bool
			want bool
		}{{nil, false}, {ptr.To(false), false}, {ptr.To(true), true}} {
			v1args := &GPUSliceArgs{}
			*sw.v1(v1args) = tc.in
			s.Default(v1args)
			if got := *sw.v1(v1args); got == nil || *got != tc.want {
				t.Fatalf("%s: default of %v: %v", sw.name, tc.in, got)
			}
			internal := &config.GPUSliceArgs{}
			if err := s.Convert(v1args, internal, nil); err != nil {
				t.Fatal(err)
			}
			if got := sw.internal(internal); got != tc.want {
				t.Errorf("%s %v: internal %v, want %v", sw.name, tc.in, got, tc.want)
			}
			back := &GPUSliceArgs{}
			if err := s.Convert(internal, back, nil); err != nil {
				t.Fatal(err)
			}
			if got := *sw.v1(back); got == nil || *got != tc.want {
				t.Errorf("%s %v: round trip %v", sw.name, tc.in, got)
			}
		}
	}
}
