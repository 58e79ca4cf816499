package gpuslice

import (
	"context"

	v1 "k8s.io/api/core/v1"
	fwk "k8s.io/kube-scheduler/framework"
)

// gpuRequestSigner names the signature fragment of a pod's GPU request.
const gpuRequestSigner = "v1.Pod.Spec.Containers.GPURequests()"

// SignPod lets the scheduler batch pods with equal GPU requests: placing one
// pod changes only the chosen node's devices, and every other node's Filter
// and Score depend only on the request and that node's cache entry. (The
// fragmentation-aware mix drifts with every placement, but slowly: a
// batched result is at most a few pods old.) Pods whose request does not
// parse are not signed. The framework only signs a pod when every plugin
// does: PodTopologySpread refuses while it has default constraints, which
// is why the shipped packing profiles set none. A batched cycle re-filters
// the previous pick with the cycle's state and rescores it with a clone
// (see nodeSlot.judgedIn).
func (p *Plugin) SignPod(_ context.Context, pod *v1.Pod) ([]fwk.SignFragment, *fwk.Status) {
	req, err := p.parseRequest(pod)
	if err != nil {
		return nil, fwk.NewStatus(fwk.Unschedulable, err.Error())
	}
	return []fwk.SignFragment{{Key: gpuRequestSigner, Value: req.Key()}}, nil
}
