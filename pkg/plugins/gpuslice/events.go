package gpuslice

import (
	"context"
	"fmt"
	"slices"

	coordinationv1 "k8s.io/api/coordination/v1"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"

	gpusliceapi "github.com/gpuslice/gpuslice/pkg/apis/gpuslice/v1alpha1"
	"github.com/gpuslice/gpuslice/pkg/assignment"
	"github.com/gpuslice/gpuslice/pkg/podrequest"
)

// Event resources served through the scheduler's dynamic informers.
const (
	gpuNodeResource fwk.EventResource = "gpunodes.v1alpha1.gpuslice.io"
	leaseResource   fwk.EventResource = "leases.v1.coordination.k8s.io"
)

// EventsToRegister lists the events that can make a pod GPUSlice rejected
// schedulable, each with a hint that skips events that cannot help it.
func (p *Plugin) EventsToRegister(context.Context) ([]fwk.ClusterEventWithHint, error) {
	return []fwk.ClusterEventWithHint{
		{Event: fwk.ClusterEvent{Resource: gpuNodeResource, ActionType: fwk.Add | fwk.Update}, QueueingHintFn: p.hintGPUNode},
		{Event: fwk.ClusterEvent{Resource: leaseResource, ActionType: fwk.Add | fwk.Update}, QueueingHintFn: p.hintLease},
		{Event: fwk.ClusterEvent{Resource: fwk.AssignedPod, ActionType: fwk.Delete}, QueueingHintFn: p.hintPodDeleted},
		{Event: fwk.ClusterEvent{Resource: fwk.Node, ActionType: fwk.Add | fwk.UpdateNodeAllocatable | fwk.UpdateNodeAnnotation}, QueueingHintFn: p.hintNode},
	}, nil
}

func (p *Plugin) request(pod *v1.Pod) *podrequest.Request {
	req, err := podrequest.Parse(pod, podrequest.Options{Catalog: p.shared.catalog})
	if err != nil {
		return nil
	}
	return req
}

// hintGPUNode queues the pod when a Ready topology offers a resource it asks
// for and something that matters changed: the node became Ready, its GPUs
// or layout changed, or the kubelet's allocations changed (devices freed).
func (p *Plugin) hintGPUNode(logger klog.Logger, pod *v1.Pod, oldObj, newObj any) (fwk.QueueingHint, error) {
	newGN, err := asGPUNode(newObj)
	if err != nil || newGN == nil {
		return fwk.Queue, err
	}
	oldGN, err := asGPUNode(oldObj)
	if err != nil {
		return fwk.Queue, err
	}
	// The cache may not have seen this version yet (its own informer runs
	// apart from the framework's): give it now, so that a pod queued here
	// is not retried against the old topology.
	p.shared.observeGPUNode(newGN)
	if p.shared.cache.TopologyVersion(newGN.Name) == newGN.ResourceVersion {
		p.shared.unannounced.seen(newGN.Name)
	}
	if newGN.Spec.State != gpusliceapi.StateReady {
		return fwk.QueueSkip, nil
	}
	req := p.request(pod)
	if req.Empty() {
		return fwk.QueueSkip, nil
	}
	caps, err := newGN.Spec.Topology().Capacity()
	if err != nil {
		return fwk.QueueSkip, nil // a corrupt topology admits nothing
	}
	offered := false
	for _, rc := range req.Effective {
		if caps[rc.Name] >= int64(rc.Count) {
			offered = true
		}
	}
	if !offered {
		logger.V(5).Info("GPUNode offers none of the pod's GPU resources", "pod", klog.KObj(pod), "node", newGN.Name)
		return fwk.QueueSkip, nil
	}
	if oldGN == nil || oldGN.Spec.State != gpusliceapi.StateReady ||
		oldGN.Spec.AllocationsFingerprint != newGN.Spec.AllocationsFingerprint ||
		len(oldGN.Spec.Allocations) != len(newGN.Spec.Allocations) ||
		fmt.Sprint(oldGN.Spec.GPUs) != fmt.Sprint(newGN.Spec.GPUs) ||
		fmt.Sprint(oldGN.Spec.TimeSlicing) != fmt.Sprint(newGN.Spec.TimeSlicing) {
		return fwk.Queue, nil
	}
	return fwk.QueueSkip, nil
}

