package autoscaletrace

import (
	"fmt"
	"sort"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"

	"github.com/gpuslice/gpuslice/pkg/bench/openb"
	"github.com/gpuslice/gpuslice/pkg/sim"
	"github.com/gpuslice/gpuslice/pkg/sim/autoscaler"
	"github.com/gpuslice/gpuslice/pkg/topology"
)

// Prices of the trace's node shapes: the trace names GPU models only, so a
// node is priced by its parts, as Google Cloud prices N1 machines with
// attached GPUs (on-demand, us-central1, USD per hour, approximate list
// prices): each GPU by model, each vCPU and each GiB of memory. G2 and G3
// are Alibaba's undisclosed models; they are priced as an A100 40GB. A10 is
// priced after AWS g5 (A10G). V100M32 is V100 x 1.275, the ratio of AWS
// p3dn.24xlarge (V100 32GB) to p3.16xlarge (16GB) per GPU.
var (
	gpuPrice = map[string]float64{
		"T4": 0.35, "P100": 1.46, "V100M16": 2.48, "V100M32": 3.16, "A10": 1.00, "G2": 2.93, "G3": 2.93,
	}
	vcpuPrice = 0.031611
	gibPrice  = 0.004237
)

// ShapePrice is a trace node shape's price in USD per hour.
func ShapePrice(n openb.Node) (float64, error) {
	g, ok := gpuPrice[n.Model]
	if !ok && n.GPUs > 0 {
		return 0, fmt.Errorf("no price for GPU model %q", n.Model)
	}
	return float64(n.GPUs)*g + float64(n.CPUMilli)/1000*vcpuPrice + float64(n.MemMiB)/1024*gibPrice, nil
}

// TraceTypes are the instance types of the trace's GPU node list: one per
// distinct shape (GPU model, GPUs, CPU, memory), sorted by name, and each
// type's shape by name.
func TraceTypes(nodes []openb.Node) ([]autoscaler.InstanceType, map[string]openb.Node, error) {
	shapes := map[string]openb.Node{}
	for _, n := range nodes {
		if n.GPUs == 0 {
			continue
		}
		name := fmt.Sprintf("%s-%dgpu-%dcpu-%dgib", strings.ToLower(n.Model), n.GPUs, n.CPUMilli/1000, n.MemMiB/1024)
		s := n
		s.Name = ""
		shapes[name] = s
	}
	if len(shapes) == 0 {
		return nil, nil, fmt.Errorf("no GPU node in the node list")
	}
	var out []autoscaler.InstanceType
	for name, s := range shapes {
		price, err := ShapePrice(s)
		if err != nil {
			return nil, nil, err
		}
		out = append(out, autoscaler.InstanceType{
			Name: name, Price: price,
			Allocatable: autoscaler.Resources{
				"cpu": s.CPUMilli, "memory": s.MemMiB << 20, "pods": 1000,
				topology.ResourceGPU: int64(s.GPUs) * openb.MilliPerGPU,
			},
			Labels: map[string]string{v1.LabelInstanceTypeStable: name, openb.ModelLabel: s.Model, LabelGPUs: fmt.Sprint(s.GPUs)},
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, shapes, nil
}

// TraceOptions choose the part of the trace to replay.
type TraceOptions struct {
	// From and To bound the replayed window in trace time (To 0: the end).
	// A pod alive at From arrives at From.
	From, To time.Duration
	// Speedup divides every trace time (1: the trace's own time).
	Speedup float64
	// Every keeps one pod in Every (1: all), by position in the list.
	Every int
}

// TraceActions turns a timed pod list into the workload: each pod arrives
// at its creation time, runs as long as it ran in production (deletion
// minus its start, or minus its creation when it never started), at least a
// second, from whenever it is placed, and is withdrawn if still pending at
// its deletion time. It returns the actions and the end of the window (0
// when open).
func TraceActions(pods []openb.TimedPod, o TraceOptions) ([]Action, time.Duration, error) {
	if o.Speedup <= 0 {
		return nil, 0, fmt.Errorf("speedup %v: want > 0", o.Speedup)
	}
	if o.Every < 1 {
		return nil, 0, fmt.Errorf("every %d: want >= 1", o.Every)
	}
	if o.To != 0 && o.To <= o.From {
		return nil, 0, fmt.Errorf("window %s..%s is empty", o.From, o.To)
	}
	scale := func(sec int64) time.Duration {
		return time.Duration(float64(sec) * float64(time.Second) / o.Speedup)
	}
	var out []Action
	for i := range pods {
		if i%o.Every != 0 {
			continue
		}
		tp := &pods[i]
		created, deleted := scale(tp.Created), scale(tp.Deleted)
		start := created
		if tp.Scheduled >= 0 {
			start = scale(tp.Scheduled)
		}
		if deleted <= o.From || (o.To != 0 && created >= o.To) {
			continue
		}
		if created < o.From {
			created, start = o.From, o.From
		}
		run := max(deleted-start, time.Second)
		p := tp.Pod
		kube := openb.KubePod(&p)
		out = append(out, Action{At: created, Create: &PodSpec{
			ID: p.Name, Kube: kube, Trace: &p, Created: created, RunFor: run, Deadline: max(deleted, created+time.Nanosecond),
			Req: autoscaler.Resources{
				"cpu": p.CPUMilli, "memory": p.MemMiB << 20, "pods": 1, topology.ResourceGPU: p.GPURequest(),
			},
		}})
	}
	if len(out) == 0 {
		return nil, 0, fmt.Errorf("no pod in the window")
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].At != out[j].At {
			return out[i].At < out[j].At
		}
		return out[i].Create.ID < out[j].Create.ID
	})
	return out, o.To, nil
}

// TraceNodeBuilder builds the simulated node of a trace shape.
func TraceNodeBuilder(shapes map[string]openb.Node) NodeBuilder {
	cat := topology.NewCatalog()
	return func(name string, t *autoscaler.InstanceType) (sim.Node, error) {
		s, ok := shapes[t.Name]
		if !ok {
			return sim.Node{}, fmt.Errorf("instance type %s is no trace shape", t.Name)
		}
		s.Name = name
		topo, err := openb.NodeTopology(cat, &s)
		if err != nil {
			return sim.Node{}, err
		}
		return sim.Node{Node: openb.KubeNode(&s), Topology: topo}, nil
	}
}

// TraceShape returns the ledger node of a trace shape.
func TraceShape(shapes map[string]openb.Node) func(t *autoscaler.InstanceType) (openb.Node, error) {
	return func(t *autoscaler.InstanceType) (openb.Node, error) {
		s, ok := shapes[t.Name]
		if !ok {
			return openb.Node{}, fmt.Errorf("instance type %s is no trace shape", t.Name)
		}
		return s, nil
	}
}
