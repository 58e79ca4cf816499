package gpuslice

import (
	"fmt"
	"sync"
	"sync/atomic"

	fwk "k8s.io/kube-scheduler/framework"

	"github.com/gpuslice/gpuslice/pkg/allocator"
	"github.com/gpuslice/gpuslice/pkg/podrequest"
)

const stateKey fwk.StateKey = Name

// cycleState is what one scheduling cycle knows of the pod. PreFilter writes
// it. (Filter records the snapshot it judged in the node's slot of the
// plugin's memo, so that Score and Reserve use that same snapshot.)
type cycleState struct {
	req *podrequest.Request
	// reqKey is requestKey(req), the request's key in the plugin's memo.
	reqKey string
	// host is the pod's CPU and memory request.
	host allocator.Host
	mix  *allocator.Mix
	// origin is the cycle's own state when this one is a clone (nil in the
	// cycle's own state). Opportunistic batching filters the previous pick
	// with the cycle's state, then rescores it with a clone: the clone may
	// use what its origin's Filter judged, as long as it has no overlay of
	// its own (see nodeSlot.judgedIn).
	origin *cycleState

	mu sync.Mutex
	// overlay holds devices that preemption's dry run adds to or removes from
	// a node (PreFilterExtensions).
	overlay map[string]*overlay
	// overlaid is set once overlay has an entry, so that Filter, which asks
	// for every node, takes no lock in the common cycle without one.
	overlaid atomic.Bool
	// sawReconfiguring: Filter turned a node away because its MIG layout
	// is changing (see PostFilter).
	sawReconfiguring atomic.Bool
	// lacked: Filter rejected a node for want of MIG instances only (its
	// slot says which), so PostFilter has candidates to look for.
	lacked atomic.Bool
}

// judged is what Filter recorded of a node: the snapshot it judged and,
// when the memo knew that the request fits it, the memo's entry (which may
// hold the score too, sparing Score a lookup).
type judged struct {
	st   *allocator.State
	memo *memoEntry
	// own: st is this cycle's copy with its overlay, never memoised.
	own bool
}

type overlay struct {
	add, remove [][]allocator.ResourceDevices
}

// Clone copies what AddPod/RemovePod change. A clone is another cycle for
// the memo's judged records (preemption's dry run filters with clones), but
// it can read its origin's while it has no overlay.
func (s *cycleState) Clone() fwk.StateData {
	s.mu.Lock()
	defer s.mu.Unlock()
	origin := s.origin
	if origin == nil {
		origin = s
	}
	c := &cycleState{req: s.req, reqKey: s.reqKey, host: s.host, mix: s.mix, origin: origin}
	c.overlaid.Store(s.overlaid.Load())
	if s.overlay != nil {
		c.overlay = make(map[string]*overlay, len(s.overlay))
		for k, o := range s.overlay {
			c.overlay[k] = &overlay{add: append([][]allocator.ResourceDevices(nil), o.add...), remove: append([][]allocator.ResourceDevices(nil), o.remove...)}
		}
	}
	return c
}

func (s *cycleState) overlayFor(node string) *overlay {
	if !s.overlaid.Load() {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.overlay[node]
}

func getState(cs fwk.CycleState) (*cycleState, error) {
	data, err := cs.Read(stateKey)
	if err != nil {
		return nil, fmt.Errorf("reading %q from cycle state: %w", stateKey, err)
	}
	s, ok := data.(*cycleState)
	if !ok {
		return nil, fmt.Errorf("cycle state %q holds %T, not *cycleState", stateKey, data)
	}
	return s, nil
}