// hintLease queues the pod when an exporter Lease in the configured
// namespace appears or is renewed after a gap longer than the heartbeat
// timeout: a stale node came back.
func (p *Plugin) hintLease(_ klog.Logger, _ *v1.Pod, oldObj, newObj any) (fwk.QueueingHint, error) {
	newL, err := asLease(newObj)
	if err != nil || newL == nil {
		return fwk.Queue, err
	}
	if newL.Namespace != p.args.LeaseNamespace {
		return fwk.QueueSkip, nil
	}
	// As for GPUNodes: the cache sees the renewal before the pod is retried
	// (it keeps the newest renewal it has seen).
	p.shared.cache.SetHeartbeat(newL.Name, RenewTime(newL))
	// The Lease names a GPUNode version the cache has not seen: the GPUNode
	// watch lags, and the GPUNode's own event, which would wake the pod,
	// may come a minute late. The node's GPUNode is read off this handler
	// (catchup.go). Once the cache holds a version that no GPUNode hint has
	// seen (read so, or delivered by the plugin's informer ahead of the
	// framework's), the node's renewals wake the pod.
	p.shared.catchUps.observe(newL)
	if p.shared.unannounced.pending(newL.Name) {
		return fwk.Queue, nil
	}
	oldL, err := asLease(oldObj)
	if err != nil {
		return fwk.Queue, err
	}
	if oldL == nil {
		return fwk.Queue, nil
	}
	if RenewTime(newL).Sub(RenewTime(oldL)) > p.args.HeartbeatTimeout.Duration {
		return fwk.Queue, nil
	}
	return fwk.QueueSkip, nil
}

// hintPodDeleted queues the pod when a deleted pod held a GPU resource it
// asks for.
func (p *Plugin) hintPodDeleted(_ klog.Logger, pod *v1.Pod, oldObj, _ any) (fwk.QueueingHint, error) {
	deleted, ok := unwrap(oldObj).(*v1.Pod)
	if !ok {
		return fwk.Queue, fmt.Errorf("expected *v1.Pod, got %T", oldObj)
	}
	// The cache's pod handler and this hint run on separate listeners of
	// the pod informer: release the pod's devices now (idempotent), so that
	// a pod queued here sees them free.
	p.shared.cache.RemovePod(deleted.UID)
	want, had := p.request(pod), p.request(deleted)
	if want.Empty() || had.Empty() {
		return fwk.QueueSkip, nil
	}
	for _, rc := range want.Effective {
		if had.Count(rc.Name) > 0 {
			return fwk.Queue, nil
		}
	}
	return fwk.QueueSkip, nil
}

// hintNode queues the pod when a node's allocatable of a GPU resource it asks
// for appeared or grew (the device plugin re-advertised), or when the
// repartitioner stopped draining one of the node's GPUs.
func (p *Plugin) hintNode(_ klog.Logger, pod *v1.Pod, oldObj, newObj any) (fwk.QueueingHint, error) {
	newNode, ok := newObj.(*v1.Node)
	if !ok {
		return fwk.Queue, fmt.Errorf("expected *v1.Node, got %T", newObj)
	}
	oldNode, _ := oldObj.(*v1.Node)
	req := p.request(pod)
	if req.Empty() {
		return fwk.QueueSkip, nil
	}
	if oldNode != nil && drainLifted(oldNode, newNode) {
		return fwk.Queue, nil
	}
	for _, rc := range req.Effective {
		q := newNode.Status.Allocatable[v1.ResourceName(rc.Name)]
		if q.Value() < int64(rc.Count) {
			continue
		}
		if oldNode == nil {
			return fwk.Queue, nil
		}
		if old := oldNode.Status.Allocatable[v1.ResourceName(rc.Name)]; old.Value() < q.Value() {
			return fwk.Queue, nil
		}
	}
	return fwk.QueueSkip, nil
}

// drainLifted reports whether a GPU drained on the old node is not drained
// on the new one.
func drainLifted(oldNode, newNode *v1.Node) bool {
	was, _ := assignment.ParseDrain(oldNode.Annotations[assignment.DrainAnnotation])
	if len(was) == 0 {
		return false
	}
	now, err := assignment.ParseDrain(newNode.Annotations[assignment.DrainAnnotation])
	if err != nil {
		return true // the drain is ignored now
	}
	for _, g := range was {
		if !slices.Contains(now, g) {
			return true
		}
	}
	return false
}

// asGPUNode converts an event object: typed, or unstructured from the
// scheduler's dynamic informer. nil stays nil.
func asGPUNode(obj any) (*gpusliceapi.GPUNode, error) {
	switch o := obj.(type) {
	case nil:
		return nil, nil
	case *gpusliceapi.GPUNode:
		return o, nil
	case *unstructured.Unstructured:
		gn := &gpusliceapi.GPUNode{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, gn); err != nil {
			return nil, fmt.Errorf("decoding GPUNode %s: %w", o.GetName(), err)
		}
		return gn, nil
	}
	return nil, fmt.Errorf("expected a GPUNode, got %T", obj)
}

func asLease(obj any) (*coordinationv1.Lease, error) {
	switch o := obj.(type) {
	case nil:
		return nil, nil
	case *coordinationv1.Lease:
		return o, nil
	case *unstructured.Unstructured:
		l := &coordinationv1.Lease{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, l); err != nil {
			return nil, fmt.Errorf("decoding Lease %s: %w", o.GetName(), err)
		}
		return l, nil
	}
	return nil, fmt.Errorf("expected a Lease, got %T", obj)
}
