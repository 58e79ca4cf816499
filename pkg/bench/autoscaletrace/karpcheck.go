package autoscaletrace

import (
	"fmt"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/gpuslice/gpuslice/pkg/autoscale/instancetypes"
	"github.com/gpuslice/gpuslice/pkg/autoscale/workload"
	"github.com/gpuslice/gpuslice/pkg/sim"
	"github.com/gpuslice/gpuslice/pkg/sim/autoscaler"
)

// KarpenterFigure is a figure of the real Karpenter run.
type KarpenterFigure struct {
	Policy string
	// NodeHours are the GPU node-hours of each run made (the day scaled to
	// 24 h plus the 7.5 h tail).
	NodeHours []float64
}

// KarpenterFigures are the real Karpenter runs of docs/benchmarks.md
// section 4 (`gpuslice-bench autoscale --seed 42 --day 4m --tail 75s`,
// 2026-12-07: the two runs of that section, then one of this check's
// session).
func KarpenterFigures() []KarpenterFigure {
	return []KarpenterFigure{
		{"default+WhenEmpty", []float64{180.2, 181.6, 181.5}},
		{"gpuslice+WhenEmpty", []float64{154.6, 155.2}},
		{"gpuslice+WhenEmpty, no deletion cost", []float64{181.5, 178.5, 186.3}},
	}
}

// NodePools is what gpuslice-bench autoscale gives Karpenter: one NodePool
// per instance type, labelled with the type's setup, the type's
// allocatable as the device plugin advertises it.
func NodePools(set *instancetypes.Set) []autoscaler.NodePool {
	var out []autoscaler.NodePool
	for _, r := range set.Types() {
		alloc := autoscaler.Resources{}
		for name, q := range r.NodeResources() {
			switch name {
			case v1.ResourceCPU:
				alloc["cpu"] = q.MilliValue()
			default:
				alloc[string(name)] = q.Value()
			}
		}
		labels := map[string]string{instancetypes.LabelInstanceShape: r.Name}
		for k, v := range r.Labels() {
			labels[k] = v
		}
		out = append(out, autoscaler.NodePool{
			Name: instancetypes.NodePoolName(r.Name), Labels: labels,
			Types: []autoscaler.InstanceType{{
				Name: r.Name, Price: r.Price.USDPerHour, Allocatable: alloc,
				Labels: map[string]string{v1.LabelInstanceTypeStable: r.Name, LabelGPUs: fmt.Sprint(r.GPUs)},
			}},
		})
	}
	return out
}

// InstanceNodeBuilder builds the simulated node of an instance type as the
// local cluster's node agent does: the type's topology and resources.
func InstanceNodeBuilder(set *instancetypes.Set) NodeBuilder {
	return func(name string, t *autoscaler.InstanceType) (sim.Node, error) {
		r, ok := set.Get(t.Name)
		if !ok {
			return sim.Node{}, fmt.Errorf("unknown instance type %s", t.Name)
		}
		topo, err := r.Topology(name)
		if err != nil {
			return sim.Node{}, err
		}
		labels := map[string]string{v1.LabelHostname: name, v1.LabelInstanceTypeStable: r.Name, instancetypes.LabelInstanceShape: r.Name}
		for k, v := range r.Labels() {
			labels[k] = v
		}
		res := r.NodeResources()
		return sim.Node{Node: &v1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, UID: types.UID(name)},
			Status: v1.NodeStatus{
				Capacity: res, Allocatable: res,
				Conditions: []v1.NodeCondition{{Type: v1.NodeReady, Status: v1.ConditionTrue}},
			},
		}, Topology: topo}, nil
	}
}

// WorkloadActions turns gpuslice-bench autoscale's workload into actions:
// a Deployment's pods form a group (scale-ups create pods, scale-downs
// delete the ReplicaSet's choice), a Job's pods run for RunFor once
// started, a notebook is a one-pod group deleted at its end. Each pod asks
// for 1 CPU, 4 GiB and its GPU resource, as the bench's pod template does.
func WorkloadActions(events []workload.Event) ([]Action, error) {
	replicas := map[string]int{}
	res := map[string]workload.Event{}
	seq := 0
	var out []Action
	mk := func(ev workload.Event, group string, at time.Duration, runFor time.Duration) *PodSpec {
		seq++
		id := fmt.Sprintf("%s-%d", ev.Name, seq)
		q := v1.ResourceList{
			v1.ResourceCPU:               resource.MustParse("1"),
			v1.ResourceMemory:            resource.MustParse("4Gi"),
			v1.ResourceName(ev.Resource): *resource.NewQuantity(int64(ev.Count), resource.DecimalSI),
		}
		pod := &v1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: id, Namespace: "workload", UID: types.UID(id)},
			Spec:       v1.PodSpec{Containers: []v1.Container{{Name: "main", Resources: v1.ResourceRequirements{Requests: q, Limits: q}}}},
		}
		return &PodSpec{ID: id, Group: group, Kube: pod, Created: at, RunFor: runFor, Req: autoscaler.Resources{
			"cpu": 1000, "memory": 4 << 30, "pods": 1, ev.Resource: int64(ev.Count),
		}}
	}
	for _, ev := range events {
		switch {
		case ev.Action == workload.Create && ev.Kind == workload.Batch:
			for i := 0; i < ev.Replicas; i++ {
				out = append(out, Action{At: ev.At, Create: mk(ev, "", ev.At, ev.RunFor)})
			}
		case ev.Action == workload.Create:
			res[ev.Name] = ev
			replicas[ev.Name] = ev.Replicas
			for i := 0; i < ev.Replicas; i++ {
				out = append(out, Action{At: ev.At, Create: mk(ev, ev.Name, ev.At, 0)})
			}
		case ev.Action == workload.Scale:
			tpl, ok := res[ev.Name]
			if !ok {
				return nil, fmt.Errorf("scale of %s before its creation", ev.Name)
			}
			cur := replicas[ev.Name]
			for i := cur; i < ev.Replicas; i++ {
				out = append(out, Action{At: ev.At, Create: mk(tpl, ev.Name, ev.At, 0)})
			}
			if ev.Replicas < cur {
				out = append(out, Action{At: ev.At, ScaleDown: ev.Name, Count: cur - ev.Replicas})
			}
			replicas[ev.Name] = ev.Replicas
		case ev.Action == workload.Delete:
			out = append(out, Action{At: ev.At, DeleteGroup: ev.Name})
			delete(replicas, ev.Name)
		default:
			return nil, fmt.Errorf("unknown event %+v", ev)
		}
	}
	return out, nil
}
