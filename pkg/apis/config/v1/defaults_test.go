package v1

import (
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"

	"github.com/gpuslice/gpuslice/pkg/apis/config"
)

// taintUnusableNodes is off unless set, and converts both ways.
func TestTaintUnusableNodesDefaultAndConversion(t *testing.T) {
	s := runtime.NewScheme()
	if err := AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := config.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		in   *bool
		want bool
	}{{nil, false}, {ptr.To(false), false}, {ptr.To(true), true}} {
		v1args := &GPUSliceArgs{TaintUnusableNodes: tc.in}
		s.Default(v1args)
		if v1args.TaintUnusableNodes == nil || *v1args.TaintUnusableNodes != tc.want {
			t.Fatalf("default of %v: %v", tc.in, v1args.TaintUnusableNodes)
		}
		internal := &config.GPUSliceArgs{}
		if err := s.Convert(v1args, internal, nil); err != nil {
			t.Fatal(err)
		}
		if internal.TaintUnusableNodes != tc.want {
			t.Errorf("%v: internal %v, want %v", tc.in, internal.TaintUnusableNodes, tc.want)
		}
		back := &GPUSliceArgs{}
		if err := s.Convert(internal, back, nil); err != nil {
			t.Fatal(err)
		}
		if back.TaintUnusableNodes == nil || *back.TaintUnusableNodes != tc.want {
			t.Errorf("%v: round trip %v", tc.in, back.TaintUnusableNodes)
		}
	}
}

// deletionCost is off unless set, and converts both ways.
func TestDeletionCostDefaultAndConversion(t *testing.T) {
	s := runtime.NewScheme()
	if err := AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := config.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		in   *bool
		want bool
	}{{nil, false}, {ptr.To(false), false}, {ptr.To(true), true}} {
		v1args := &GPUSliceArgs{DeletionCost: tc.in}
		s.Default(v1args)
		if v1args.DeletionCost == nil || *v1args.DeletionCost != tc.want {
			t.Fatalf("default of %v: %v", tc.in, v1args.DeletionCost)
		}
		internal := &config.GPUSliceArgs{}
		if err := s.Convert(v1args, internal, nil); err != nil {
			t.Fatal(err)
		}
		if internal.DeletionCost != tc.want {
			t.Errorf("%v: internal %v, want %v", tc.in, internal.DeletionCost, tc.want)
		}
		back := &GPUSliceArgs{}
		if err := s.Convert(internal, back, nil); err != nil {
			t.Fatal(err)
		}
		if back.DeletionCost == nil || *back.DeletionCost != tc.want {
			t.Errorf("%v: round trip %v", tc.in, back.DeletionCost)
		}
	}
}
