package explain

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	v1 "k8s.io/api/core/v1"

	gpusliceapi "github.com/gpuslice/gpuslice/pkg/apis/gpuslice/v1alpha1"
	"github.com/gpuslice/gpuslice/pkg/assignment"
	"github.com/gpuslice/gpuslice/pkg/topology"
)

func explainBound(in Input, pod *v1.Pod) *Bound {
	b := &Bound{Node: pod.Spec.NodeName, Match: MatchUnknown}
	var gn *gpusliceapi.GPUNode
	for _, g := range in.GPUNodes {
		if g.Name == b.Node {
			gn = g
		}
	}
	reported := false
	if gn != nil {
		for _, pa := range gn.Spec.Allocations {
			if pa.PodUID != string(pod.UID) {
				continue
			}
			reported = true
			for _, c := range pa.Containers {
				for _, d := range c.Devices {
					b.Kubelet = append(b.Kubelet, Devices{Container: c.Name, Resource: d.Resource, DeviceIDs: slices.Clone(d.DeviceIDs)})
				}
			}
		}
	}
	a, err := assignment.FromPod(pod)
	switch {
	case err != nil:
		b.Note = fmt.Sprintf("the %s annotation is malformed and ignored: %v", assignment.Annotation, err)
	case a == nil:
		b.Note = fmt.Sprintf("no %s annotation: gpuslice did not place this pod (another scheduler bound it); gpuslice predicts its devices from its request", assignment.Annotation)
	default:
		b.AssignmentSource = string(a.Source)
		for _, c := range a.Containers {
			for _, d := range c.Devices {
				b.Assignment = append(b.Assignment, Devices{Container: c.Name, Resource: d.Resource, DeviceIDs: slices.Clone(d.DeviceIDs)})
			}
		}
	}
	switch {
	case gn == nil:
		b.Note = join(b.Note, fmt.Sprintf("node %s has no GPUNode: its exporter does not report what the kubelet gave", b.Node))
	case !reported:
		b.Note = join(b.Note, "the kubelet's devices are not reported yet (the pod is not running, or the exporter has not read them back)")
	case a != nil && a.Node != b.Node:
		b.Match = MatchDifferent
		b.Note = join(b.Note, fmt.Sprintf("the assignment names node %s", a.Node))
	case a != nil && a.Held():
		b.Note = join(b.Note, "the scheduler has already rewritten its prediction with the kubelet's devices (source kubelet): the prediction itself is not kept")
		if sameDevices(b.Assignment, b.Kubelet) {
			b.Match = MatchUnknown
		} else {
			b.Match = MatchDifferent
			b.Note = join(b.Note, "and the annotation no longer matches the read-back")
		}
	case a != nil:
		b.Match = compare(gn, b.Assignment, b.Kubelet)
	}
	return b
}

func join(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// key groups devices by container and resource.
func byKey(ds []Devices) map[string][]string {
	m := map[string][]string{}
	for _, d := range ds {
		k := d.Container + "\x00" + d.Resource
		m[k] = append(m[k], d.DeviceIDs...)
	}
	for k := range m {
		sort.Strings(m[k])
	}
	return m
}

func sameDevices(a, b []Devices) bool {
	ma, mb := byKey(a), byKey(b)
	if len(ma) != len(mb) {
		return false
	}
	for k, v := range ma {
		if !slices.Equal(v, mb[k]) {
			return false
		}
	}
	return true
}

// compare judges a prediction against the kubelet's pick: equal, an equal
// twin (per container and resource, devices of the same shape: the same
// unit on GPUs of the same product and MIG layout), or different.
func compare(gn *gpusliceapi.GPUNode, predicted, kubelet []Devices) string {
	if sameDevices(predicted, kubelet) {
		return MatchEqual
	}
	shapes := shapesOf(gn.Spec.Topology())
	shape := func(ds []Devices) map[string][]string {
		m := map[string][]string{}
		for k, ids := range byKey(ds) {
			for _, id := range ids {
				base, _, _ := topology.SplitReplicaID(id)
				s, ok := shapes[base]
				if !ok {
					s = "unknown device " + id
				}
				m[k] = append(m[k], s)
			}
			sort.Strings(m[k])
		}
		return m
	}
	sp, sk := shape(predicted), shape(kubelet)
	if len(sp) != len(sk) {
		return MatchDifferent
	}
	for k, v := range sp {
		if !slices.Equal(v, sk[k]) || slices.ContainsFunc(v, func(s string) bool { return strings.HasPrefix(s, "unknown device ") }) {
			return MatchDifferent
		}
	}
	return MatchTwin
}

// shapesOf maps each device ID of a node to its shape: the unit (MIG
// profile or whole GPU) and its GPU's product and MIG layout.
func shapesOf(n *topology.Node) map[string]string {
	units, err := n.Units()
	if err != nil {
		return nil
	}
	out := map[string]string{}
	for _, u := range units {
		if u.GPU < 0 || u.GPU >= len(n.GPUs) {
			continue
		}
		g := n.GPUs[u.GPU]
		var layout []string
		for _, inst := range g.Instances {
			layout = append(layout, inst.Profile)
		}
		sort.Strings(layout)
		unit := "GPU"
		if u.Instance >= 0 && u.Instance < len(g.Instances) {
			unit = g.Instances[u.Instance].Profile
		}
		out[u.DeviceID] = fmt.Sprintf("%s on %s [%s]", unit, g.Product, strings.Join(layout, ","))
	}
	return out
}
