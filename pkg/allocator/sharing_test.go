package allocator

import (
	"fmt"
	"math/rand"
	"strings"
	"testing"

	"github.com/gpuslice/gpuslice/pkg/podrequest"
	"github.com/gpuslice/gpuslice/pkg/sim/deviceplugin"
	"github.com/gpuslice/gpuslice/pkg/topology"
	"github.com/gpuslice/gpuslice/pkg/topology/fixtures"
)

const h100 = "NVIDIA H100 80GB HBM3"

func shared(sharing podrequest.Sharing, pairs ...any) *podrequest.Request {
	r := req(pairs...)
	r.Sharing = sharing
	return r
}

func TestSharingVerdicts(t *testing.T) {
	for _, tc := range []struct {
		name     string
		spec     fixtures.Spec
		occupied map[int]int
		req      *podrequest.Request
		// wantGPUs is the number of distinct GPUs the placement uses; 0
		// when the request must be refused with wantCode.
		wantGPUs     int
		wantCode     Code
		unresolvable bool
		wantReason   string
	}{{
		name: "packed gives two replicas of one GPU: refused by default",
		spec: fixtures.Spec{Product: h100, GPUs: 4, Replicas: 4, Policy: topology.PolicyPacked},
		req:  shared(podrequest.SharingDistinct, "nvidia.com/gpu", 2), wantCode: SharesDevice,
		wantReason: `container "main" would get its 2 nvidia.com/gpu replicas on 1 physical device(s) (packed policy); it needs 2 distinct devices`,
	}, {
		name: "packed, opted in: two replicas of one GPU",
		spec: fixtures.Spec{Product: h100, GPUs: 4, Replicas: 4, Policy: topology.PolicyPacked},
		req:  shared(podrequest.SharingAny, "nvidia.com/gpu", 2), wantGPUs: 1,
	}, {
		name: "distributed on idle GPUs: two GPUs",
		spec: fixtures.Spec{Product: h100, GPUs: 4, Replicas: 4, Policy: topology.PolicyDistributed},
		req:  shared(podrequest.SharingDistinct, "nvidia.com/gpu", 2), wantGPUs: 2,
	}, {
		name:     "distributed with a busy GPU: both replicas from the idle one, refused",
		spec:     fixtures.Spec{Product: h100, GPUs: 2, Replicas: 4, Policy: topology.PolicyDistributed},
		occupied: map[int]int{0: 3},
		req:      shared(podrequest.SharingDistinct, "nvidia.com/gpu", 2), wantCode: SharesDevice,
	}, {
		name: "one GPU with four replicas: never two distinct GPUs",
		spec: fixtures.Spec{Product: h100, GPUs: 1, Replicas: 4},
		req:  shared(podrequest.SharingDistinct, "nvidia.com/gpu", 2), wantCode: TooFewDevices, unresolvable: true,
	}, {
		name: "one replica: the rule does not apply",
		spec: fixtures.Spec{Product: h100, GPUs: 1, Replicas: 4, Policy: topology.PolicyPacked},
		req:  shared(podrequest.SharingDistinct, "nvidia.com/gpu", 1), wantGPUs: 1,
	}, {
		name: "exclusive on a time-sliced node: refused for good",
		spec: fixtures.Spec{Product: h100, GPUs: 4, Replicas: 4},
		req:  shared(podrequest.SharingExclusive, "nvidia.com/gpu", 2), wantCode: NotExclusive, unresolvable: true,
		wantReason: "nvidia.com/gpu is time-sliced on this node, and the pod asks for exclusive devices",
	}, {
		name: "exclusive on whole GPUs",
		spec: fixtures.Spec{Product: h100, GPUs: 4},
		req:  shared(podrequest.SharingExclusive, "nvidia.com/gpu", 2), wantGPUs: 2,
	}, {
		name: "exclusive MIG slices are not shared",
		spec: fixtures.Spec{Product: "NVIDIA A100-SXM4-40GB", GPUs: 1, MIG: balanced40},
		req:  shared(podrequest.SharingExclusive, "nvidia.com/mig-1g.5gb", 2), wantGPUs: 1,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			tc.spec.Name = "n"
			s := compile(t, tc.spec)
			if tc.occupied != nil {
				occupy(t, s, "nvidia.com/gpu", tc.occupied)
			}
			check := s.Check(tc.req)
			p, v := s.Place(tc.req)
			if check != v {
				t.Fatalf("Check says %q, Place %q", check.Reason(), v.Reason())
			}
			if tc.wantGPUs == 0 {
				if v.Code != tc.wantCode || v.Unresolvable() != tc.unresolvable {
					t.Fatalf("verdict %d (unresolvable %v) %q, want code %d (unresolvable %v)", v.Code, v.Unresolvable(), v.Reason(), tc.wantCode, tc.unresolvable)
				}
				if tc.wantReason != "" && v.Reason() != tc.wantReason {
					t.Fatalf("reason %q, want %q", v.Reason(), tc.wantReason)
				}
				return
			}
			if !v.OK() {
				t.Fatalf("refused: %s", v.Reason())
			}
			if got := len(perGPU(t, s, p)); got != tc.wantGPUs {
				t.Fatalf("placement %v on %d GPUs, want %d", p.Devices(), got, tc.wantGPUs)
			}
		})
	}
}

