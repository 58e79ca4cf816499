package podrequest

import (
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// The table of pods TestParse and TestEffectiveMatchesKubernetes read.

// res is a resource list written as strings: {"nvidia.com/gpu": "1"}.
type res map[string]string

func (r res) list() v1.ResourceList {
	if r == nil {
		return nil
	}
	out := v1.ResourceList{}
	for name, q := range r {
		out[v1.ResourceName(name)] = resource.MustParse(q)
	}
	return out
}

// ctr builds a container with requests and limits.
func ctr(name string, req, lim res) v1.Container {
	return v1.Container{Name: name, Resources: v1.ResourceRequirements{Requests: req.list(), Limits: lim.list()}}
}

// both sets the same quantities as request and limit.
func both(name string, r res) v1.Container { return ctr(name, r, r) }

func sidecar(c v1.Container) v1.Container {
	always := v1.ContainerRestartPolicyAlways
	c.RestartPolicy = &always
	return c
}

func mkPod(init []v1.Container, app ...v1.Container) *v1.Pod {
	p := &v1.Pod{}
	p.Name = "p"
	p.Spec.InitContainers = init
	p.Spec.Containers = app
	return p
}

const (
	gpu    = "nvidia.com/gpu"
	shared = "nvidia.com/gpu.shared"
	mig1g5 = "nvidia.com/mig-1g.5gb"
)

const fractionalMsg = `container "main": nvidia.com/gpu: 500m is not a whole number; the API server rejects fractional extended resources. Ask for part of a GPU with a MIG slice (nvidia.com/mig-<profile>) or a time-sliced replica (nvidia.com/gpu.shared)`

type parseCase struct {
	name string
	pod  *v1.Pod
	opts Options
	// want is Effective; wantContainers, when set, is Containers.
	want           []ResourceCount
	wantContainers []Container
	wantString     string
	// wantErr lists substrings the error must hold; wantExact its whole text.
	wantErr   []string
	wantExact string
}

func rc(name string, n int) ResourceCount { return ResourceCount{Name: name, Count: n} }

var parseCases = []parseCase{
	{
		name:           "whole GPU",
		pod:            mkPod(nil, both("main", res{gpu: "1", "cpu": "2", "memory": "1Gi"})),
		want:           []ResourceCount{rc(gpu, 1)},
		wantContainers: []Container{{Name: "main", Resources: []ResourceCount{rc(gpu, 1)}}},
		wantString:     "nvidia.com/gpu=1",
	},
	{
		name: "several MIG profiles across containers",
		pod: mkPod(nil,
			both("a", res{"nvidia.com/mig-3g.20gb": "1", mig1g5: "2"}),
			ctr("b", res{"cpu": "500m"}, res{mig1g5: "1", "nvidia.com/mig-2g.10gb": "1"}),
			both("c", res{"cpu": "1"}),
		),
		want: []ResourceCount{rc("nvidia.com/mig-1g.5gb", 3), rc("nvidia.com/mig-2g.10gb", 1), rc("nvidia.com/mig-3g.20gb", 1)},
		wantContainers: []Container{
			{Name: "a", Resources: []ResourceCount{rc(mig1g5, 2), rc("nvidia.com/mig-3g.20gb", 1)}},
			{Name: "b", Resources: []ResourceCount{rc(mig1g5, 1), rc("nvidia.com/mig-2g.10gb", 1)}},
		},
		wantString: "nvidia.com/mig-1g.5gb=3,nvidia.com/mig-2g.10gb=1,nvidia.com/mig-3g.20gb=1",
	},
	{
		name:       "MIG profile of another model (A30)",
		pod:        mkPod(nil, both("main", res{"nvidia.com/mig-2g.12gb+me": "1"})),
		want:       []ResourceCount{rc("nvidia.com/mig-2g.12gb+me", 1)},
		wantString: "nvidia.com/mig-2g.12gb+me=1",
	},
	{
		name:       "time-sliced GPU and MIG replicas",
		pod:        mkPod(nil, both("main", res{shared: "2"}), both("side", res{"nvidia.com/mig-1g.10gb.shared": "1"})),
		want:       []ResourceCount{rc("nvidia.com/gpu.shared", 2), rc("nvidia.com/mig-1g.10gb.shared", 1)},
		wantString: "nvidia.com/gpu.shared=2,nvidia.com/mig-1g.10gb.shared=1",
	},
	{
		name:       "renamed time-sliced resource in ExtraResources",
		pod:        mkPod(nil, both("main", res{"example.com/gpu-shared": "3"})),
		opts:       Options{ExtraResources: []string{"example.com/gpu-shared"}},
		want:       []ResourceCount{rc("example.com/gpu-shared", 3)},
		wantString: "example.com/gpu-shared=3",
	},
	{
		name: "renamed resource without ExtraResources is ignored",
		pod:  mkPod(nil, both("main", res{"example.com/gpu-shared": "3"})),
		want: nil,
	},
	{
		name:           "limits only",
		pod:            mkPod(nil, ctr("main", nil, res{gpu: "2"})),
		want:           []ResourceCount{rc(gpu, 2)},
		wantContainers: []Container{{Name: "main", Resources: []ResourceCount{rc(gpu, 2)}}},
	},
	{
		name: "request equal to limit in another notation",
		pod:  mkPod(nil, ctr("main", res{gpu: "1"}, res{gpu: "1000m"})),
		want: []ResourceCount{rc(gpu, 1)},
	},
	{
		name:    "request differs from limit",
		pod:     mkPod(nil, ctr("main", res{gpu: "1"}, res{gpu: "2"})),
		wantErr: []string{`container "main"`, "nvidia.com/gpu", "request 1 differs from limit 2", "cannot be overcommitted"},
	},
	{
		name:      "fractional 0.5",
		pod:       mkPod(nil, both("main", res{gpu: "0.5"})),
		wantExact: fractionalMsg,
	},
	{
		name:      "fractional 500m, limit only",
		pod:       mkPod(nil, ctr("main", nil, res{gpu: "500m"})),
		wantExact: fractionalMsg,
	},
	{
		name:    "fractional above one",
		pod:     mkPod(nil, both("main", res{mig1g5: "1.5"})),
		wantErr: []string{`container "main"`, "nvidia.com/mig-1g.5gb: 1500m is not a whole number"},
	},
	{
		name:    "negative",
		pod:     mkPod(nil, both("main", res{gpu: "-1"})),
		wantErr: []string{`container "main": nvidia.com/gpu: -1 is negative`},
	},
	{
		name:    "absurdly large",
		pod:     mkPod(nil, both("main", res{gpu: "65537"})),
		wantErr: []string{`container "main": nvidia.com/gpu: 65537 is more than 65536 devices per container`},
	},
	{
		name:    "astronomically large",
		pod:     mkPod(nil, both("main", res{shared: "1e30"})),
		wantErr: []string{`container "main": nvidia.com/gpu.shared: 1e30 is more than 65536`},
	},
	{
		name: "largest allowed",
		pod:  mkPod(nil, both("main", res{gpu: "65536"})),
		want: []ResourceCount{rc(gpu, 65536)},
	},
	{
		name: "unknown MIG profile",
		pod:  mkPod(nil, both("main", res{"nvidia.com/mig-3g.41gb": "1"})),
		wantErr: []string{`container "main"`, `unknown MIG profile "3g.41gb" in nvidia.com/mig-3g.41gb`,
			"3g.40gb", "nvidia-smi mig -lgip"},
	},
	{
		name:    "empty MIG profile",
		pod:     mkPod(nil, both("main", res{"nvidia.com/mig-": "1"})),
		wantErr: []string{`container "main"`, "nvidia.com/mig- names no MIG profile"},
	},
	{
		name:    "empty shared MIG profile",
		pod:     mkPod(nil, both("main", res{"nvidia.com/mig-.shared": "1"})),
		wantErr: []string{"nvidia.com/mig-.shared names no MIG profile"},
	},
	{
		name: "zero is ignored",
		pod:  mkPod(nil, both("main", res{gpu: "0"}), both("other", res{mig1g5: "1"})),
		want: []ResourceCount{rc(mig1g5, 1)},
		wantContainers: []Container{
			{Name: "other", Resources: []ResourceCount{rc(mig1g5, 1)}},
		},
	},
	{
		name: "fractional non-GPU extended resource is ignored",
		pod:  mkPod(nil, both("main", res{"example.com/fpga": "0.5", gpu: "1"})),
		want: []ResourceCount{rc(gpu, 1)},
	},
	{
		name: "init container bigger than app sum",
		pod: mkPod([]v1.Container{both("setup", res{gpu: "4"})},
			both("a", res{gpu: "1"}), both("b", res{gpu: "2"})),
		want: []ResourceCount{rc(gpu, 4)},
		wantContainers: []Container{
			{Name: "setup", Init: true, Resources: []ResourceCount{rc(gpu, 4)}},
			{Name: "a", Resources: []ResourceCount{rc(gpu, 1)}},
			{Name: "b", Resources: []ResourceCount{rc(gpu, 2)}},
		},
	},
	{
		name: "init container smaller than app sum",
		pod: mkPod([]v1.Container{both("setup", res{gpu: "2"})},
			both("a", res{gpu: "1"}), both("b", res{gpu: "2"})),
		want: []ResourceCount{rc(gpu, 3)},
	},
	{
		name: "sidecar then init then app",
		pod: mkPod([]v1.Container{sidecar(both("proxy", res{gpu: "1"})), both("setup", res{gpu: "2"})},
			both("main", res{gpu: "1"})),
		want: []ResourceCount{rc(gpu, 3)}, // setup runs beside proxy: 2+1
		wantContainers: []Container{
			{Name: "proxy", Init: true, Restartable: true, Resources: []ResourceCount{rc(gpu, 1)}},
			{Name: "setup", Init: true, Resources: []ResourceCount{rc(gpu, 2)}},
			{Name: "main", Resources: []ResourceCount{rc(gpu, 1)}},
		},
		wantString: "nvidia.com/gpu=3",
	},
	{
		name: "init then sidecar then app",
		pod: mkPod([]v1.Container{both("setup", res{gpu: "2"}), sidecar(both("proxy", res{gpu: "1"}))},
			both("main", res{gpu: "1"})),
		want: []ResourceCount{rc(gpu, 2)}, // setup runs alone: 2; then proxy+main: 2
	},
	{
		name: "sidecars add to the app sum",
		pod: mkPod([]v1.Container{sidecar(both("s1", res{shared: "2"})), both("setup", res{mig1g5: "1"}), sidecar(both("s2", res{shared: "1"}))},
			both("main", res{shared: "1", mig1g5: "1"})),
		want: []ResourceCount{rc(shared, 4), rc(mig1g5, 1)},
	},
	{
		name: "init container needs a resource no app container has",
		pod: mkPod([]v1.Container{both("convert", res{"nvidia.com/mig-7g.40gb": "1"})},
			both("main", res{mig1g5: "1"})),
		want: []ResourceCount{rc(mig1g5, 1), rc("nvidia.com/mig-7g.40gb", 1)},
	},
	{
		name: "restartPolicy Always on an app container is not a sidecar",
		pod:  mkPod(nil, sidecar(both("main", res{gpu: "1"}))),
		want: []ResourceCount{rc(gpu, 1)},
		wantContainers: []Container{
			{Name: "main", Resources: []ResourceCount{rc(gpu, 1)}},
		},
	},
	{
		name:       "pod without GPU",
		pod:        mkPod([]v1.Container{both("init", res{"cpu": "1"})}, both("main", res{"cpu": "1", "memory": "64Mi"})),
		want:       nil,
		wantString: "",
	},
	{
		name: "empty pod",
		pod:  &v1.Pod{},
		want: nil,
	},
	{
		name:    "nil pod",
		pod:     nil,
		wantErr: []string{"nil pod"},
	},
	{
		name: "every problem is reported with its container",
		pod: mkPod([]v1.Container{both("setup", res{gpu: "-2"}), sidecar(both("proxy", res{"nvidia.com/mig-9g.1tb": "1"}))},
			both("main", res{gpu: "0.5", shared: "1"})),
		wantErr: []string{
			`init container "setup": nvidia.com/gpu: -2 is negative`,
			`sidecar container "proxy": unknown MIG profile "9g.1tb"`,
			fractionalMsg,
		},
	},
	{
		name:    "fractional ExtraResource",
		pod:     mkPod(nil, both("main", res{"example.com/gpu-shared": "0.5"})),
		opts:    Options{ExtraResources: []string{"example.com/gpu-shared"}},
		wantErr: []string{`container "main": example.com/gpu-shared: 500m is not a whole number`},
	},
}
