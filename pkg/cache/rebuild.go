package cache

import (
	"slices"
	"sort"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/gpuslice/gpuslice/pkg/allocator"
	"github.com/gpuslice/gpuslice/pkg/topology"
)

// rebuild recomputes the node's allocation snapshot from its records. The
// caller holds e.mu. Order of trust: devices the exporter reports (for any
// pod, known or not), then claimed placements (reservations, assignment
// annotations), then predictions for pods nobody claimed. A claim that
// collides with the truth is re-predicted; a pod that no longer fits holds
// nothing rather than a device someone else has.
func (e *nodeEntry) rebuild() {
	if e.observer == nil {
		e.rebuildSnapshot()
		e.publish()
		return
	}
	start := time.Now()
	e.rebuildSnapshot()
	e.publish()
	e.observer.Rebuilt(e.name, time.Since(start))
}

func (e *nodeEntry) rebuildSnapshot() {
	e.gen++
	e.unplaced = 0
	if e.compiled == nil {
		e.snap = nil
		for _, r := range e.pods {
			r.devices, r.predicted = nil, true
		}
		return
	}
	st := allocator.NewState(e.compiled)
	var reported map[types.UID][]allocator.ResourceDevices
	if e.topo != nil {
		reported = e.topo.Allocations
	}
	// Reported devices of pods the cache does not track (static pods, pods
	// not yet seen) count too.
	for _, uid := range sortedUIDs(reported) {
		if _, tracked := e.pods[uid]; tracked {
			continue
		}
		_ = st.Apply(reported[uid]) // a stale or foreign ID cannot be counted
	}
	records := make([]*podRecord, 0, len(e.pods))
	for _, r := range e.pods {
		records = append(records, r)
	}
	sort.Slice(records, func(i, j int) bool { return records[i].order < records[j].order })

	var claimed, unclaimed []*podRecord
	for _, r := range records {
		if devs := reported[r.uid]; len(devs) > 0 {
			if err := st.Apply(devs); err == nil {
				if r.phase != Confirmed && r.predicted && len(r.devices) > 0 && e.observer != nil {
					e.observer.ReadBack(ReadBack{
						UID: r.uid, Namespace: r.namespace, Name: r.name, Node: e.name, Claimed: r.claimed != nil,
						Predicted: r.devices, Reported: devs, Corrected: !samePhysical(r.devices, devs),
					})
				}
				r.devices, r.predicted, r.phase = devs, false, Confirmed
				continue
			}
		}
		if r.claimed != nil {
			claimed = append(claimed, r)
		} else {
			unclaimed = append(unclaimed, r)
		}
	}
	for _, r := range claimed {
		devs := r.claimed.Devices()
		if err := st.Apply(devs); err == nil {
			r.devices, r.predicted = devs, true
			continue
		}
		unclaimed = append(unclaimed, r)
	}
	for _, r := range unclaimed {
		r.devices, r.predicted = nil, true
		p, v := st.Place(r.req)
		if !v.OK() {
			e.unplaced++
			continue
		}
		devs := p.Devices()
		if err := st.Apply(devs); err != nil {
			e.unplaced++
			continue
		}
		r.devices = devs
	}
	e.snap = st
}

func sortedUIDs(m map[types.UID][]allocator.ResourceDevices) []types.UID {
	out := make([]types.UID, 0, len(m))
	for uid := range m {
		out = append(out, uid)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// samePhysical reports whether two device lists name the same physical
// devices per resource, counted with multiplicity: time-sliced replicas of
// one GPU (GPU-<uuid>::<n>) are interchangeable, so only their GPU counts.
func samePhysical(a, b []allocator.ResourceDevices) bool {
	return slices.Equal(physical(a), physical(b))
}

// physical lists "resource/device" for every device, replica suffixes
// removed, sorted.
func physical(devs []allocator.ResourceDevices) []string {
	var out []string
	for _, d := range devs {
		for _, id := range d.DeviceIDs {
			base, _, _ := topology.SplitReplicaID(id)
			out = append(out, d.Resource+"/"+base)
		}
	}
	slices.Sort(out)
	return out
}
