package allocator

import (
	"reflect"
	"testing"

	"github.com/gpuslice/gpuslice/pkg/topology"
	"github.com/gpuslice/gpuslice/pkg/topology/fixtures"
)

func timeSliced(policy topology.AllocationPolicy, gpus, replicas int) fixtures.Spec {
	return fixtures.Spec{Name: "ts-" + string(policy), Product: "NVIDIA H100 80GB HBM3", GPUs: gpus, Replicas: replicas, Policy: policy}
}

func TestTimeSlicedPrediction(t *testing.T) {
	const gpu = "nvidia.com/gpu"
	tests := []struct {
		name   string
		policy topology.AllocationPolicy
		before map[int]int // replicas already taken per GPU
		count  int
		// want is the per-GPU pick. Where the plugin's choice among equal
		// GPUs is arbitrary, equal lists the GPU groups that are
		// interchangeable and the test compares up to that symmetry.
		want  map[int]int
		equal [][]int
	}{
		{name: "packed prefers the fullest GPU", policy: topology.PolicyPacked,
			before: map[int]int{1: 1}, count: 1, want: map[int]int{1: 1}},
		{name: "distributed prefers the emptiest GPU", policy: topology.PolicyDistributed,
			before: map[int]int{0: 1, 2: 2, 3: 1}, count: 1, want: map[int]int{1: 1}},
		{name: "packed fills a GPU, then the next fullest", policy: topology.PolicyPacked,
			before: map[int]int{0: 4, 1: 2, 3: 1}, count: 3, want: map[int]int{1: 2, 3: 1}},
		{name: "packed stays on the GPU it started", policy: topology.PolicyPacked,
			count: 3, want: map[int]int{0: 3}, equal: [][]int{{0, 1, 2, 3}}},
		{name: "distributed alternates across equal GPUs", policy: topology.PolicyDistributed,
			count: 3, want: map[int]int{0: 1, 1: 1, 2: 1}, equal: [][]int{{0, 1, 2, 3}}},
		{name: "distributed tie broken by picks of this request", policy: topology.PolicyDistributed,
			before: map[int]int{0: 1, 1: 1, 2: 1, 3: 1}, count: 6, want: map[int]int{0: 2, 1: 2, 2: 1, 3: 1}, equal: [][]int{{0, 1, 2, 3}}},
		{name: "packed tie among equally full GPUs", policy: topology.PolicyPacked,
			before: map[int]int{1: 2, 2: 2}, count: 1, want: map[int]int{1: 1}, equal: [][]int{{1, 2}, {0, 3}}},
		{name: "spread touches distinct GPUs first", policy: topology.PolicySpread,
			before: map[int]int{0: 3}, count: 2, want: map[int]int{1: 1, 2: 1}, equal: [][]int{{1, 2, 3}}},
		{name: "spread returns to a GPU only when all are touched", policy: topology.PolicySpread,
			count: 5, want: map[int]int{0: 2, 1: 1, 2: 1, 3: 1}, equal: [][]int{{0, 1, 2, 3}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := compile(t, timeSliced(tc.policy, 4, 4))
			occupy(t, s, gpu, tc.before)
			p := place(t, s, req(gpu, tc.count))
			got := perGPU(t, s, p)
			if !equalUpToSymmetry(got, tc.want, tc.equal) {
				t.Fatalf("picked per GPU %v, want %v (up to symmetry %v)", got, tc.want, tc.equal)
			}
			for _, id := range p.Containers[0].Devices[0].DeviceIDs {
				if _, r, ok := topology.SplitReplicaID(id); !ok || r < 0 {
					t.Errorf("device %q is not a replica ID", id)
				}
			}
		})
	}
}

