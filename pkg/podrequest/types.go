// Package podrequest is the only code that turns a pod into a GPU request.
//
// It reads the pod's containers with Kubernetes' rules for effective
// requests and keeps, besides the effective totals, the per-container
// requests in the order the kubelet allocates devices, since the kubelet asks
// the device plugin once per container and reuses init-container devices.
package podrequest

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

// Request is a pod's GPU request.
type Request struct {
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
