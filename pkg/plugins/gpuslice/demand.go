package gpuslice

import (
	"context"
	"slices"
	"sort"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/sets"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins/names"

	"github.com/gpuslice/gpuslice/pkg/allocator"
	"github.com/gpuslice/gpuslice/pkg/podrequest"
	"github.com/gpuslice/gpuslice/pkg/topology"
)

// MIG demand: which pending pods wait for want of a MIG profile.
//
// gpuslice-repartitioner changes MIG layouts for pods that cannot be placed
// because no free instance of a profile they ask for exists. A pod's
// PodScheduled=False/Unschedulable condition does not say that: the pod may
// be refused for its CPU, a taint, a node affinity, a whole GPU, or a stale
// node, which no layout fixes. Only the scheduler knows why, so it tells:
//
//  1. Filter, when it rejects a node (its cold path), notes in the node's
//     memo slot which of the request's MIG resources the node lacks, when
//     those are its only lack and the node's GPU model offers them
//     (migLack). A bit set, no allocation, the node's own lock.
//  2. PostFilter (this profile's, configured ahead of DefaultPreemption
//     since informational PostFilter plugins go first) runs once per failed
//     cycle. GPUSlice filters first, so the default filters did not run on
//     the nodes it rejected: for those candidates, in name order, it asks
//     every other Filter plugin whether the pod would fit were the missing
//     instances there (the node's allocatable raised by what the pod asks
//     of the lacking profiles, GPUSlice itself skipped), and stops at the
//     first that says yes. (It asks on the node as it is first, and copies
//     the node only when NodeResourcesFit refuses it for the lacking MIG
//     resources alone.) The pod is MIG demand when one does: its record
//     (profiles and counts, first seen, priority) is kept in memory
//     (demandRecorder). It is not when none does, or when the pod did not
//     reach GPUSlice's Filter; the record goes. A cycle in which a node was
//     turned away as reconfiguring and no candidate confirmed changes
//     nothing (the layout the pod waits for may be on its way).
//  3. A background queue (demandWriter) makes the record visible to the
//     repartitioner, which runs in another process, as the pod annotation
//     gpuslice.io/mig-demand: rate-limited, written only when it differs
//     from what the pod carries. The record goes when the pod binds or is
//     deleted; a bound pod's annotation is left alone.
//
// The cost is on failed cycles only, and bounded by one Filter pass over
// the candidate nodes, which is what the cycle would have spent had GPUSlice
// not filtered first; usually the first candidate confirms.

// lackable: the verdict codes for which a node may lack only instances of
// a MIG profile.
func lackable(v allocator.Verdict) bool {
	switch v.Code {
	case allocator.Insufficient, allocator.NotOffered, allocator.ExceedsNode:
		_, mig := topology.ProfileFromResource(v.Resource)
		return mig
	}
	return false
}

// migLack returns, as a bit set over req.Effective, the MIG resources of
// the request the node st has too few free instances of, when those are the
// node's only shortage and a new layout of one of its GPUs could offer each
// of them (allocator.Node.CanOffer); 0 otherwise. v is Check's verdict on
// st. Requests with more than 64 resources are never demand.
func migLack(st *allocator.State, req *podrequest.Request, v allocator.Verdict) uint64 {
	if !lackable(v) || len(req.Effective) > 64 {
		return 0
	}
	n := st.Node()
	var lack uint64
	for i := range req.Effective {
		rc := &req.Effective[i]
		if rc.Count <= st.Free(rc.Name) {
			continue
		}
		if !n.CanOffer(rc.Name) {
			return 0 // a whole GPU, a time-sliced replica, a profile of another model
		}
		lack |= 1 << i
	}
	return lack
}

// lackedProfiles are the MIG profiles and counts of the bits of lack.
func lackedProfiles(req *podrequest.Request, lack uint64) map[string]int {
	out := map[string]int{}
	for i := range req.Effective {
		if lack&(1<<i) == 0 {
			continue
		}
		if p, ok := topology.ProfileFromResource(req.Effective[i].Name); ok {
			out[p] += req.Effective[i].Count
		}
	}
	return out
}

// demandOutcome is what a failed cycle says of a pod.
type demandOutcome int

const (
	// notDemand: the pod waits for something a MIG layout cannot give.
	notDemand demandOutcome = iota
	// isDemand: some node would take it with instances of the profiles.
	isDemand
	// undecided: no node confirmed, but one was reconfiguring.
	undecided
)

