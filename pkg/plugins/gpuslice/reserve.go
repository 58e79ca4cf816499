package gpuslice

import (
	"context"

	v1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"

	"github.com/gpuslice/gpuslice/pkg/allocator"
	"github.com/gpuslice/gpuslice/pkg/podrequest"
)

const placementKey fwk.StateKey = Name + "/placement"

// placementData carries the reserved placement to PreBind.
type placementData struct{ p *allocator.Placement }

func (d *placementData) Clone() fwk.StateData { return d }

// Reserve predicts the devices on the chosen node from the snapshot Filter
// judged and commits exactly them to the cache. If any of them was taken
// since (by an informer update or another cycle), it fails and the pod is
// retried: two cycles never hold the same device.
func (p *Plugin) Reserve(ctx context.Context, cs fwk.CycleState, pod *v1.Pod, node string) *fwk.Status {
	req, st, status := p.reserveInputs(cs, pod, node)
	if status != nil {
		p.shared.metrics.reservation(outcomeRejected)
		return status
	}
	if req == nil {
		return nil
	}
	placement, v := st.Place(req)
	if !v.OK() {
		p.shared.metrics.reservation(outcomeRejected)
		return fwk.NewStatus(fwk.Unschedulable, "gpuslice: "+v.Reason())
	}
	if err := p.shared.cache.Assume(pod.UID, pod.Namespace, pod.Name, req, placement); err != nil {
		p.shared.metrics.reservation(outcomeRejected)
		return fwk.NewStatus(fwk.Unschedulable, "gpuslice: "+err.Error())
	}
	p.shared.metrics.reservation(outcomeReserved)
	cs.Write(placementKey, &placementData{p: placement})
	klog.FromContext(ctx).V(4).Info("Reserved GPU devices", "pod", klog.KObj(pod), "node", node, "devices", placement.Devices())
	return nil
}

// reserveInputs returns the pod's request and the snapshot to place it on:
// the one Filter judged, or, when the cycle reused an earlier pod's result
// (batching) and Filter did not run, the node's current snapshot, checked
// afresh. A nil request means the pod asks for no GPU.
func (p *Plugin) reserveInputs(cs fwk.CycleState, pod *v1.Pod, node string) (*podrequest.Request, *allocator.State, *fwk.Status) {
	if s, err := getState(cs); err == nil {
		if j, ok := p.memo.slot(p.shared.cache, node).judgedIn(s); ok {
			return s.req, j.st, nil
		}
	}
	req, err := p.parseRequest(pod)
	if err != nil {
		return nil, nil, fwk.NewStatus(fwk.UnschedulableAndUnresolvable, "gpuslice: "+err.Error())
	}
	if req.Empty() {
		return nil, nil, nil
	}
	view := p.shared.cache.View(node)
	if !view.Freshness.Usable {
		return nil, nil, fwk.NewStatus(fwk.UnschedulableAndUnresolvable, "gpuslice: "+view.Freshness.Reason)
	}
	return req, view.State, nil
}

// Unreserve drops the reservation. It is idempotent and leaves pods that
// are already bound alone.
func (p *Plugin) Unreserve(_ context.Context, _ fwk.CycleState, pod *v1.Pod, _ string) {
	if p.shared.cache.Forget(pod.UID) {
		p.shared.metrics.reservation(outcomeReleased)
	}
}
