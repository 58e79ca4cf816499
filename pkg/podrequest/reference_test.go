package podrequest

import (
	"slices"
	"strings"

	v1 "k8s.io/api/core/v1"
	resourcehelper "k8s.io/component-helpers/resource"
)

// referencePodRequests is Kubernetes' own effective-request computation
// (k8s.io/component-helpers/resource.PodRequests) without pod overhead: the
// tests cross-check Parse against it.
func referencePodRequests(pod *v1.Pod) v1.ResourceList {
	return resourcehelper.PodRequests(pod, resourcehelper.PodResourcesOptions{ExcludeOverhead: true})
}

// withDefaultedRequests copies the pod and sets each missing request to its
// limit, as the API server does for extended resources.
func withDefaultedRequests(pod *v1.Pod) *v1.Pod {
	p := pod.DeepCopy()
	fix := func(cs []v1.Container) {
		for i := range cs {
			rr := &cs[i].Resources
			for name, lim := range rr.Limits {
				if _, ok := rr.Requests[name]; !ok {
					if rr.Requests == nil {
						rr.Requests = v1.ResourceList{}
					}
					rr.Requests[name] = lim.DeepCopy()
				}
			}
		}
	}
	fix(p.Spec.InitContainers)
	fix(p.Spec.Containers)
	return p
}

// referenceEffective is the reference's answer restricted to GPU resources
// with a positive count, sorted by name, in Request.Effective's shape.
func referenceEffective(pod *v1.Pod, opts Options) []ResourceCount {
	var out []ResourceCount
	for name, q := range referencePodRequests(withDefaultedRequests(pod)) {
		if !IsGPUResource(string(name), opts) || q.Sign() <= 0 {
			continue
		}
		out = append(out, ResourceCount{Name: string(name), Count: int(q.Value())})
	}
	slices.SortFunc(out, func(a, b ResourceCount) int { return strings.Compare(a.Name, b.Name) })
	return out
}
