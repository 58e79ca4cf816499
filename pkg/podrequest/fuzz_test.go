package podrequest

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// FuzzParse builds a three-container pod from fuzzed resource names and
// quantities and checks Parse's invariants. Layout bits: bit 0 and bit 1
// make containers "a" and "b" init containers (else app containers), bit 2
// sets a's quantity as a limit only, bit 3 gives "b" a limit that differs.
// Container "c" is always an app container asking for name1.
func FuzzParse(f *testing.F) {
	f.Add("nvidia.com/gpu", "1", "nvidia.com/gpu", "2", false, uint8(0))
	f.Add("nvidia.com/gpu", "2", "nvidia.com/gpu", "1", true, uint8(1))
	f.Add("nvidia.com/gpu", "1", "nvidia.com/gpu", "2", true, uint8(3))
	f.Add("nvidia.com/mig-1g.5gb", "2", "nvidia.com/mig-3g.20gb", "1", false, uint8(2))
	f.Add("nvidia.com/mig-3g.41gb", "1", "nvidia.com/gpu", "1", false, uint8(0))
	f.Add("nvidia.com/mig-", "1", "nvidia.com/gpu.shared", "4", true, uint8(1))
	f.Add("nvidia.com/gpu", "0.5", "nvidia.com/gpu", "500m", false, uint8(4))
	f.Add("nvidia.com/gpu", "-1", "example.com/gpu-shared", "3", false, uint8(0))
	f.Add("nvidia.com/gpu.shared", "1025", "cpu", "250m", true, uint8(2))
	f.Add("example.com/gpu-shared", "1e3", "nvidia.com/gpu", "0", true, uint8(8))
	f.Add("nvidia.com/gpu", "1", "nvidia.com/gpu", "1", true, uint8(11))
	f.Add("nvidia.com/mig-1g.10gb.shared", "3", "nvidia.com/mig-1g.10gb.shared", "1Ki", true, uint8(7))

	opts := Options{ExtraResources: []string{"example.com/gpu-shared"}}
	f.Fuzz(func(t *testing.T, name1, qty1, name2, qty2 string, restartable bool, layout uint8) {
		q1, err := resource.ParseQuantity(qty1)
		if err != nil {
			t.Skip()
		}
		q2, err := resource.ParseQuantity(qty2)
		if err != nil {
			t.Skip()
		}
		a := v1.Container{Name: "a"}
		if layout&4 != 0 {
			a.Resources.Limits = v1.ResourceList{v1.ResourceName(name1): q1}
		} else {
			a.Resources.Requests = v1.ResourceList{v1.ResourceName(name1): q1}
		}
		b := v1.Container{Name: "b", Resources: v1.ResourceRequirements{Requests: v1.ResourceList{v1.ResourceName(name2): q2}}}
		if layout&8 != 0 {
			lim := q2.DeepCopy()
			lim.Add(resource.MustParse("1"))
			b.Resources.Limits = v1.ResourceList{v1.ResourceName(name2): lim}
		}
		c := v1.Container{Name: "c", Resources: v1.ResourceRequirements{Limits: v1.ResourceList{v1.ResourceName(name1): q1}}}
		pod := &v1.Pod{}
		for i, ct := range []v1.Container{a, b} {
			if layout&(1<<i) != 0 {
				if restartable {
					always := v1.ContainerRestartPolicyAlways
					ct.RestartPolicy = &always
				}
				pod.Spec.InitContainers = append(pod.Spec.InitContainers, ct)
			} else {
				pod.Spec.Containers = append(pod.Spec.Containers, ct)
			}
		}
		pod.Spec.Containers = append(pod.Spec.Containers, c)

		req, err := Parse(pod, opts)
		if err != nil {
			if req != nil {
				t.Fatalf("Parse returned a request with error %v", err)
			}
			if msg := err.Error(); !strings.Contains(msg, `container "`) && !strings.Contains(msg, "nil pod") {
				t.Fatalf("error does not name a container: %v", err)
			}
			return
		}
		checkInvariants(t, pod, opts, req)
	})
}

// checkInvariants holds for every request Parse returns.
func checkInvariants(t *testing.T, pod *v1.Pod, opts Options, req *Request) {
	t.Helper()
	if !slices.IsSortedFunc(req.Effective, func(x, y ResourceCount) int { return strings.Compare(x.Name, y.Name) }) {
		t.Fatalf("Effective not sorted: %+v", req.Effective)
	}
	for i, e := range req.Effective {
		if e.Count < 1 {
			t.Fatalf("Effective[%d] = %+v, want a positive count", i, e)
		}
		if i > 0 && req.Effective[i-1].Name == e.Name {
			t.Fatalf("Effective lists %s twice", e.Name)
		}
		if !IsGPUResource(e.Name, opts) {
			t.Fatalf("Effective lists non-GPU resource %s", e.Name)
		}
	}
	appSum := map[string]int{}
	for _, c := range req.Containers {
		if len(c.Resources) == 0 {
			t.Fatalf("container %s listed without resources", c.Name)
		}
		if c.Restartable && !c.Init {
			t.Fatalf("container %s restartable but not init", c.Name)
		}
		if !slices.IsSortedFunc(c.Resources, func(x, y ResourceCount) int { return strings.Compare(x.Name, y.Name) }) {
			t.Fatalf("container %s resources not sorted: %+v", c.Name, c.Resources)
		}
		for _, r := range c.Resources {
			if r.Count < 1 {
				t.Fatalf("container %s: %+v, want a positive count", c.Name, r)
			}
			if n := req.Count(r.Name); n < r.Count {
				t.Fatalf("Effective %s = %d below container %s's %d", r.Name, n, c.Name, r.Count)
			}
			if !c.Init || c.Restartable {
				appSum[r.Name] += r.Count
			}
		}
	}
	for name, n := range appSum {
		if got := req.Count(name); got < n {
			t.Fatalf("Effective %s = %d below the app and sidecar sum %d", name, got, n)
		}
	}
	// Init containers come before app containers.
	for i := 1; i < len(req.Containers); i++ {
		if req.Containers[i].Init && !req.Containers[i-1].Init {
			t.Fatalf("init container %s after app container %s", req.Containers[i].Name, req.Containers[i-1].Name)
		}
	}
	if want := referenceEffective(pod, opts); !(len(want) == 0 && len(req.Effective) == 0) && !reflect.DeepEqual(req.Effective, want) {
		t.Fatalf("Effective = %+v, PodRequests gives %+v", req.Effective, want)
	}
	if req.Empty() != (req.String() == "") {
		t.Fatalf("Empty() = %v but String() = %q", req.Empty(), req.String())
	}
}
