package autoscaletrace

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"

	"github.com/gpuslice/gpuslice/pkg/bench/openb"
	"github.com/gpuslice/gpuslice/pkg/sim"
	"github.com/gpuslice/gpuslice/pkg/sim/autoscaler"
	"github.com/gpuslice/gpuslice/pkg/topology"
	schedconfig "k8s.io/kubernetes/pkg/scheduler/apis/config"
)

// NodeBuilder makes the simulated node of an instance type.
type NodeBuilder func(name string, t *autoscaler.InstanceType) (sim.Node, error)

// frameworkPlacer schedules with a kube-scheduler profile in the real
// framework (pkg/sim): gpuslice's profiles or kube-scheduler's.
type frameworkPlacer struct {
	name  string
	s     *sim.Scheduler
	build NodeBuilder
}

// NewFrameworkPlacer runs profile over a cluster that starts empty.
func NewFrameworkPlacer(ctx context.Context, name string, profile *schedconfig.KubeSchedulerProfile, build NodeBuilder, seed uint64, policy topology.AllocationPolicy) (Placer, error) {
	s, err := sim.New(ctx, sim.Options{Profile: profile, Rand: rand.New(rand.NewPCG(seed, 0x6175746f)), DefaultPolicy: policy})
	if err != nil {
		return nil, err
	}
	return &frameworkPlacer{name: name, s: s, build: build}, nil
}

func (f *frameworkPlacer) Name() string { return f.name }

func (f *frameworkPlacer) Place(ctx context.Context, p *PodSpec) (string, Outcome, error) {
	if p.Kube == nil {
		return "", 0, fmt.Errorf("pod %s has no Kubernetes pod", p.ID)
	}
	d, err := f.s.Schedule(ctx, p.Kube)
	if err != nil {
		return "", 0, err
	}
	if d.Node == "" {
		return "", Unschedulable, nil
	}
	_, err = f.s.Admit(ctx, p.Kube, d)
	var rejected *sim.AdmissionError
	switch {
	case errors.As(err, &rejected):
		return "", Rejected, nil
	case err != nil:
		return "", 0, err
	}
	return d.Node, Placed, nil
}

func (f *frameworkPlacer) Remove(p *PodSpec) error { return f.s.Remove(p.Kube.UID) }

func (f *frameworkPlacer) AddNode(name string, t *autoscaler.InstanceType) error {
	n, err := f.build(name, t)
	if err != nil {
		return err
	}
	return f.s.AddNode(n)
}

func (f *frameworkPlacer) RemoveNode(name string) error { return f.s.RemoveNode(name) }

func (f *frameworkPlacer) Fill(node string) float64 {
	st := f.s.Devices(node)
	if st == nil {
		return 0
	}
	used, capacity := 0.0, 0.0
	for _, g := range st.GPUs() {
		used += g.Used
		capacity += g.Capacity
	}
	if capacity == 0 {
		return 0
	}
	return used / capacity
}

// Check compares, on every node, what the device plugin counts as used with
// the devices the pods there hold: each device held once, and as many as
// used.
func (f *frameworkPlacer) Check() error {
	for _, node := range f.s.NodeNames() {
		st := f.s.Devices(node)
		if st == nil {
			continue
		}
		used := 0
		for _, u := range st.Usage() {
			used += u.Used
		}
		held := map[string]bool{}
		for _, rd := range f.s.Allocated(node) {
			for _, id := range rd.DeviceIDs {
				key := rd.Resource + "=" + id
				if held[key] {
					return fmt.Errorf("node %s: device %s held twice", node, key)
				}
				held[key] = true
			}
		}
		if used != len(held) {
			return fmt.Errorf("node %s: device plugin counts %d devices used, pods hold %d", node, used, len(held))
		}
	}
	return nil
}

func (f *frameworkPlacer) Mispredicted() int { return f.s.Stats().Mispredicted }

// ledgerPlacer runs one of the FGD paper's policies (pkg/bench/openb) on
// the paper's ledger of free CPU, memory and per-GPU share.
type ledgerPlacer struct {
	name   string
	policy openb.Policy
	shape  func(t *autoscaler.InstanceType) (openb.Node, error)
	live   []*openb.NodeState
	byName map[string]*openb.NodeState
	bound  map[string]ledgerBinding
}

type ledgerBinding struct {
	node *openb.NodeState
	pod  *openb.Pod
	gpus []int
}

// NewLedgerPlacer runs a baseline of pkg/bench/openb. Policies that keep
// per-node history of the pods bound (GpuClustering) are refused: they
// have no departures.
func NewLedgerPlacer(ctx context.Context, f openb.Factory, all []openb.Pod, shape func(t *autoscaler.InstanceType) (openb.Node, error), seed uint64) (Placer, error) {
	if f.Name == "GpuClustering" {
		return nil, errors.New("GpuClustering keeps the affinity tags of pods bound to each node and has no departures")
	}
	pol, err := f.New(ctx, nil, all, rand.New(rand.NewPCG(seed, 0x706f6c696379)))
	if err != nil {
		return nil, err
	}
	return &ledgerPlacer{name: f.Name, policy: pol, shape: shape, byName: map[string]*openb.NodeState{}, bound: map[string]ledgerBinding{}}, nil
}

