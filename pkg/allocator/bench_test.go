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

// openbMix is a mix shaped like the openb default trace: shares of a GPU
// split 1 000 ways, whole GPUs and multi-GPU pods, by share of the pods.
func openbMix(b *testing.B) *Mix {
	b.Helper()
	learner := NewMixLearner(1000, 64)
	for size, pods := range map[int]int{1000: 3986, 810: 1078, 470: 750, 320: 328, 650: 253, 230: 140, 460: 128,
		590: 75, 550: 72, 220: 62, 370: 47, 480: 19, 2000: 30, 4000: 20, 8000: 25} {
		for range pods {
			learner.Observe(req(gpuRes, size))
		}
	}
	return learner.Snapshot(0)
}

// BenchmarkScoreOneGPU is the per-node cost of a fragmentation-aware score
// on a one-GPU-per-request node of 8 GPUs split 1 000 ways, with and
// without the sliver and dead-space terms (the dead-space table is built
// once per mix, so once per scheduling cycle; see BenchmarkDeadTable).
func BenchmarkScoreOneGPU(b *testing.B) {
	mix := openbMix(b)
	s := shareNode(b, 8, topology.PolicyPacked)
	occupy(b, s, gpuRes, map[int]int{0: 1000, 1: 810, 2: 470, 3: 650, 4: 320})
	r := req(gpuRes, 320)
	for _, tc := range []struct {
		name            string
		slivers, deadSp float64
	}{{"stranding-only", 0, 0}, {"slivers", 1, 0}, {"slivers+dead-space", 1, 1}} {
		sc := &Scorer{Strategy: FragmentationAware, Mix: mix, Slivers: tc.slivers, DeadSpace: tc.deadSp}
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = sc.Score(s, r)
			}
		})
	}
}

// BenchmarkDeadTable is the cost of one dead-space table for the openb-like
// mix (15 sizes, 1 000 replicas): paid once per scheduling cycle.
func BenchmarkDeadTable(b *testing.B) {
	mix := openbMix(b)
	b.ReportAllocs()
	for b.Loop() {
		if buildDeadTable(mix, gpuRes, 1000) == nil {
			b.Fatal("no table")
		}
	}
}
