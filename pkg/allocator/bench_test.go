package allocator

import (
	"fmt"
	"testing"

	"github.com/gpuslice/gpuslice/pkg/podrequest"
	"github.com/gpuslice/gpuslice/pkg/topology"
	"github.com/gpuslice/gpuslice/pkg/topology/fixtures"
)

// benchNode is one of the reference nodes with about half of its
// devices allocated.
type benchNode struct {
	name  string
	state *State
	req   *podrequest.Request
	mix   *Mix
}

func benchNodes(b *testing.B) []benchNode {
	b.Helper()
	mig := compile(b, fixtures.Spec{Name: "mig-mixed-8gpu", Product: "NVIDIA A100-SXM4-80GB", GPUs: 8,
		MIG: []string{"1g.10gb", "1g.10gb", "2g.20gb", "3g.40gb"}})
	// Half of every profile's devices, the first GPUs first.
	for _, ri := range []string{"nvidia.com/mig-1g.10gb", "nvidia.com/mig-2g.20gb", "nvidia.com/mig-3g.40gb"} {
		r := mig.node.resources[mig.node.resIndex[ri]]
		var ids []string
		for _, ui := range r.units[:len(r.units)/2] {
			ids = append(ids, mig.node.units[ui].deviceID)
		}
		if err := mig.Apply([]ResourceDevices{{Resource: ri, DeviceIDs: ids}}); err != nil {
			b.Fatal(err)
		}
	}
	ts := compile(b, fixtures.Spec{Name: "time-sliced-8x4", Product: "NVIDIA H100 80GB HBM3", GPUs: 8, Replicas: 4,
		RenameByDefault: true, Policy: topology.PolicyPacked})
	occupy(b, ts, "nvidia.com/gpu.shared", map[int]int{0: 4, 1: 3, 2: 3, 3: 2, 4: 2, 5: 1, 6: 1})
	learner := NewMixLearner(1000, 32)
	for _, r := range []*podrequest.Request{
		req("nvidia.com/mig-1g.10gb", 1), req("nvidia.com/mig-1g.10gb", 1), req("nvidia.com/mig-2g.20gb", 1),
		req("nvidia.com/mig-3g.40gb", 1), req("nvidia.com/gpu.shared", 1), req("nvidia.com/gpu.shared", 2),
		req("nvidia.com/gpu", 1), req("nvidia.com/gpu", 2), req("nvidia.com/gpu", 8),
	} {
		learner.Observe(r)
	}
	mix := learner.Snapshot(0)
	return []benchNode{
		{name: "mig-mixed-8gpu-half", state: mig, req: req("nvidia.com/mig-1g.10gb", 1), mix: mix},
		{name: "time-sliced-8x4-half", state: ts, req: req("nvidia.com/gpu.shared", 1), mix: mix},
	}
}

// BenchmarkCheck is the per-node feasibility check of Filter.
func BenchmarkCheck(b *testing.B) {
	for _, bn := range benchNodes(b) {
		b.Run(bn.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if v := bn.state.Check(bn.req); !v.OK() {
					b.Fatal(v.Reason())
				}
			}
		})
	}
}

// BenchmarkScore is the per-node cost of Score for each strategy.
func BenchmarkScore(b *testing.B) {
	for _, bn := range benchNodes(b) {
		for _, st := range Strategies {
			sc := &Scorer{Strategy: st, Mix: bn.mix}
			b.Run(fmt.Sprintf("%s/%s", bn.name, st), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					_ = sc.Score(bn.state, bn.req)
				}
			})
		}
	}
}

// BenchmarkPlace is the cost of predicting the exact devices on one node
// (done once per pod, for the chosen node).
func BenchmarkPlace(b *testing.B) {
	for _, bn := range benchNodes(b) {
		b.Run(bn.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, v := bn.state.Place(bn.req); !v.OK() {
					b.Fatal(v.Reason())
				}
			}
		})
	}
}
