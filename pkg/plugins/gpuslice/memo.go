package gpuslice

import (
	"strings"
	"sync"
	"sync/atomic"

	"github.com/gpuslice/gpuslice/pkg/allocator"
	"github.com/gpuslice/gpuslice/pkg/cache"
	"github.com/gpuslice/gpuslice/pkg/podrequest"
)

// memo is the plugin's table of nodes: per node, the cache handle, what
// Filter and Score found on the node's allocation snapshot for one request,
// and what this profile's latest Filter judged there. Filter runs for
// hundreds of nodes per pod, and on a 5 000-node cluster looking a node up
// by name in several maps was most of the plugin's cost: one lookup here
// serves Filter, and one serves Score.
//
// The memo entry spares a later cycle asking the same of an unchanged node
// the work. That is the common case: a cycle changes one node's snapshot,
// and the scheduler examines hundreds of nodes per pod (on a 5 000-node
// cluster, Check and Score were a quarter of the scheduler's CPU time). It
// is exact. Snapshots are immutable and replaced whenever a node's
// allocations change, and an entry holds a reference to its snapshot (so no
// new snapshot can take its address): an entry for the same snapshot and the
// same request key holds what Check or Score would compute again. Only
// results that depend on nothing else are kept: that the request fits
// (rejections are recomputed, with their reasons), and binpack and spread
// scores (fragmentation-aware scores follow the learned mix, which moves with
// every reservation). Freshness is not memoised: Filter checks it every time.
// Snapshots with a preemption overlay are never memoised (see Filter).
//
// Each profile's plugin has its own memo (scores depend on its scorer, and
// a profile's scheduling cycles run one at a time, which the judged record
// relies on). It is safe for concurrent use: Filter runs for many nodes at
// once.
type memo struct {
	mu    sync.RWMutex
	nodes map[string]*nodeSlot
}

// nodeSlot is what the plugin keeps of one node.
type nodeSlot struct {
	// node is the node's cache entry.
	node cache.Handle
	// entry is the memo entry: a request that fits a snapshot, and its score.
	entry atomic.Pointer[memoEntry]

	mu sync.Mutex
	// judgedBy is the cycle whose Filter last judged the node; judged is
	// what it judged.
	judgedBy *cycleState
	judged   judged
	// lackBy is the cycle whose Filter last rejected the node for want of
	// MIG instances only; lack says which (a bit set over the request's
	// Effective; see migLack).
	lackBy *cycleState
	lack   uint64
}

// memoEntry: req fits on state; score is its score when scored.
type memoEntry struct {
	state  *allocator.State
	req    string
	score  int64
	scored bool
}

// slot returns the node's slot, creating it on first use; nil while the
// cache knows nothing of the node (it takes no GPU pods then, see
// cache.UnknownNode, and gets no slot: CPU-only nodes, which come and go,
// leave nothing behind).
func (m *memo) slot(c *cache.Cache, node string) *nodeSlot {
	m.mu.RLock()
	sl := m.nodes[node]
	m.mu.RUnlock()
	if sl != nil {
		return sl
	}
	h, ok := c.Handle(node)
	if !ok {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if sl = m.nodes[node]; sl == nil {
		if m.nodes == nil {
			m.nodes = map[string]*nodeSlot{}
		}
		sl = &nodeSlot{node: h}
		m.nodes[node] = sl
	}
	return sl
}

// forget drops a node's slot (its GPUNode is gone).
func (m *memo) forget(node string) {
	m.mu.Lock()
	delete(m.nodes, node)
	m.mu.Unlock()
}

// fits returns the entry saying that req fits on the node's snapshot st;
// nil when that is not known.
func (sl *nodeSlot) fits(st *allocator.State, req string) *memoEntry {
	e := sl.entry.Load()
	if e == nil || e.state != st || e.req != req {
		return nil
	}
	return e
}

// storeFit records that req fits on st (the caller found no entry for
// them).
func (sl *nodeSlot) storeFit(st *allocator.State, req string) {
	sl.entry.Store(&memoEntry{state: st, req: req})
}

// storeScore records req's score on st (which Filter found it fits).
func (sl *nodeSlot) storeScore(st *allocator.State, req string, score int64) {
	sl.entry.Store(&memoEntry{state: st, req: req, score: score, scored: true})
}

// scoreOf returns the entry's score, if it has one; e may be nil.
func (e *memoEntry) scoreOf() (int64, bool) {
	if e != nil && e.scored {
		return e.score, true
	}
	return 0, false
}

// record notes what the cycle s's Filter judged.
func (sl *nodeSlot) record(s *cycleState, j judged) {
	sl.mu.Lock()
	sl.judgedBy, sl.judged = s, j
	sl.mu.Unlock()
}

// judgedIn returns what the cycle s's Filter judged on the node; false when
// its Filter did not judge it (or a later cycle's did since). A clone
// without an overlay reads its origin's record too: the scheduler's
// opportunistic batching rescores the node it filtered with the cycle's own
// state using a clone. sl may be nil.
func (sl *nodeSlot) judgedIn(s *cycleState) (judged, bool) {
	if sl == nil {
		return judged{}, false
	}
	sl.mu.Lock()
	defer sl.mu.Unlock()
	if sl.judgedBy == s || (s.origin != nil && sl.judgedBy == s.origin && !s.overlaid.Load()) {
		return sl.judged, true
	}
	return judged{}, false
}

// requestKey identifies a request for the memo: everything Check and the
// binpack and spread scores read of it, that is the effective counts, the
// sharing and, per container (for the device plugin's
// failRequestsGreaterThanOne rule and the distinct-devices rule), its kind
// and counts. Container names only appear in rejection reasons,
// which are not memoised.
func requestKey(req *podrequest.Request) string {
	var b strings.Builder
	b.WriteString(req.Key())
	for _, c := range req.Containers {
		b.WriteByte('|')
		if c.Init {
			b.WriteByte('i')
		}
		if c.Restartable {
			b.WriteByte('r')
		}
		podrequest.WriteCounts(&b, c.Resources)
	}
	return b.String()
}
