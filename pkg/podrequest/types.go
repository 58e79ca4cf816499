// Package podrequest is the only code that turns a pod into a GPU request.
//
// It reads the pod's containers with Kubernetes' rules for effective
// requests and keeps, besides the effective totals, the per-container
// requests in the order the kubelet allocates devices, since the kubelet asks
// the device plugin once per container and reuses init-container devices.
package podrequest

import "fmt"

// ResourceCount is a number of devices of one extended resource.
type ResourceCount struct {
	Name  string
	Count int
}

// Container is one container's GPU request.
type Container struct {
	Name string
	// Init is true for init containers.
	Init bool
	// Restartable is true for sidecar init containers (restartPolicy Always):
	// they keep their devices for the pod's lifetime like app containers.
	Restartable bool
	// Resources are sorted by name and hold only positive counts.
	Resources []ResourceCount
}

// Sharing says whether the time-sliced replicas a container gets may be
// replicas of one physical device, and whether its devices may be
// time-sliced at all. The scheduler decides it (its profile's default, the
// pod's gpuslice.io/sharing annotation); Parse leaves it empty.
type Sharing string

const (
	// SharingAny (or empty) accepts whatever the device plugin hands out: a
	// container asking for N time-sliced replicas may get several replicas
	// of one GPU (kube-scheduler's behaviour).
	SharingAny Sharing = "Any"
	// SharingDistinct asks that a container asking for N > 1 time-sliced
	// replicas of a resource get them on N different devices (GPUs, or MIG
	// instances for time-sliced MIG devices). Other pods may share them.
	SharingDistinct Sharing = "DistinctGPUs"
	// SharingExclusive asks for devices no other pod can be given: whole
	// GPUs or MIG instances advertised without time-slicing.
	SharingExclusive Sharing = "Exclusive"
)

// Sharings are the valid Sharing values.
var Sharings = []Sharing{SharingDistinct, SharingExclusive, SharingAny}

// ParseSharing checks a Sharing value given as text.
func ParseSharing(v string) (Sharing, error) {
	for _, s := range Sharings {
		if string(s) == v {
			return s, nil
		}
	}
	return "", fmt.Errorf("unknown GPU sharing %q (want one of %s, %s, %s)", v, SharingDistinct, SharingExclusive, SharingAny)
}

// Request is a pod's GPU request.
type Request struct {
	// Sharing constrains which devices may serve the request; empty is
	// SharingAny (the kubelet's own rule, used to predict pods already
	// placed).
	Sharing Sharing
	// Containers hold the containers that ask for GPU resources, in kubelet
	// allocation order: init containers in spec order, then app containers.
	Containers []Container
	// Effective is the pod's effective request per resource, sorted by name:
	// max(each non-restartable init container plus the sidecars started before
	// it, the sum of app containers and sidecars).
	Effective []ResourceCount
}

// Empty reports whether the pod asks for no GPU resource.
func (r *Request) Empty() bool { return r == nil || len(r.Effective) == 0 }

// Count returns the effective request for one resource.
func (r *Request) Count(name string) int {
	if r == nil {
		return 0
	}
	for _, rc := range r.Effective {
		if rc.Name == name {
			return rc.Count
		}
	}
	return 0
}
