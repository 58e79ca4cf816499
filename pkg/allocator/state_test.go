package allocator

import (
	"math/rand"
	"reflect"
	"strings"
	"testing"

	"github.com/gpuslice/gpuslice/pkg/podrequest"
	"github.com/gpuslice/gpuslice/pkg/topology"
	"github.com/gpuslice/gpuslice/pkg/topology/fixtures"
)

func TestApplyRejectsAndLeavesStateUnchanged(t *testing.T) {
	s := compile(t, fixtures.Spec{Name: "ts", Product: "NVIDIA H100 80GB HBM3", GPUs: 2, Replicas: 2, RenameByDefault: true})
	p := place(t, s, req("nvidia.com/gpu.shared", 1))
	held := p.Devices()[0].DeviceIDs[0]
	base, _, _ := topology.SplitReplicaID(held)
	otherGPU := s.node.units[1].deviceID
	if s.node.units[0].deviceID != base {
		otherGPU = s.node.units[0].deviceID
	}
	snapshot := s.Clone()
	tests := []struct {
		name string
		devs []ResourceDevices
		want string
	}{
		{"double booking", []ResourceDevices{{"nvidia.com/gpu.shared", []string{topology.ReplicaID(otherGPU, 0), held}}}, "already allocated"},
		{"same device twice in one call", []ResourceDevices{{"nvidia.com/gpu.shared", []string{topology.ReplicaID(otherGPU, 1), topology.ReplicaID(otherGPU, 1)}}}, "already allocated"},
		{"unknown device", []ResourceDevices{{"nvidia.com/gpu.shared", []string{"GPU-nope::0"}}}, "not advertised"},
		{"wrong resource", []ResourceDevices{{"nvidia.com/gpu", []string{topology.ReplicaID(otherGPU, 0)}}}, "advertised as nvidia.com/gpu.shared"},
		{"missing replica suffix", []ResourceDevices{{"nvidia.com/gpu.shared", []string{otherGPU}}}, "lacks a replica suffix"},
		{"replica out of range", []ResourceDevices{{"nvidia.com/gpu.shared", []string{topology.ReplicaID(otherGPU, 2)}}}, "out of range"},
		{"malformed", []ResourceDevices{{"nvidia.com/gpu.shared", []string{otherGPU + "::x"}}}, "malformed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := s.Apply(tc.devs)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Apply error %v, want %q", err, tc.want)
			}
			if !reflect.DeepEqual(s, snapshot) {
				t.Fatal("failed Apply changed the state")
			}
		})
	}
	if err := s.Release([]ResourceDevices{{"nvidia.com/gpu.shared", []string{held, topology.ReplicaID(otherGPU, 0)}}}); err == nil || !strings.Contains(err.Error(), "not allocated") {
		t.Fatalf("Release of a free device: %v", err)
	}
	if !reflect.DeepEqual(s, snapshot) {
		t.Fatal("failed Release changed the state")
	}
	if err := s.Release(p.Devices()); err != nil {
		t.Fatal(err)
	}
	if got := s.Usage()[0]; got.Used != 0 || got.Free != 4 {
		t.Fatalf("after release %+v", got)
	}
}

func TestMIGDeviceWithReplicaSuffixRejected(t *testing.T) {
	s := compile(t, fixtures.Spec{Name: "a100", Product: "NVIDIA A100-SXM4-40GB", GPUs: 1, MIG: balanced40})
	id := s.node.units[0].deviceID
	res := s.node.resources[s.node.units[0].res].name
	if err := s.Apply([]ResourceDevices{{res, []string{id + "::0"}}}); err == nil || !strings.Contains(err.Error(), "not time-sliced") {
		t.Fatalf("got %v", err)
	}
}

// TestRandomChurnKeepsInvariants places and removes random pods on random
// nodes and checks after every step that no device is held twice, that every
// placement matches its request, and that the counters agree with a recount.
func TestRandomChurnKeepsInvariants(t *testing.T) {
	rng := rand.New(rand.NewSource(42))
	specs := []fixtures.Spec{
		{Name: "a100", Product: "NVIDIA A100-SXM4-40GB", GPUs: 4, MIG: balanced40},
		{Name: "a30", Product: "NVIDIA A30", GPUs: 2, MIG: []string{"1g.6gb", "1g.6gb", "2g.12gb"}},
		{Name: "h100ts", Product: "NVIDIA H100 80GB HBM3", GPUs: 8, Replicas: 4, Policy: topology.PolicyPacked},
		{Name: "b200", Product: "NVIDIA B200", GPUs: 8},
		{Name: "h200mig", Product: "NVIDIA H200", GPUs: 2, MIG: []string{"3g.71gb", "3g.71gb"}, Replicas: 3, RenameByDefault: true, Policy: topology.PolicyDistributed},
	}
	for _, spec := range specs {
		t.Run(spec.Name, func(t *testing.T) {
			s := compile(t, spec)
			names := s.node.Resources()
			type pod struct {
				req *podrequest.Request
				p   *Placement
			}
			var live []pod
			for step := 0; step < 300; step++ {
				if len(live) > 0 && rng.Intn(3) == 0 {
					k := rng.Intn(len(live))
					if err := s.Release(live[k].p.Devices()); err != nil {
						t.Fatalf("step %d release: %v", step, err)
					}
					live = append(live[:k], live[k+1:]...)
				} else {
					var cs []podrequest.Container
					for c := 0; c < 1+rng.Intn(3); c++ {
						cs = append(cs, container(string(rune('a'+c)), c == 0 && rng.Intn(3) == 0, false, names[rng.Intn(len(names))], 1+rng.Intn(3)))
					}
					r := multi(cs...)
					p, v := s.Place(r)
					if !v.OK() {
						if v.Reason() == "" {
							t.Fatalf("step %d: rejection without a reason", step)
						}
						continue
					}
					for _, rd := range p.Devices() {
						if len(rd.DeviceIDs) != r.Count(rd.Resource) {
							t.Fatalf("step %d: %d devices of %s for a request of %d", step, len(rd.DeviceIDs), rd.Resource, r.Count(rd.Resource))
						}
					}
					if err := s.Apply(p.Devices()); err != nil {
						t.Fatalf("step %d: predicted placement does not apply: %v", step, err)
					}
					live = append(live, pod{r, p})
				}
				// Invariants: recount from the live pods.
				holder := map[string]int{}
				used := map[string]int{}
				for i, lp := range live {
					for _, rd := range lp.p.Devices() {
						for _, id := range rd.DeviceIDs {
							if j, dup := holder[id]; dup {
								t.Fatalf("step %d: device %s held by pods %d and %d", step, id, j, i)
							}
							holder[id] = i
							used[rd.Resource]++
						}
					}
				}
				for _, u := range s.Usage() {
					if u.Used != used[u.Resource] || u.Free != u.Healthy-u.Used {
						t.Fatalf("step %d: usage %+v, recount used %d", step, u, used[u.Resource])
					}
				}
			}
		})
	}
}
