package gpuslice

import (
	"strconv"
	"strings"
	"sync"

	"github.com/gpuslice/gpuslice/pkg/allocator"
	"github.com/gpuslice/gpuslice/pkg/podrequest"
)

// memo remembers, per node, what Filter and Score found on the node's
// allocation snapshot for one request, so that a later cycle asking the same
// of an unchanged node skips the work. That is the common case: a cycle
// changes one node's snapshot, and the scheduler examines hundreds of nodes
// per pod (on a 5 000-node cluster, Check and Score were a quarter of the
// scheduler's CPU time).
//
// It is exact. Snapshots are immutable and replaced whenever a node's
// allocations change, and an entry holds a reference to its snapshot (so no
// new snapshot can take its address): an entry for the same snapshot and the
// same request key holds what Check or Score would compute again. Only
// results that depend on nothing else are kept: that the request fits
// (rejections are recomputed, with their reasons), and binpack and spread
// scores (fragmentation-aware scores follow the learned mix, which moves with
// every reservation). Freshness is not memoised: Filter checks it every time.
// Snapshots with a preemption overlay are never memoised (see Filter).
//
// Each profile's plugin has its own memo (scores depend on its scorer). It
// is safe for concurrent use: entries are immutable and replaced whole.
type memo struct {
	nodes sync.Map // node name -> *memoEntry
}

// memoEntry: req fits on state; score is its score when scored.
type memoEntry struct {
	state  *allocator.State
	req    string
	score  int64
	scored bool
}

// fits returns the entry saying that req fits on the node's snapshot st;
// nil when that is not known.
func (m *memo) fits(node string, st *allocator.State, req string) *memoEntry {
	v, ok := m.nodes.Load(node)
	if !ok {
		return nil
	}
	e := v.(*memoEntry)
	if e.state != st || e.req != req {
		return nil
	}
	return e
}

// storeFit records that req fits on st (the caller found no entry for
// them).
func (m *memo) storeFit(node string, st *allocator.State, req string) {
	m.nodes.Store(node, &memoEntry{state: st, req: req})
}

// scoreOf returns the entry's score, if it has one; e may be nil.
func (e *memoEntry) scoreOf() (int64, bool) {
	if e != nil && e.scored {
		return e.score, true
	}
	return 0, false
}

// storeScore records req's score on st (which Filter found it fits).
func (m *memo) storeScore(node string, st *allocator.State, req string, score int64) {
	m.nodes.Store(node, &memoEntry{state: st, req: req, score: score, scored: true})
}

// forget drops a node's entry (the node is gone).
func (m *memo) forget(node string) { m.nodes.Delete(node) }

// requestKey identifies a request for the memo: everything Check and the
// binpack and spread scores read of it, that is the effective counts and,
// per container (for the device plugin's failRequestsGreaterThanOne rule),
// its kind and counts. Container names only appear in rejection reasons,
// which are not memoised.
func requestKey(req *podrequest.Request) string {
	var b strings.Builder
	b.WriteString(req.String())
	for _, c := range req.Containers {
		b.WriteByte('|')
		if c.Init {
			b.WriteByte('i')
		}
		if c.Restartable {
			b.WriteByte('r')
		}
		for i, rc := range c.Resources {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(rc.Name)
			b.WriteByte('=')
			b.WriteString(strconv.Itoa(rc.Count))
		}
	}
	return b.String()
}