func (l *ledgerPlacer) Name() string { return l.name }

func (l *ledgerPlacer) Place(ctx context.Context, p *PodSpec) (string, Outcome, error) {
	if p.Trace == nil {
		return "", 0, fmt.Errorf("pod %s is no trace pod", p.ID)
	}
	c := &openb.Cluster{Nodes: l.live}
	ni, gpus, ok, err := l.policy.Schedule(ctx, c, p.Trace)
	if err != nil {
		return "", 0, err
	}
	if !ok {
		return "", Unschedulable, nil
	}
	if err := c.Bind(p.Trace, ni, gpus); err != nil {
		l.policy.Rejected(p.Trace, ni, err)
		return "", 0, fmt.Errorf("placement the model refuses: %w", err)
	}
	l.policy.Bound(p.Trace, ni, gpus)
	n := l.live[ni]
	l.bound[p.ID] = ledgerBinding{node: n, pod: p.Trace, gpus: gpus}
	return n.Name, Placed, nil
}

func (l *ledgerPlacer) Remove(p *PodSpec) error {
	b, ok := l.bound[p.ID]
	if !ok {
		return fmt.Errorf("pod %s is not bound", p.ID)
	}
	delete(l.bound, p.ID)
	n := b.node
	n.CPULeft += p.Trace.CPUMilli
	n.MemLeft += p.Trace.MemMiB
	for _, g := range b.gpus {
		n.GPULeft[g] += p.Trace.GPUMilli
	}
	n.Pods--
	return nil
}

func (l *ledgerPlacer) AddNode(name string, t *autoscaler.InstanceType) error {
	if _, dup := l.byName[name]; dup {
		return fmt.Errorf("node %s added twice", name)
	}
	shape, err := l.shape(t)
	if err != nil {
		return err
	}
	shape.Name = name
	c, err := openb.NewCluster([]openb.Node{shape})
	if err != nil {
		return err
	}
	n := c.Nodes[0]
	l.live = append(l.live, n)
	l.byName[name] = n
	return nil
}

func (l *ledgerPlacer) RemoveNode(name string) error {
	n, ok := l.byName[name]
	if !ok {
		return fmt.Errorf("node %s unknown", name)
	}
	if n.Pods > 0 {
		return fmt.Errorf("node %s has %d pods", name, n.Pods)
	}
	delete(l.byName, name)
	l.live = slices.DeleteFunc(l.live, func(x *openb.NodeState) bool { return x == n })
	return nil
}

func (l *ledgerPlacer) Fill(node string) float64 {
	n, ok := l.byName[node]
	if !ok || n.GPUs == 0 {
		return 0
	}
	return 1 - float64(n.GPULeftTotal())/float64(n.GPUs*openb.MilliPerGPU)
}

// Check recomputes every node's free resources from the pods bound there:
// nothing overcommitted, nothing lost.
func (l *ledgerPlacer) Check() error {
	type sum struct {
		cpu, mem int64
		pods     int
		gpu      []int64
	}
	sums := map[*openb.NodeState]*sum{}
	for _, n := range l.live {
		sums[n] = &sum{gpu: make([]int64, len(n.GPULeft))}
	}
	for id, b := range l.bound {
		s, ok := sums[b.node]
		if !ok {
			return fmt.Errorf("pod %s bound to node %s, which is gone", id, b.node.Name)
		}
		s.cpu += b.pod.CPUMilli
		s.mem += b.pod.MemMiB
		s.pods++
		for _, g := range b.gpus {
			s.gpu[g] += b.pod.GPUMilli
		}
	}
	for n, s := range sums {
		if n.CPULeft != n.CPUMilli-s.cpu || n.MemLeft != n.MemMiB-s.mem || n.Pods != s.pods || n.CPULeft < 0 || n.MemLeft < 0 {
			return fmt.Errorf("node %s: cpu left %d, memory left %d, %d pods; its pods hold %d, %d, %d", n.Name, n.CPULeft, n.MemLeft, n.Pods, s.cpu, s.mem, s.pods)
		}
		for g, used := range s.gpu {
			if n.GPULeft[g] != openb.MilliPerGPU-used || n.GPULeft[g] < 0 {
				return fmt.Errorf("node %s GPU %d: %d left, its pods hold %d", n.Name, g, n.GPULeft[g], used)
			}
		}
	}
	return nil
}

func (l *ledgerPlacer) Mispredicted() int { return 0 }
