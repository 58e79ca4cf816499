package allocator

import (
	"math/rand"
	"testing"

	"github.com/gpuslice/gpuslice/pkg/podrequest"
	"github.com/gpuslice/gpuslice/pkg/topology"
	"github.com/gpuslice/gpuslice/pkg/topology/fixtures"
)

var balanced40 = []string{"1g.5gb", "1g.5gb", "2g.10gb", "3g.20gb"}

func compile(t testing.TB, spec fixtures.Spec) *State {
	t.Helper()
	cat := topology.NewCatalog()
	topo, err := fixtures.Build(cat, spec)
	if err != nil {
		t.Fatalf("fixture: %v", err)
	}
	n, err := Compile(topo, cat, topology.PolicyDistributed)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	return NewState(n)
}

// req builds a one-container request.
func req(pairs ...any) *podrequest.Request {
	return multi(container("main", false, false, pairs...))
}

func container(name string, init, restartable bool, pairs ...any) podrequest.Container {
	c := podrequest.Container{Name: name, Init: init, Restartable: restartable}
	for i := 0; i < len(pairs); i += 2 {
		c.Resources = append(c.Resources, podrequest.ResourceCount{Name: pairs[i].(string), Count: pairs[i+1].(int)})
	}
	return c
}

// multi builds a request from containers, computing Effective with the
// Kubernetes rule (sidecars included).
func multi(cs ...podrequest.Container) *podrequest.Request {
	r := &podrequest.Request{Containers: cs}
	eff := map[string]int{}
	sidecars := map[string]int{}
	apps := map[string]int{}
	for _, c := range cs {
		for _, rc := range c.Resources {
			switch {
			case c.Init && c.Restartable:
				sidecars[rc.Name] += rc.Count
				apps[rc.Name] += rc.Count
				eff[rc.Name] = max(eff[rc.Name], sidecars[rc.Name])
			case c.Init:
				eff[rc.Name] = max(eff[rc.Name], rc.Count+sidecars[rc.Name])
			default:
				apps[rc.Name] += rc.Count
			}
		}
	}
	for k, v := range apps {
		eff[k] = max(eff[k], v)
	}
	for _, k := range sortedNames(eff) {
		r.Effective = append(r.Effective, podrequest.ResourceCount{Name: k, Count: eff[k]})
	}
	return r
}

func sortedNames(m map[string]int) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// place predicts and commits a placement, failing the test on any error.
func place(t testing.TB, s *State, r *podrequest.Request) *Placement {
	t.Helper()
	p, v := s.Place(r)
	if !v.OK() {
		t.Fatalf("place %v: %s", r, v.Reason())
	}
	if err := s.Apply(p.Devices()); err != nil {
		t.Fatalf("apply %v: %v", p.Devices(), err)
	}
	return p
}

// gpuOf maps a device ID to the index of its physical GPU.
func gpuOf(t testing.TB, s *State, id string) int {
	t.Helper()
	base, _, ok := topology.SplitReplicaID(id)
	if !ok {
		t.Fatalf("bad id %q", id)
	}
	ui, found := s.node.idIndex[base]
	if !found {
		t.Fatalf("unknown id %q", id)
	}
	return s.node.gpus[s.node.units[ui].gpu].index
}

// perGPU counts a placement's devices of one resource per GPU index.
func perGPU(t testing.TB, s *State, p *Placement) map[int]int {
	t.Helper()
	out := map[int]int{}
	for _, rd := range p.Devices() {
		for _, id := range rd.DeviceIDs {
			out[gpuOf(t, s, id)]++
		}
	}
	return out
}

// occupy takes n replicas on each listed GPU index of a time-sliced node.
func occupy(t testing.TB, s *State, resourceName string, perGPU map[int]int) {
	t.Helper()
	for gi, cnt := range perGPU {
		var ids []string
		for _, ui := range s.node.resources[s.node.resIndex[resourceName]].units {
			u := s.node.units[ui]
			if s.node.gpus[u.gpu].index != gi {
				continue
			}
			for r := 0; r < cnt; r++ {
				if u.shared {
					ids = append(ids, topology.ReplicaID(u.deviceID, int(s.used[ui])+r))
				} else {
					ids = append(ids, u.deviceID)
				}
			}
		}
		if err := s.Apply([]ResourceDevices{{Resource: resourceName, DeviceIDs: ids}}); err != nil {
			t.Fatalf("occupy: %v", err)
		}
	}
}

// halfGPUMix is a mix of one class asking for half a GPU of shareNode, 4
// CPUs and 8 GiB.
func halfGPUMix() *Mix {
	return &Mix{Classes: []MixClass{{Resources: req(gpuRes, 500).Effective, Host: Host{MilliCPU: 4000, MemBytes: 8 << 30}, Weight: 1}}}
}

// cpuOnly asks for no GPU.
var cpuOnly = &podrequest.Request{}

// cpuHost is a pod asking for podCPU millicores and 1 GiB on a node with
// freeCPU millicores and 64 GiB free.
func cpuHost(podCPU, freeCPU int64) HostFit {
	return HostFit{Pod: Host{MilliCPU: podCPU, MemBytes: 1 << 30}, NodeFree: Host{MilliCPU: freeCPU, MemBytes: 64 << 30}, Known: true}
}

// randomSlicedNode is a node of gpus H100s time-sliced replicas ways under
// policy, one GPU unhealthy one time in four, with about a third of the
// healthy replicas taken at random (applied to the returned state). It
// returns every replica ID, the free ones and, per GPU UUID, the replicas
// taken and whether it is healthy.
func randomSlicedNode(t testing.TB, rng *rand.Rand, name string, gpus, replicas int, policy topology.AllocationPolicy) (s *State, all, free []string, taken map[string]int, healthy map[string]bool) {
	t.Helper()
	cat := topology.NewCatalog()
	topo := fixtures.MustBuild(cat, fixtures.Spec{Name: name, Product: h100, GPUs: gpus, Replicas: replicas, Policy: policy})
	if rng.Intn(4) == 0 {
		topo.GPUs[rng.Intn(gpus)].Healthy = false
	}
	n, err := Compile(topo, cat, "")
	if err != nil {
		t.Fatal(err)
	}
	s = NewState(n)
	taken, healthy = map[string]int{}, map[string]bool{}
	var takenIDs []string
	for _, g := range topo.GPUs {
		taken[g.UUID] = 0
		healthy[g.UUID] = g.Healthy
		for r := 0; r < replicas; r++ {
			id := topology.ReplicaID(g.UUID, r)
			all = append(all, id)
			switch {
			case !g.Healthy:
			case rng.Intn(3) == 0:
				takenIDs = append(takenIDs, id)
				taken[g.UUID]++
			default:
				free = append(free, id)
			}
		}
	}
	if err := s.Apply([]ResourceDevices{{Resource: "nvidia.com/gpu", DeviceIDs: takenIDs}}); err != nil {
		t.Fatal(err)
	}
	return s, all, free, taken, healthy
}
