package gpuslice

import (
	"testing"

	"github.com/gpuslice/gpuslice/pkg/topology/fixtures"
)

// Only the fragmentation-aware profile weighs slivers; binpack and spread
// scores have no such term.
func TestSliverWeightByStrategy(t *testing.T) {
	specs := []fixtures.Spec{{Name: "n", Product: "NVIDIA H200", GPUs: 8}}
	for strategy, want := range map[string]float64{"fragmentation-aware": fragmentationSlivers, "binpack": 0, "spread": 0} {
		args := testArgs(strategy)
		pl := newPlugin(t, testShared(newCache(t, specs...), args), args, nil)
		if pl.scorer.Slivers != want {
			t.Errorf("%s: sliver weight %v, want %v", strategy, pl.scorer.Slivers, want)
		}
	}
}