// equalUpToSymmetry compares per-GPU counts where GPUs within a group may
// be permuted.
func equalUpToSymmetry(got, want map[int]int, groups [][]int) bool {
	inGroup := map[int]bool{}
	for _, g := range groups {
		var a, b []int
		for _, i := range g {
			inGroup[i] = true
			a = append(a, got[i])
			b = append(b, want[i])
		}
		if !sameMultiset(a, b) {
			return false
		}
	}
	for i, c := range got {
		if !inGroup[i] && want[i] != c {
			return false
		}
	}
	for i, c := range want {
		if !inGroup[i] && got[i] != c {
			return false
		}
	}
	return true
}

func sameMultiset(a, b []int) bool {
	m := map[int]int{}
	for _, x := range a {
		m[x]++
	}
	for _, x := range b {
		m[x]--
	}
	for _, v := range m {
		if v != 0 {
			return false
		}
	}
	return true
}

func TestWholeGPUsMultiGPU(t *testing.T) {
	s := compile(t, fixtures.Spec{Name: "h200", Product: "NVIDIA H200", GPUs: 8})
	occupy(t, s, "nvidia.com/gpu", map[int]int{1: 1, 3: 1})
	p := place(t, s, req("nvidia.com/gpu", 4))
	got := perGPU(t, s, p)
	if len(got) != 4 || got[1] != 0 || got[3] != 0 {
		t.Fatalf("4 whole GPUs should avoid the busy ones 1 and 3: %v", got)
	}
	for g, c := range got {
		if c != 1 {
			t.Fatalf("GPU %d given %d times", g, c)
		}
	}
	if v := s.Check(req("nvidia.com/gpu", 3)); v.OK() || v.Reason() != "not enough free nvidia.com/gpu: need 3, 2 free (6 of 8 in use)" {
		t.Fatalf("reason %q", v.Reason())
	}
	if s.EmptyGPUs() != 2 {
		t.Fatalf("EmptyGPUs = %d, want 2", s.EmptyGPUs())
	}
}

func TestMIGSeveralProfilesOnePod(t *testing.T) {
	s := compile(t, fixtures.Spec{Name: "a100", Product: "NVIDIA A100-SXM4-40GB", GPUs: 2, MIG: balanced40})
	r := multi(
		container("model", false, false, "nvidia.com/mig-3g.20gb", 1, "nvidia.com/mig-1g.5gb", 1),
		container("cache", false, false, "nvidia.com/mig-2g.10gb", 2),
	)
	p := place(t, s, r)
	if len(p.Containers) != 2 || p.Containers[0].Name != "model" || p.Containers[1].Name != "cache" {
		t.Fatalf("containers %+v", p.Containers)
	}
	byRes := map[string]int{}
	for _, rd := range p.Devices() {
		byRes[rd.Resource] += len(rd.DeviceIDs)
		for _, id := range rd.DeviceIDs {
			if _, r, _ := topology.SplitReplicaID(id); r != -1 {
				t.Errorf("MIG device %q carries a replica suffix", id)
			}
		}
	}
	want := map[string]int{"nvidia.com/mig-3g.20gb": 1, "nvidia.com/mig-1g.5gb": 1, "nvidia.com/mig-2g.10gb": 2}
	if !reflect.DeepEqual(byRes, want) {
		t.Fatalf("devices per resource %v, want %v", byRes, want)
	}
	u := map[string]Usage{}
	for _, x := range s.Usage() {
		u[x.Resource] = x
	}
	if u["nvidia.com/mig-2g.10gb"].Free != 0 || u["nvidia.com/mig-3g.20gb"].Free != 1 || u["nvidia.com/mig-1g.5gb"].Free != 3 {
		t.Fatalf("usage after placement %+v", u)
	}
	if v := s.Check(req("nvidia.com/mig-2g.10gb", 1)); v.Reason() != "no free nvidia.com/mig-2g.10gb: 2 of 2 in use" {
		t.Fatalf("reason %q", v.Reason())
	}
}