// PostFilter classifies a pod no node took (see the comment at the top of
// this file) and records or drops its MIG demand. It never makes the pod
// schedulable: it returns Unschedulable without a message, so that the
// next PostFilter plugin (DefaultPreemption) runs and the pod's condition
// is unchanged.
func (p *Plugin) PostFilter(ctx context.Context, cs fwk.CycleState, pod *v1.Pod, _ fwk.NodeToStatusReader) (*fwk.PostFilterResult, *fwk.Status) {
	d := p.shared.demand
	if d == nil {
		return nil, fwk.NewStatus(fwk.Unschedulable)
	}
	s, err := getState(cs)
	if err != nil || s.req == nil || s.req.Empty() {
		// GPUSlice's Filter did not run: another PreFilter turned the pod
		// away, or it asks for no GPU.
		d.clear(pod.UID)
		return nil, fwk.NewStatus(fwk.Unschedulable)
	}
	profiles, outcome := p.classify(ctx, cs, s, pod)
	switch outcome {
	case isDemand:
		d.set(pod, profiles, p.shared.now())
	case notDemand:
		d.clear(pod.UID)
	}
	return nil, fwk.NewStatus(fwk.Unschedulable)
}

// candidate is a node Filter rejected for want of MIG instances only.
type candidate struct {
	name string
	lack uint64
}

// classify decides whether the cycle s failed for want of a MIG profile,
// and which.
func (p *Plugin) classify(ctx context.Context, cs fwk.CycleState, s *cycleState, pod *v1.Pod) (map[string]int, demandOutcome) {
	var cands []candidate
	if s.lacked.Load() {
		cands = p.memo.lacking(s)
	}
	if len(cands) > 0 {
		sort.Slice(cands, func(i, j int) bool { return cands[i].name < cands[j].name })
		probe := cs.Clone()
		skip := sets.New(Name)
		if old := cs.GetSkipFilterPlugins(); old != nil {
			skip = skip.Union(old)
		}
		probe.SetSkipFilterPlugins(skip)
		infos := p.handle.SnapshotSharedLister().NodeInfos()
		for _, c := range cands {
			ni, err := infos.Get(c.name)
			if err != nil || ni.Node() == nil {
				continue
			}
			// First on the node as it is: most refusals (a taint, an
			// affinity, CPU) show without copying it.
			st := p.handle.RunFilterPlugins(ctx, probe, pod, ni)
			if !st.IsSuccess() && onlyShortOf(st, s.req, c.lack) {
				st = p.handle.RunFilterPlugins(ctx, probe, pod, withInstances(ni, s.req, c.lack))
			}
			if st.IsSuccess() {
				return lackedProfiles(s.req, c.lack), isDemand
			}
		}
	}
	if s.sawReconfiguring.Load() {
		return nil, undecided
	}
	return nil, notDemand
}

// onlyShortOf reports whether st is NodeResourcesFit's refusal for want of
// some of the lacking resources only ("Insufficient nvidia.com/mig-...").
func onlyShortOf(st *fwk.Status, req *podrequest.Request, lack uint64) bool {
	if st.Plugin() != names.NodeResourcesFit || len(st.Reasons()) == 0 {
		return false
	}
	for _, r := range st.Reasons() {
		res, ok := strings.CutPrefix(r, "Insufficient ")
		if !ok {
			return false
		}
		i := slices.IndexFunc(req.Effective, func(rc podrequest.ResourceCount) bool { return rc.Name == res })
		if i < 0 || i >= 64 || lack&(1<<i) == 0 {
			return false
		}
	}
	return true
}

// withInstances is a copy of the node's info whose allocatable has room for
// what the request asks of the lacking resources: the node as the default
// filters (NodeResourcesFit counts extended resources) would see it once a
// new layout offered them.
func withInstances(ni fwk.NodeInfo, req *podrequest.Request, lack uint64) fwk.NodeInfo {
	c := ni.Snapshot()
	node := ni.Node().DeepCopy()
	if node.Status.Allocatable == nil {
		node.Status.Allocatable = v1.ResourceList{}
	}
	requested := ni.GetRequested().GetScalarResources()
	for i := range req.Effective {
		if lack&(1<<i) == 0 {
			continue
		}
		name := v1.ResourceName(req.Effective[i].Name)
		node.Status.Allocatable[name] = *resource.NewQuantity(requested[name]+int64(req.Effective[i].Count), resource.DecimalSI)
	}
	c.SetNode(node)
	return c
}

// lacking lists the nodes the cycle s's Filter rejected for want of MIG
// instances only.
func (m *memo) lacking(s *cycleState) []candidate {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []candidate
	for name, sl := range m.nodes {
		sl.mu.Lock()
		if sl.lackBy == s && sl.lack != 0 {
			out = append(out, candidate{name: name, lack: sl.lack})
		}
		sl.mu.Unlock()
	}
	return out
}

// recordLack notes that the cycle s's Filter rejected the node for want of
// the MIG resources in lack (a bit set over the request's Effective).
func (sl *nodeSlot) recordLack(s *cycleState, lack uint64) {
	sl.mu.Lock()
	sl.lackBy, sl.lack = s, lack
	sl.mu.Unlock()
}

// now is the clock of the demand records.
func (s *Shared) now() time.Time {
	if s.clock != nil {
		return s.clock()
	}
	return time.Now()
}