// TestDistinctReplicasNeverOnOneGPU draws random time-sliced nodes, policies
// and prior allocations. Whenever a container asking for N > 1 replicas is
// admitted without opting in, every pick the device plugin can make (its
// greedy allocator with random tie-breaking, an independent model) puts
// them on N different GPUs; whenever it is refused, the plugin would have
// put two of them on one GPU, and opting in (Any) admits it.
func TestDistinctReplicasNeverOnOneGPU(t *testing.T) {
	rng := rand.New(rand.NewSource(18))
	policies := []topology.AllocationPolicy{topology.PolicyPacked, topology.PolicyDistributed, topology.PolicySpread}
	admitted, refused := 0, 0
	for iter := 0; iter < 600; iter++ {
		policy := policies[iter%len(policies)]
		gpus, replicas := 1+rng.Intn(6), 2+rng.Intn(6)
		s, all, free, _, _ := randomSlicedNode(t, rng, fmt.Sprintf("n%d", iter), gpus, replicas, policy)
		if len(free) < 2 {
			continue
		}
		size := 2 + rng.Intn(min(3, len(free)-1))
		distinctOf := func(ids []string) int {
			seen := map[string]bool{}
			for _, id := range ids {
				base, _, _ := topology.SplitReplicaID(id)
				seen[base] = true
			}
			return len(seen)
		}
		v := s.Check(shared(podrequest.SharingDistinct, "nvidia.com/gpu", size))
		switch {
		case v.OK():
			admitted++
			p, pv := s.Place(shared(podrequest.SharingDistinct, "nvidia.com/gpu", size))
			if !pv.OK() || distinctOf(p.Devices()[0].DeviceIDs) != size {
				t.Fatalf("iter %d: admitted, but placed %v (%s)", iter, p.Devices(), pv.Reason())
			}
			for trial := 0; trial < 5; trial++ {
				if pick := deviceplugin.Greedy(rng, policy, all, free, nil, size); distinctOf(pick) != size {
					t.Fatalf("iter %d policy %s: admitted %d replicas, but the plugin may pick %v", iter, policy, size, pick)
				}
			}
		case v.Code == SharesDevice || v.Code == TooFewDevices:
			refused++
			if !strings.Contains(v.Reason(), "distinct") {
				t.Fatalf("reason %q", v.Reason())
			}
			if _, av := s.Place(shared(podrequest.SharingAny, "nvidia.com/gpu", size)); !av.OK() {
				t.Fatalf("iter %d: refused (%s), and refused with Any too (%s)", iter, v.Reason(), av.Reason())
			}
			if pick := deviceplugin.Greedy(rng, policy, all, free, nil, size); distinctOf(pick) >= size {
				t.Fatalf("iter %d policy %s: refused (%s), but the plugin picks %v", iter, policy, v.Reason(), pick)
			}
		default:
			// Not enough free replicas at all: not this rule's business.
		}
	}
	if admitted < 100 || refused < 100 {
		t.Fatalf("only %d admitted and %d refused cases", admitted, refused)
	}
	t.Logf("%d admitted, %d refused", admitted, refused)
}