func TestInitContainerDevicesAreReused(t *testing.T) {
	s := compile(t, fixtures.Spec{Name: "h200", Product: "NVIDIA H200", GPUs: 4})
	r := multi(
		container("warmup", true, false, "nvidia.com/gpu", 2),
		container("app", false, false, "nvidia.com/gpu", 1),
	)
	p := place(t, s, r)
	initIDs := p.Containers[0].Devices[0].DeviceIDs
	appIDs := p.Containers[1].Devices[0].DeviceIDs
	if len(initIDs) != 2 || len(appIDs) != 1 || (appIDs[0] != initIDs[0] && appIDs[0] != initIDs[1]) {
		t.Fatalf("app should reuse an init device: init %v app %v", initIDs, appIDs)
	}
	if d := p.Devices(); len(d) != 1 || len(d[0].DeviceIDs) != 2 {
		t.Fatalf("pod holds %v, want the 2 init devices once", d)
	}
	if got := s.Usage()[0].Used; got != 2 {
		t.Fatalf("used %d, want 2", got)
	}
}

func TestSidecarKeepsDevices(t *testing.T) {
	s := compile(t, fixtures.Spec{Name: "h200", Product: "NVIDIA H200", GPUs: 4})
	r := multi(
		container("proxy", true, true, "nvidia.com/gpu", 1),
		container("setup", true, false, "nvidia.com/gpu", 2),
		container("app", false, false, "nvidia.com/gpu", 1),
	)
	if r.Count("nvidia.com/gpu") != 3 {
		t.Fatalf("effective %d, want 3", r.Count("nvidia.com/gpu"))
	}
	p := place(t, s, r)
	sidecar := p.Containers[0].Devices[0].DeviceIDs[0]
	for _, c := range p.Containers[1:] {
		for _, id := range c.Devices[0].DeviceIDs {
			if id == sidecar {
				t.Fatalf("%s reuses the sidecar's device %s", c.Name, id)
			}
		}
	}
	if d := p.Devices(); len(d[0].DeviceIDs) != 3 {
		t.Fatalf("pod holds %v, want 3 devices", d)
	}
}

func TestPlaceDoesNotMutate(t *testing.T) {
	s := compile(t, timeSliced(topology.PolicyPacked, 2, 4))
	before := s.Clone()
	if _, v := s.Place(req("nvidia.com/gpu", 3)); !v.OK() {
		t.Fatal(v.Reason())
	}
	if !reflect.DeepEqual(before, s) {
		t.Fatal("Place changed the state")
	}
}

func TestSingleStrategyAndMIGTimeSlicing(t *testing.T) {
	single := compile(t, fixtures.Spec{Name: "single", Product: "NVIDIA A100-SXM4-80GB", GPUs: 2, MIG: []string{"1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb"}, Strategy: topology.MIGStrategySingle})
	p := place(t, single, req("nvidia.com/gpu", 9))
	if n := len(p.Devices()[0].DeviceIDs); n != 9 {
		t.Fatalf("got %d MIG devices", n)
	}
	if v := single.Check(req("nvidia.com/gpu", 6)); v.Reason() != "not enough free nvidia.com/gpu: need 6, 5 free (9 of 14 in use)" {
		t.Fatalf("reason %q", v.Reason())
	}

	shared := compile(t, fixtures.Spec{Name: "migts", Product: "NVIDIA A100-SXM4-40GB", GPUs: 1, MIG: balanced40, Replicas: 2, Policy: topology.PolicyPacked})
	first := place(t, shared, req("nvidia.com/mig-1g.5gb", 1))
	second := place(t, shared, req("nvidia.com/mig-1g.5gb", 1))
	b1, _, _ := topology.SplitReplicaID(first.Devices()[0].DeviceIDs[0])
	b2, _, _ := topology.SplitReplicaID(second.Devices()[0].DeviceIDs[0])
	if b1 != b2 {
		t.Fatalf("packed should put both replicas on one MIG device: %s vs %s", b1, b2)
	}
}
