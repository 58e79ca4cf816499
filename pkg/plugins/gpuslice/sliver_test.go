package gpuslice

import (
	"testing"

	"github.com/gpuslice/gpuslice/pkg/topology/fixtures"
)

// Only the fragmentation-aware profile weighs slivers and dead space;
// binpack and spread scores have no such terms.
func TestSliverWeightByStrategy(t *testing.T) {
	specs := []fixtures.Spec{{Name: "n", Product: "NVIDIA H200", GPUs: 8}}
	for strategy, want := range map[string][2]float64{"fragmentation-aware": {fragmentationSlivers, fragmentationDeadSpace}, "binpack": {}, "spread": {}} {
		args := testArgs(strategy)
		pl := newPlugin(t, testShared(newCache(t, specs...), args), args, nil)
		if got := [2]float64{pl.scorer.Slivers, pl.scorer.DeadSpace}; got != want {
			t.Errorf("%s: sliver and dead-space weights %v, want %v", strategy, got, want)
		}
	}
}
