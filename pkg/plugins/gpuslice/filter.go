package gpuslice

import (
	"context"

	v1 "k8s.io/api/core/v1"
	fwk "k8s.io/kube-scheduler/framework"

	"github.com/gpuslice/gpuslice/pkg/allocator"
	"github.com/gpuslice/gpuslice/pkg/assignment"
	"github.com/gpuslice/gpuslice/pkg/cache"
)

// Filter admits a node when its exporter's topology is fresh, every GPU
// resource the pod asks for has enough free healthy devices, and no GPU the
// repartitioner drains holds a free device of those resources. It reads only
// the cache (no API call) and records the snapshot it judged for Score and
// Reserve. That the request fits an unchanged snapshot is remembered (see
// memo); a snapshot with a preemption overlay is a copy for this cycle and
// is always checked.
func (p *Plugin) Filter(_ context.Context, cs fwk.CycleState, _ *v1.Pod, nodeInfo fwk.NodeInfo) *fwk.Status {
	s, err := getState(cs)
	if err != nil {
		return fwk.AsStatus(err)
	}
	node := nodeInfo.Node().Name
	slot := p.memo.slot(p.shared.cache, node)
	if slot == nil {
		return fwk.NewStatus(fwk.UnschedulableAndUnresolvable, UnusableReason(cache.UnknownNode(node)))
	}
	view := slot.node.View()
	if !view.Freshness.Usable {
		if view.Freshness.Cause == cache.CauseReconfiguring {
			s.sawReconfiguring.Store(true)
		}
		return fwk.NewStatus(fwk.UnschedulableAndUnresolvable, UnusableReason(view.Freshness))
	}
	st := p.nodeState(s, node, view.State)
	shared := st == view.State
	var known *memoEntry
	if shared {
		known = slot.fits(st, s.reqKey)
	}
	if known == nil {
		if v := st.Check(s.req); !v.OK() {
			code := fwk.Unschedulable
			if v.Unresolvable() {
				code = fwk.UnschedulableAndUnresolvable
			}
			if lack := migLack(st, s.req, v); lack != 0 {
				slot.recordLack(s, lack)
				s.lacked.Store(true)
			}
			return fwk.NewStatus(code, RejectReason(v))
		}
		if shared {
			slot.storeFit(st, s.reqKey)
		}
	}
	if reason := drainReason(nodeInfo.Node(), st, s); reason != "" {
		return fwk.NewStatus(fwk.Unschedulable, reason)
	}
	slot.record(s, judged{st: st, memo: known, own: !shared})
	return nil
}

// drainReason is Filter's message when a GPU the repartitioner drains
// (assignment.DrainAnnotation) holds a free device the pod asks for: the
// kubelet could hand it out, and the GPU must empty for its new layout.
// An annotation that does not parse drains nothing (a drain only delays
// pods; ignoring one never costs a device).
func drainReason(n *v1.Node, st *allocator.State, s *cycleState) string {
	v, ok := n.Annotations[assignment.DrainAnnotation]
	if !ok {
		return ""
	}
	gpus, err := assignment.ParseDrain(v)
	if err != nil {
		return ""
	}
	if c := st.DrainConflicts(s.req, gpus); len(c) > 0 {
		return "gpuslice: " + c[0].String()
	}
	return ""
}

// RejectReason is Filter's message for a node whose allocation state does
// not fit the pod (kubectl gpuslice explain shows the same text).
func RejectReason(v allocator.Verdict) string {
	return "gpuslice: " + v.Reason() + sharingHint(v)
}

// UnusableReason is Filter's message for a node that takes no GPU pods now
// (no or invalid topology, stale or missing heartbeat, Degraded,
// reconfiguring).
func UnusableReason(f cache.Freshness) string { return "gpuslice: " + f.Reason }

// sharingHint tells a pod refused by its sharing rule how to opt out.
func sharingHint(v allocator.Verdict) string {
	switch v.Code {
	case allocator.SharesDevice, allocator.TooFewDevices:
		return " (set annotation " + assignment.SharingAnnotation + ": Any to accept several replicas of one GPU)"
	case allocator.NotExclusive:
		return " (set annotation " + assignment.SharingAnnotation + ": DistinctGPUs or Any to accept time-sliced replicas)"
	}
	return ""
}
