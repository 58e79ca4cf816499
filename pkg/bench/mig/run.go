package mig

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"

	"github.com/gpuslice/gpuslice/pkg/allocator"
	"github.com/gpuslice/gpuslice/pkg/sim"
	"github.com/gpuslice/gpuslice/pkg/topology"
)

// Outcome is where one pod went.
type Outcome struct {
	Pod, Class string
	// Node is empty when the pod was not placed.
	Node string
	// Reason says why the pod was not placed.
	Reason string
	// Devices are the devices the device plugin gave, per resource.
	Devices []allocator.ResourceDevices
}

// Result is one policy's placement of one workload.
type Result struct {
	Policy string `json:"policy"`
	Seed   int64  `json:"seed"`
	Pods   int    `json:"pods"`
	// GPUPods are the pods asking for MIG devices.
	GPUPods  int `json:"gpu_pods"`
	Placed   int `json:"placed"`
	Unplaced int `json:"unplaced"`
	// UnplacedGPU are unplaced pods that ask for MIG devices.
	UnplacedGPU int `json:"unplaced_gpu"`
	// NonEmptyNodes are GPU nodes with at least one MIG device in use, of
	// GPUNodes; NonEmptyGPUs likewise for GPUs.
	NonEmptyNodes int `json:"non_empty_gpu_nodes"`
	GPUNodes      int `json:"gpu_nodes"`
	NonEmptyGPUs  int `json:"non_empty_gpus"`
	GPUs          int `json:"gpus"`
	// NonEmptyByProduct splits NonEmptyNodes by GPU product.
	NonEmptyByProduct map[string]int `json:"non_empty_gpu_nodes_by_product"`
	// UsedGPUEquivalents is the GPU capacity in use (a 3g slice of a 7g GPU
	// is 3/7).
	UsedGPUEquivalents float64 `json:"used_gpu_equivalents"`
	Mispredicted       int     `json:"mispredicted"`
	AdmissionRejected  int     `json:"admission_rejected"`
	// Outcomes are per pod, in arrival order (not in the JSON output).
	Outcomes []Outcome `json:"-"`
}

// Run places the pods one at a time, in order and without departures, with
// the policy on freshly built nodes of the cluster, and measures what is in
// use at the end. seed drives the scheduler's tie-breaks. It fails when a
// placed pod's devices do not match its request or are not devices of the
// resource asked for on the chosen node.
func Run(ctx context.Context, p Policy, cluster ClusterSpec, pods []Pod, seed int64) (*Result, error) {
	cat := topology.NewCatalog()
	nodes, deviceResource, err := cluster.Build(cat)
	if err != nil {
		return nil, err
	}
	s, err := sim.New(ctx, sim.Options{
		Profile: p.Profile, Nodes: nodes, DefaultPolicy: cluster.Policy,
		Rand: rand.New(rand.NewPCG(uint64(seed), 0x736368)),
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.Name, err)
	}
	deviceNode := map[string]string{}
	for _, n := range nodes {
		if n.Topology == nil {
			continue
		}
		for _, g := range n.Topology.GPUs {
			for _, in := range g.Instances {
				deviceNode[in.DeviceID] = n.Node.Name
			}
		}
	}

	r := &Result{Policy: p.Name, Seed: seed, Pods: len(pods), Outcomes: make([]Outcome, 0, len(pods))}
	for _, pod := range pods {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		o := Outcome{Pod: pod.Pod.Name, Class: pod.Class.Name}
		gpu := pod.Class.GPU()
		if gpu {
			r.GPUPods++
		}
		d, err := s.Schedule(ctx, pod.Pod)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p.Name, err)
		}
		if d.Node == "" {
			o.Reason = d.Reason
		} else {
			placement, err := s.Admit(ctx, pod.Pod, d)
			var rejected *sim.AdmissionError
			switch {
			case errors.As(err, &rejected):
				o.Reason = rejected.Error()
			case err != nil:
				return nil, fmt.Errorf("%s: %w", p.Name, err)
			default:
				o.Node = d.Node
				o.Devices = placement.Devices()
				if err := checkDevices(pod.Class, o, deviceResource, deviceNode); err != nil {
					return nil, fmt.Errorf("%s: pod %s on %s: %w", p.Name, o.Pod, o.Node, err)
				}
			}
		}
		if o.Node == "" {
			r.Unplaced++
			if gpu {
				r.UnplacedGPU++
			}
		} else {
			r.Placed++
		}
		r.Outcomes = append(r.Outcomes, o)
	}

	r.NonEmptyByProduct = map[string]int{}
	for _, n := range nodes {
		st := s.Devices(n.Node.Name)
		if st == nil {
			continue
		}
		r.GPUNodes++
		gpus := st.GPUs()
		r.GPUs += len(gpus)
		used := len(gpus) - st.EmptyGPUs()
		r.NonEmptyGPUs += used
		for _, g := range gpus {
			r.UsedGPUEquivalents += g.Used
		}
		inUse := 0
		for _, u := range st.Usage() {
			inUse += u.Used
		}
		if (used > 0) != (inUse > 0) {
			return nil, fmt.Errorf("%s: node %s: %d GPUs in use but %d devices", p.Name, n.Node.Name, used, inUse)
		}
		if inUse > 0 {
			r.NonEmptyNodes++
			r.NonEmptyByProduct[productLabel(n.Topology)]++
		}
	}
	stats := s.Stats()
	r.Mispredicted = stats.Mispredicted
	r.AdmissionRejected = stats.AdmissionRejected
	return r, nil
}

// checkDevices verifies that a placed pod got exactly the devices it asked
// for: per resource the requested count, every device a distinct MIG device
// of that resource on the chosen node.
func checkDevices(c *Class, o Outcome, deviceResource, deviceNode map[string]string) error {
	want := c.Devices()
	got := map[string]int64{}
	seen := map[string]bool{}
	for _, rd := range o.Devices {
		for _, id := range rd.DeviceIDs {
			if seen[id] {
				return fmt.Errorf("device %s given twice", id)
			}
			seen[id] = true
			if res, ok := deviceResource[id]; !ok || res != rd.Resource {
				return fmt.Errorf("device %s handed out as %s is a %q device", id, rd.Resource, res)
			}
			if deviceNode[id] != o.Node {
				return fmt.Errorf("device %s is on node %q", id, deviceNode[id])
			}
			got[rd.Resource]++
		}
	}
	if len(got) != len(want) {
		return fmt.Errorf("got devices %v, asked for %v", got, want)
	}
	for res, n := range want {
		if got[res] != n {
			return fmt.Errorf("got devices %v, asked for %v", got, want)
		}
	}
	return nil
}

// productLabel shortens a node's GPU product for reports ("A100-SXM4-40GB").
func productLabel(t *topology.Node) string {
	if t == nil || len(t.GPUs) == 0 {
		return ""
	}
	return strings.TrimPrefix(t.GPUs[0].Product, "NVIDIA ")
}
