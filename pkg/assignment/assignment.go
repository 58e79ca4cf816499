// Package assignment owns gpuslice's pod annotations. gpuslice writes two:
// gpuslice.io/assignment, the devices the scheduler reserved for a pod on
// its node, per container, as the kubelet is predicted to hand them out;
// and gpuslice.io/mig-demand on a pending pod that waits for want of a MIG
// profile (demand.go), which gpuslice-repartitioner reads. A user may set
// one, gpuslice.io/sharing: how the pod's GPU devices may be shared. No
// other package reads or writes them.
package assignment

import (
	"encoding/json"
	"fmt"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/gpuslice/gpuslice/pkg/allocator"
	"github.com/gpuslice/gpuslice/pkg/podrequest"
)

// Annotation is the key of the assignment annotation.
const Annotation = "gpuslice.io/assignment"

// SharingAnnotation is the key of the annotation with which a pod chooses
// how its GPU devices may be shared, overriding the profile's
// defaultSharing: DistinctGPUs (a container asking for N > 1 time-sliced
// replicas gets them on N different GPUs), Exclusive (only devices that are
// not time-sliced) or Any (whatever the device plugin picks, several
// replicas of one GPU included).
const SharingAnnotation = "gpuslice.io/sharing"

// Sharing returns the pod's sharing: the annotation's when it has one,
// otherwise def. An unknown value is an error naming the valid ones.
func Sharing(pod *v1.Pod, def podrequest.Sharing) (podrequest.Sharing, error) {
	v, ok := pod.Annotations[SharingAnnotation]
	if !ok {
		return def, nil
	}
	s, err := podrequest.ParseSharing(v)
	if err != nil {
		return "", fmt.Errorf("annotation %s: %w", SharingAnnotation, err)
	}
	return s, nil
}

// Source says what an assignment's device IDs are.
type Source string

const (
	// Predicted: the scheduler's prediction of the device plugin's pick,
	// written when the pod is bound, before the kubelet allocates. Among
	// equal devices (two idle MIG instances of a profile, two equally busy
	// GPUs) the kubelet may pick another one, an equal twin: a prediction
	// tells which resources and how many, not which devices the pod holds,
	// and two pods' predictions may name one device.
	Predicted Source = "predicted"
	// Kubelet: the devices the kubelet gave the pod, as its node's exporter
	// read them back (PodResources API). The scheduler rewrites a predicted
	// assignment with them once the exporter reports the pod; no device is
	// in two live pods' kubelet assignments.
	Kubelet Source = "kubelet"
)

// Assignment is the annotation's content.
type Assignment struct {
	// Source is predicted or kubelet; an annotation without it (written by
	// an older gpuslice) is a prediction.
	Source     Source      `json:"source"`
	Node       string      `json:"node"`
	Containers []Container `json:"containers"`
}

// Held reports whether the assignment names the devices the pod holds
// (read back from the kubelet) rather than a prediction.
func (a *Assignment) Held() bool { return a != nil && a.Source == Kubelet }

// Container is one container's devices.
type Container struct {
	Name    string    `json:"name"`
	Devices []Devices `json:"devices"`
}

// Devices are the device IDs of one resource.
type Devices struct {
	Resource  string   `json:"resource"`
	DeviceIDs []string `json:"deviceIDs"`
}

// FromPlacement converts an allocator placement: a prediction.
func FromPlacement(p *allocator.Placement) *Assignment {
	return fromPlacement(p, Predicted)
}

// Observed converts the devices the kubelet gave a pod on a node, per
// container in allocation order, as the exporter reports them.
func Observed(p *allocator.Placement) *Assignment {
	return fromPlacement(p, Kubelet)
}

func fromPlacement(p *allocator.Placement, src Source) *Assignment {
	a := &Assignment{Source: src, Node: p.Node, Containers: make([]Container, 0, len(p.Containers))}
	for _, c := range p.Containers {
		ac := Container{Name: c.Name}
		for _, rd := range c.Devices {
			ac.Devices = append(ac.Devices, Devices{Resource: rd.Resource, DeviceIDs: append([]string(nil), rd.DeviceIDs...)})
		}
		a.Containers = append(a.Containers, ac)
	}
	return a
}

// Placement converts back to an allocator placement.
func (a *Assignment) Placement() *allocator.Placement {
	p := &allocator.Placement{Node: a.Node}
	for _, c := range a.Containers {
		pc := allocator.ContainerDevices{Name: c.Name}
		for _, d := range c.Devices {
			pc.Devices = append(pc.Devices, allocator.ResourceDevices{Resource: d.Resource, DeviceIDs: append([]string(nil), d.DeviceIDs...)})
		}
		p.Containers = append(p.Containers, pc)
	}
	return p
}

// Encode returns the annotation value.
func (a *Assignment) Encode() (string, error) {
	b, err := json.Marshal(a)
	return string(b), err
}

// Decode parses an annotation value, rejecting empty or malformed content.
func Decode(value string) (*Assignment, error) {
	var a Assignment
	if err := json.Unmarshal([]byte(value), &a); err != nil {
		return nil, fmt.Errorf("annotation %s: %w", Annotation, err)
	}
	if a.Node == "" {
		return nil, fmt.Errorf("annotation %s: no node", Annotation)
	}
	switch a.Source {
	case "":
		a.Source = Predicted
	case Predicted, Kubelet:
	default:
		return nil, fmt.Errorf("annotation %s: unknown source %q (want %s or %s)", Annotation, a.Source, Predicted, Kubelet)
	}
	for _, c := range a.Containers {
		for _, d := range c.Devices {
			if d.Resource == "" || len(d.DeviceIDs) == 0 {
				return nil, fmt.Errorf("annotation %s: container %q has an empty device entry", Annotation, c.Name)
			}
		}
	}
	return &a, nil
}

// FromPod returns the pod's assignment: nil without error when the pod has
// none, an error when the annotation is malformed.
func FromPod(pod *v1.Pod) (*Assignment, error) {
	v, ok := pod.Annotations[Annotation]
	if !ok {
		return nil, nil
	}
	return Decode(v)
}

// Patch is the merge patch that sets the annotation; applying it twice is
// harmless.
func (a *Assignment) Patch() ([]byte, error) {
	v, err := a.Encode()
	if err != nil {
		return nil, err
	}
	return json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{Annotation: v}}})
}

// PatchFor is Patch with a precondition: the API server refuses it (a
// conflict) unless the pod's UID is uid, so that it never lands on a
// namesake created since.
func (a *Assignment) PatchFor(uid types.UID) ([]byte, error) {
	v, err := a.Encode()
	if err != nil {
		return nil, err
	}
	return json.Marshal(map[string]any{"metadata": map[string]any{"uid": uid, "annotations": map[string]string{Annotation: v}}})
}
