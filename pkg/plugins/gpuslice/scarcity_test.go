package gpuslice

import (
	"context"
	"fmt"
	"math"
	"testing"

	fwk "k8s.io/kube-scheduler/framework"

	"github.com/gpuslice/gpuslice/pkg/topology/fixtures"
)

// PreScore weighs the fragmentation-aware mix by scarcity on the nodes it
// is given: once no scored node has 8 free GPUs, the 8-GPU class counts at
// scarcityBeta, far above its share of the pods (about 1 %, with the
// learner's decay); while one has, its weight stays that share.
func TestPreScoreRaisesScarceClasses(t *testing.T) {
	ctx := context.Background()
	specs := []fixtures.Spec{}
	for i := range 3 {
		specs = append(specs, fixtures.Spec{Name: fmt.Sprint("n", i), Product: "NVIDIA H200", GPUs: 8})
	}
	args := testArgs("fragmentation-aware")
	shared := testShared(newCache(t, specs...), args)
	pl := newPlugin(t, shared, args, nil)
	// The mix: 99 one-GPU pods for each 8-GPU pod.
	for i := range 99 {
		cycle(t, pl, gpuPod(fmt.Sprint("one", i), map[string]int64{"nvidia.com/gpu": 1}))
	}
	cycle(t, pl, gpuPod("eight", map[string]int64{"nvidia.com/gpu": 8}))

	weights := func(nodes ...string) (eight, one float64) {
		t.Helper()
		pod := gpuPod(fmt.Sprint("probe-", len(nodes)), map[string]int64{"nvidia.com/gpu": 1})
		cs := cycle(t, pl, pod)
		var infos []fwk.NodeInfo
		for _, n := range nodes {
			infos = append(infos, nodeInfo(n))
		}
		if st := pl.PreScore(ctx, cs, pod, infos); !st.IsSuccess() {
			t.Fatal(st)
		}
		s, err := getState(cs)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range s.mix.Classes {
			switch c.Resources[0].Count {
			case 8:
				eight = c.Weight
			case 1:
				one = c.Weight
			}
		}
		return eight, one
	}
	if eight, one := weights("n0", "n1", "n2"); eight > 0.02 || one < 0.98 {
		t.Fatalf("empty nodes: weights 8-GPU %v, 1-GPU %v; want their shares", eight, one)
	}
	// One GPU taken on every node.
	for _, n := range []string{"n0", "n1", "n2"} {
		pod := gpuPod("take-"+n, map[string]int64{"nvidia.com/gpu": 1})
		cs := cycle(t, pl, pod)
		if st := pl.Filter(ctx, cs, pod, nodeInfo(n)); !st.IsSuccess() {
			t.Fatal(st)
		}
		if st := pl.Reserve(ctx, cs, pod, n); !st.IsSuccess() {
			t.Fatal(st)
		}
	}
	if eight, one := weights("n0", "n1", "n2"); math.Abs(eight-scarcityBeta) > 1e-9 || one < 0.98 {
		t.Fatalf("no node with 8 free GPUs: weights 8-GPU %v, 1-GPU %v; want %v and its share", eight, one, scarcityBeta)
	}
}
