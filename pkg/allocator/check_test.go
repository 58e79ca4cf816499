package allocator

import (
	"strings"
	"testing"

	"github.com/gpuslice/gpuslice/pkg/topology"
	"github.com/gpuslice/gpuslice/pkg/topology/fixtures"
)

func TestCheckReasons(t *testing.T) {
	a100 := fixtures.Spec{Name: "a100", Product: "NVIDIA A100-SXM4-40GB", GPUs: 2, MIG: balanced40}
	shared := fixtures.Spec{Name: "h100", Product: "NVIDIA H100 80GB HBM3", GPUs: 2, Replicas: 4, RenameByDefault: true}
	tests := []struct {
		name         string
		spec         fixtures.Spec
		failOver1    bool
		unhealthy    int // GPU index to mark unhealthy, -1 for none
		fill         func(t *testing.T, s *State)
		request      []any
		code         Code
		unresolvable bool
		reason       []string
	}{
		{
			name: "mig fits", spec: a100, unhealthy: -1,
			request: []any{"nvidia.com/mig-3g.20gb", 2}, code: Fits,
		},
		{
			name: "mig slices all in use", spec: a100, unhealthy: -1,
			fill: func(t *testing.T, s *State) {
				place(t, s, req("nvidia.com/mig-3g.20gb", 2))
			},
			request: []any{"nvidia.com/mig-3g.20gb", 1}, code: Insufficient,
			reason: []string{"no free nvidia.com/mig-3g.20gb: 2 of 2 in use"},
		},
		{
			name: "mig partly free", spec: a100, unhealthy: -1,
			fill: func(t *testing.T, s *State) {
				place(t, s, req("nvidia.com/mig-1g.5gb", 3))
			},
			request: []any{"nvidia.com/mig-1g.5gb", 2}, code: Insufficient,
			reason: []string{"not enough free nvidia.com/mig-1g.5gb: need 2, 1 free (3 of 4 in use)"},
		},
		{
			name: "profile not on node", spec: a100, unhealthy: -1,
			request: []any{"nvidia.com/mig-7g.40gb", 1}, code: NotOffered, unresolvable: true,
			reason: []string{"node offers no nvidia.com/mig-7g.40gb"},
		},
		{
			name: "more than the node has", spec: a100, unhealthy: -1,
			request: []any{"nvidia.com/mig-2g.10gb", 3}, code: ExceedsNode, unresolvable: true,
			reason: []string{"nvidia.com/mig-2g.10gb", "request of 3 exceeds the node's 2 healthy devices"},
		},
		{
			name: "unhealthy GPU", spec: a100, unhealthy: 1,
			request: []any{"nvidia.com/mig-3g.20gb", 2}, code: ExceedsNode, unresolvable: true,
			reason: []string{"exceeds the node's 1 healthy devices (2 in all, 1 unhealthy)"},
		},
		{
			name: "time-sliced replicas", spec: shared, unhealthy: -1,
			request: []any{"nvidia.com/gpu.shared", 8}, code: Fits,
		},
		{
			name: "time-sliced more replicas than node", spec: shared, unhealthy: -1,
			request: []any{"nvidia.com/gpu.shared", 9}, code: ExceedsNode, unresolvable: true,
			reason: []string{"request of 9 exceeds the node's 8 healthy devices"},
		},
		{
			name: "failRequestsGreaterThanOne", spec: shared, failOver1: true, unhealthy: -1,
			request: []any{"nvidia.com/gpu.shared", 2}, code: SharedCountOverOne, unresolvable: true,
			reason: []string{`container "main" asks for 2 replicas of time-sliced nvidia.com/gpu.shared`, "failRequestsGreaterThanOne"},
		},
		{
			name: "unshared name on shared node", spec: shared, unhealthy: -1,
			request: []any{"nvidia.com/gpu", 1}, code: NotOffered, unresolvable: true,
			reason: []string{"node offers no nvidia.com/gpu"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cat := topology.NewCatalog()
			topo := fixtures.MustBuild(cat, tc.spec)
			if tc.failOver1 {
				topo.TimeSlicing.FailRequestsGreaterThanOne = true
			}
			if tc.unhealthy >= 0 {
				topo.GPUs[tc.unhealthy].Healthy = false
				topo.GPUs[tc.unhealthy].UnhealthyReason = "XID 79"
			}
			n, err := Compile(topo, cat, "")
			if err != nil {
				t.Fatal(err)
			}
			s := NewState(n)
			if tc.fill != nil {
				tc.fill(t, s)
			}
			v := s.Check(req(tc.request...))
			if v.Code != tc.code {
				t.Fatalf("code = %d (%s), want %d", v.Code, v.Reason(), tc.code)
			}
			if v.Unresolvable() != tc.unresolvable {
				t.Errorf("unresolvable = %v, want %v", v.Unresolvable(), tc.unresolvable)
			}
			for _, want := range tc.reason {
				if !strings.Contains(v.Reason(), want) {
					t.Errorf("reason %q lacks %q", v.Reason(), want)
				}
			}
			if v.OK() != (v.Reason() == "") {
				t.Errorf("OK %v but reason %q", v.OK(), v.Reason())
			}
			_, pv := s.Place(req(tc.request...))
			if pv != v {
				t.Errorf("Place verdict %+v differs from Check %+v", pv, v)
			}
		})
	}
}

func TestCheckMultiResourceNamesFirstMissing(t *testing.T) {
	s := compile(t, fixtures.Spec{Name: "n", Product: "NVIDIA A100-SXM4-40GB", GPUs: 1, MIG: balanced40})
	place(t, s, req("nvidia.com/mig-2g.10gb", 1))
	v := s.Check(multi(
		container("a", false, false, "nvidia.com/mig-1g.5gb", 2),
		container("b", false, false, "nvidia.com/mig-2g.10gb", 1),
	))
	if v.OK() || !strings.Contains(v.Reason(), "no free nvidia.com/mig-2g.10gb: 1 of 1 in use") {
		t.Fatalf("got %q", v.Reason())
	}
}

func TestCheckDoesNotAllocate(t *testing.T) {
	s := compile(t, fixtures.Spec{Name: "n", Product: "NVIDIA A100-SXM4-40GB", GPUs: 8, MIG: balanced40})
	ok := req("nvidia.com/mig-1g.5gb", 1)
	bad := req("nvidia.com/mig-4g.20gb", 1)
	if a := testing.AllocsPerRun(100, func() { _ = s.Check(ok); _ = s.Check(bad) }); a != 0 {
		t.Fatalf("Check allocates %v times per run", a)
	}
}
