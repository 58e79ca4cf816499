package mig

import (
	"fmt"
	"math/rand/v2"
	"sort"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/gpuslice/gpuslice/pkg/topology"
)

// Container is one container of a pod class.
type Container struct {
	Name      string
	CPUMilli  int64
	MemoryMiB int64
	// MIG is the MIG devices the container asks for: profile -> count.
	MIG map[string]int64
}

// Class is one kind of pod of the request mix.
type Class struct {
	Name string
	// Weight is the class's share of the pods, out of the mix's total.
	Weight int
	// What the pods stand for.
	Description string
	Containers  []Container
}

// Devices is what a pod of the class asks for: MIG resource -> devices,
// summed over its containers (the classes have no init containers).
func (c *Class) Devices() map[string]int64 {
	out := map[string]int64{}
	for _, ct := range c.Containers {
		for p, n := range ct.MIG {
			out[topology.MIGResourceName(p)] += n
		}
	}
	return out
}

// GPU reports whether the class asks for any MIG device.
func (c *Class) GPU() bool { return len(c.Devices()) > 0 }

const gib = 1024

func one(name string, cpuMilli, memGiB int64, profile string) Container {
	return Container{Name: name, CPUMilli: cpuMilli, MemoryMiB: memGiB * gib, MIG: map[string]int64{profile: 1}}
}

// DefaultMix is the benchmark's request mix, weights per 76 pods: an
// inference-serving cluster where every GPU pod asks for one MIG slice per
// container, sized to the model it serves, with CPU/memory in proportion,
// plus CPU-only services. Small slices dominate, as in serving fleets.
//
//	class          weight  containers: MIG profile, CPU, memory
//	a100-1g          16    1g.5gb,  2 CPU,  8 GiB   small-model inference (BERT, ResNet-50 on Triton)
//	a100-2g           4    2g.10gb, 4 CPU, 16 GiB   7B LLM, 4-bit quantised
//	a100-3g           5    3g.20gb, 8 CPU, 32 GiB   7B LLM fp16, or a notebook
//	a100-pipeline     2    1g.5gb, 2 CPU, 8 GiB + 2g.10gb, 4 CPU, 16 GiB   pre-processing + model
//	h100-1g          16    1g.10gb, 2 CPU, 16 GiB   embedding / reranker service
//	h100-2g           4    2g.20gb, 4 CPU, 32 GiB   8B LLM fp16
//	h100-3g           5    3g.40gb, 8 CPU, 64 GiB   13B LLM fp16, or a notebook
//	h100-pipeline     2    1g.10gb, 2 CPU, 16 GiB + 2g.20gb, 4 CPU, 32 GiB
//	cpu-web          12    1 CPU, 2 GiB             API front ends
//	cpu-batch        10    4 CPU, 16 GiB            queue workers
//
// At the default 240 pods this asks for about a third of the default
// cluster's MIG devices of each profile (see the benchmark's header line),
// so how many nodes and GPUs the pods are spread over is the scheduler's
// choice.
func DefaultMix() []Class {
	return []Class{
		{Name: "a100-1g", Weight: 16, Description: "small-model inference", Containers: []Container{one("server", 2000, 8, "1g.5gb")}},
		{Name: "a100-2g", Weight: 4, Description: "7B LLM, 4-bit", Containers: []Container{one("server", 4000, 16, "2g.10gb")}},
		{Name: "a100-3g", Weight: 5, Description: "7B LLM fp16 / notebook", Containers: []Container{one("server", 8000, 32, "3g.20gb")}},
		{Name: "a100-pipeline", Weight: 2, Description: "pre-processing + model", Containers: []Container{one("preprocess", 2000, 8, "1g.5gb"), one("model", 4000, 16, "2g.10gb")}},
		{Name: "h100-1g", Weight: 16, Description: "embedding / reranker", Containers: []Container{one("server", 2000, 16, "1g.10gb")}},
		{Name: "h100-2g", Weight: 4, Description: "8B LLM fp16", Containers: []Container{one("server", 4000, 32, "2g.20gb")}},
		{Name: "h100-3g", Weight: 5, Description: "13B LLM fp16 / notebook", Containers: []Container{one("server", 8000, 64, "3g.40gb")}},
		{Name: "h100-pipeline", Weight: 2, Description: "pre-processing + model", Containers: []Container{one("preprocess", 2000, 16, "1g.10gb"), one("model", 4000, 32, "2g.20gb")}},
		{Name: "cpu-web", Weight: 12, Description: "API front end", Containers: []Container{{Name: "web", CPUMilli: 1000, MemoryMiB: 2 * gib}}},
		{Name: "cpu-batch", Weight: 10, Description: "queue worker", Containers: []Container{{Name: "worker", CPUMilli: 4000, MemoryMiB: 16 * gib}}},
	}
}

// Pod is one pod of a workload.
type Pod struct {
	Pod   *v1.Pod
	Class *Class
}

// Counts apportions n pods to the classes by weight (largest remainder,
// ties to the earlier class), so every seed places the same multiset.
func Counts(mix []Class, n int) ([]int, error) {
	total := 0
	for _, c := range mix {
		if c.Weight < 0 {
			return nil, fmt.Errorf("class %s: negative weight", c.Name)
		}
		total += c.Weight
	}
	if total == 0 || n < 0 {
		return nil, fmt.Errorf("mix of total weight %d cannot make %d pods", total, n)
	}
	counts := make([]int, len(mix))
	rem := make([]int, len(mix))
	left := n
	for i, c := range mix {
		counts[i] = n * c.Weight / total
		rem[i] = n * c.Weight % total
		left -= counts[i]
	}
	order := make([]int, len(mix))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return rem[order[a]] > rem[order[b]] })
	for _, i := range order[:left] {
		counts[i]++
	}
	return counts, nil
}

// Workload returns n pods of the mix in an arrival order drawn from seed.
func Workload(mix []Class, n int, seed int64) ([]Pod, error) {
	counts, err := Counts(mix, n)
	if err != nil {
		return nil, err
	}
	var pods []Pod
	for ci := range mix {
		c := &mix[ci]
		for i := range counts[ci] {
			pods = append(pods, Pod{Pod: kubePod(c, fmt.Sprintf("%s-%d", c.Name, i)), Class: c})
		}
	}
	rng := rand.New(rand.NewPCG(uint64(seed), 0x6d6967))
	rng.Shuffle(len(pods), func(i, j int) { pods[i], pods[j] = pods[j], pods[i] })
	return pods, nil
}

// kubePod is the pod a user would submit, after the API server's
// defaulting: CPU and memory requests, MIG devices as equal requests and
// limits.
func kubePod(c *Class, name string) *v1.Pod {
	pod := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "mig", UID: types.UID("mig-" + name)},
	}
	for _, ct := range c.Containers {
		req := v1.ResourceList{
			v1.ResourceCPU:    *resource.NewMilliQuantity(ct.CPUMilli, resource.DecimalSI),
			v1.ResourceMemory: *resource.NewQuantity(ct.MemoryMiB<<20, resource.BinarySI),
		}
		var limits v1.ResourceList
		for p, n := range ct.MIG {
			if limits == nil {
				limits = v1.ResourceList{}
			}
			q := *resource.NewQuantity(n, resource.DecimalSI)
			req[v1.ResourceName(topology.MIGResourceName(p))] = q
			limits[v1.ResourceName(topology.MIGResourceName(p))] = q
		}
		pod.Spec.Containers = append(pod.Spec.Containers, v1.Container{
			Name: ct.Name, Image: "serve", Resources: v1.ResourceRequirements{Requests: req, Limits: limits},
		})
	}
	return pod
}
