package gpuslice

import (
	"context"
	"fmt"
	"testing"

	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"

	"github.com/gpuslice/gpuslice/pkg/topology"
	"github.com/gpuslice/gpuslice/pkg/topology/fixtures"
)

// BenchmarkSchedulingCycle1000Nodes is the cost GPUSlice adds to one pod's
// scheduling cycle on a 1 000-node cluster: PreFilter, Filter on every
// node, PreScore, Score on every feasible node, NormalizeScore, Reserve and
// (to keep the cluster as it was) Unreserve. Half the nodes are A100-40GB
// MIG all-balanced, half H100 time-sliced x4; half of each node's devices
// are in use.
func BenchmarkSchedulingCycle1000Nodes(b *testing.B) {
	var specs []fixtures.Spec
	for i := 0; i < 500; i++ {
		specs = append(specs,
			fixtures.Spec{Name: fmt.Sprintf("mig-%d", i), Product: "NVIDIA A100-SXM4-40GB", GPUs: 8, MIG: []string{"1g.5gb", "1g.5gb", "2g.10gb", "3g.20gb"}},
			fixtures.Spec{Name: fmt.Sprintf("ts-%d", i), Product: "NVIDIA H100 80GB HBM3", GPUs: 8, Replicas: 4, Policy: topology.PolicyPacked})
	}
	for _, strategy := range []string{"binpack", "fragmentation-aware"} {
		for _, res := range []string{"nvidia.com/mig-1g.5gb", "nvidia.com/gpu"} {
			b.Run(strategy+"/"+res, func(b *testing.B) {
				args := testArgs(strategy)
				c := newCache(b, specs...)
				pl := newPlugin(b, testShared(c, args), args, nil)
				nodes := make([]fwk.NodeInfo, len(specs))
				for i, s := range specs {
					nodes[i] = nodeInfo(s.Name)
				}
				// Fill half of every node.
				for i, s := range specs {
					filler := map[string]int64{"nvidia.com/mig-1g.5gb": 8, "nvidia.com/mig-3g.20gb": 4}
					if s.Replicas > 0 {
						filler = map[string]int64{"nvidia.com/gpu": 16}
					}
					pod := gpuPod(fmt.Sprint("fill-", i), filler)
					cs := cycle(b, pl, pod)
					if st := pl.Filter(context.Background(), cs, pod, nodes[i]); !st.IsSuccess() {
						b.Fatal(st)
					}
					if st := pl.Reserve(context.Background(), cs, pod, s.Name); !st.IsSuccess() {
						b.Fatal(st)
					}
				}
				pod := gpuPod("bench", map[string]int64{res: 1})
				ctx := context.Background()
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					cs := framework.NewCycleState()
					if _, st := pl.PreFilter(ctx, cs, pod, nodes); !st.IsSuccess() {
						b.Fatal(st)
					}
					feasible := make([]fwk.NodeInfo, 0, len(nodes))
					for _, n := range nodes {
						if pl.Filter(ctx, cs, pod, n).IsSuccess() {
							feasible = append(feasible, n)
						}
					}
					if st := pl.PreScore(ctx, cs, pod, feasible); !st.IsSuccess() {
						b.Fatal(st)
					}
					scores := make(fwk.NodeScoreList, len(feasible))
					for i, n := range feasible {
						s, _ := pl.Score(ctx, cs, pod, n)
						scores[i] = fwk.NodeScore{Name: n.Node().Name, Score: s}
					}
					_ = pl.NormalizeScore(ctx, cs, pod, scores)
					best := scores[0]
					for _, s := range scores {
						if s.Score > best.Score {
							best = s
						}
					}
					if st := pl.Reserve(ctx, cs, pod, best.Name); !st.IsSuccess() {
						b.Fatal(st)
					}
					pl.Unreserve(ctx, cs, pod, best.Name)
				}
			})
		}
	}
}
