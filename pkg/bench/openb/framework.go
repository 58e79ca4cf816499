package openb

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	schedconfig "k8s.io/kubernetes/pkg/scheduler/apis/config"

	"github.com/gpuslice/gpuslice/pkg/sim"
	"github.com/gpuslice/gpuslice/pkg/topology"
	"github.com/gpuslice/gpuslice/pkg/topology/fixtures"
)

// ModelLabel is the node label carrying the trace's GPU model; pods with a
// gpu_spec require it through node affinity.
const ModelLabel = "openb.gpuslice.io/gpu-model"

// FrameworkFactory is a policy that schedules with a kube-scheduler profile
// in the real scheduler framework (sim): gpuslice's profiles, or the stock
// scheduler's.
func FrameworkFactory(name string, profile *schedconfig.KubeSchedulerProfile) Factory {
	return Factory{Name: name, New: func(ctx context.Context, nodes []Node, _ []Pod, rng *rand.Rand) (Policy, error) {
		return newFrameworkPolicy(ctx, name, profile, nodes, rng)
	}}
}

type frameworkPolicy struct {
	name  string
	sched *sim.Scheduler
	// gpuIndex maps each node's GPU UUIDs to GPU positions.
	gpuIndex []map[string]int
	nodes    map[string]int
}

func newFrameworkPolicy(ctx context.Context, name string, profile *schedconfig.KubeSchedulerProfile, nodes []Node, rng *rand.Rand) (*frameworkPolicy, error) {
	cat := topology.NewCatalog()
	p := &frameworkPolicy{name: name, gpuIndex: make([]map[string]int, len(nodes)), nodes: make(map[string]int, len(nodes))}
	simNodes := make([]sim.Node, len(nodes))
	for i := range nodes {
		n := &nodes[i]
		p.nodes[n.Name] = i
		simNodes[i].Node = KubeNode(n)
		if n.GPUs == 0 {
			continue
		}
		topo, err := NodeTopology(cat, n)
		if err != nil {
			return nil, err
		}
		simNodes[i].Topology = topo
		p.gpuIndex[i] = map[string]int{}
		for gi, g := range topo.GPUs {
			p.gpuIndex[i][g.UUID] = gi
		}
	}
	s, err := sim.New(ctx, sim.Options{Profile: profile, Nodes: simNodes, Rand: rng, DefaultPolicy: topology.PolicyPacked})
	if err != nil {
		return nil, err
	}
	p.sched = s
	return p, nil
}

func (p *frameworkPolicy) Name() string { return p.name }

func (p *frameworkPolicy) Schedule(ctx context.Context, _ *Cluster, pod *Pod) (int, []int, bool, error) {
	kp := KubePod(pod)
	d, err := p.sched.Schedule(ctx, kp)
	if err != nil || d.Node == "" {
		return -1, nil, false, err
	}
	placement, err := p.sched.Admit(ctx, kp, d)
	var rejected *sim.AdmissionError
	if errors.As(err, &rejected) {
		return -1, nil, false, nil
	}
	if err != nil {
		return -1, nil, false, err
	}
	ni := p.nodes[d.Node]
	var gpus []int
	seen := map[int]bool{}
	for _, rd := range placement.Devices() {
		for _, id := range rd.DeviceIDs {
			base, _, ok := topology.SplitReplicaID(id)
			gi, known := p.gpuIndex[ni][base]
			if !ok || !known {
				return -1, nil, false, fmt.Errorf("pod %s: device %s is no GPU of node %s", pod.Name, id, d.Node)
			}
			if !seen[gi] {
				seen[gi] = true
				gpus = append(gpus, gi)
			}
		}
	}
	return ni, gpus, true, nil
}

func (p *frameworkPolicy) Bound(*Pod, int, []int)    {}
func (p *frameworkPolicy) Rejected(*Pod, int, error) {}

// Stats reports the simulated scheduler's counts.
func (p *frameworkPolicy) Stats() sim.Stats { return p.sched.Stats() }

// NodeTopology is the topology of a trace node with GPUs as gpuslice sees
// it: each GPU time-sliced into MilliPerGPU replicas, one GPU per request,
// device plugin policy packed.
func NodeTopology(cat *topology.Catalog, n *Node) (*topology.Node, error) {
	topo, err := fixtures.Build(cat, fixtures.Spec{
		Name: n.Name, Product: "openb " + n.Model, MemoryMiB: 1, GPUs: n.GPUs,
		Replicas: MilliPerGPU, OneGPUPerRequest: true, Policy: topology.PolicyPacked,
	})
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", n.Name, err)
	}
	return topo, nil
}

// KubeNode is the Node object of a trace node: its CPU, memory, 1000 pod
// slots, nvidia.com/gpu as share units and its GPU model as a label.
func KubeNode(n *Node) *v1.Node {
	alloc := v1.ResourceList{
		v1.ResourceCPU:    *resource.NewMilliQuantity(n.CPUMilli, resource.DecimalSI),
		v1.ResourceMemory: *resource.NewQuantity(n.MemMiB<<20, resource.BinarySI),
		v1.ResourcePods:   *resource.NewQuantity(1000, resource.DecimalSI),
	}
	labels := map[string]string{v1.LabelHostname: n.Name}
	if n.GPUs > 0 {
		alloc[topology.ResourceGPU] = *resource.NewQuantity(int64(n.GPUs)*MilliPerGPU, resource.DecimalSI)
		labels[ModelLabel] = n.Model
	}
	return &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: labels, UID: types.UID(n.Name)},
		Status: v1.NodeStatus{
			Capacity: alloc, Allocatable: alloc,
			Conditions: []v1.NodeCondition{{Type: v1.NodeReady, Status: v1.ConditionTrue}},
		},
	}
}

// KubePod is the pod a user would submit for a trace task: CPU and memory
// requests, nvidia.com/gpu as share units (1000 per GPU), and node affinity
// to the allowed GPU models.
func KubePod(p *Pod) *v1.Pod {
	req := v1.ResourceList{
		v1.ResourceCPU:    *resource.NewMilliQuantity(p.CPUMilli, resource.DecimalSI),
		v1.ResourceMemory: *resource.NewQuantity(p.MemMiB<<20, resource.BinarySI),
	}
	limits := v1.ResourceList{}
	if g := p.GPURequest(); g > 0 {
		req[topology.ResourceGPU] = *resource.NewQuantity(g, resource.DecimalSI)
		limits[topology.ResourceGPU] = *resource.NewQuantity(g, resource.DecimalSI)
	}
	pod := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: "openb", UID: types.UID(p.Name)},
		Spec: v1.PodSpec{Containers: []v1.Container{{
			Name: "main", Image: "task", Resources: v1.ResourceRequirements{Requests: req, Limits: limits},
		}}},
	}
	if len(p.Models) > 0 && p.NumGPU > 0 {
		pod.Spec.Affinity = &v1.Affinity{NodeAffinity: &v1.NodeAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: &v1.NodeSelector{NodeSelectorTerms: []v1.NodeSelectorTerm{{
				MatchExpressions: []v1.NodeSelectorRequirement{{Key: ModelLabel, Operator: v1.NodeSelectorOpIn, Values: p.Models}},
			}}},
		}}
	}
	return pod
}
