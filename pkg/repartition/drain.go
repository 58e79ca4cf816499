package repartition

import (
	"sort"
	"time"

	"github.com/gpuslice/gpuslice/pkg/topology"
)

// drainCand is a busy GPU considered for a drain.
type drainCand struct {
	nw    *nodeWork
	gi    int // position
	since time.Time
	// devices is how many devices pods hold on it; used their
	// GPU-equivalents.
	devices int
	used    float64
	// blocked is the free capacity (GPU-equivalents) of the node the drain
	// makes unusable: every free device of a resource the drained GPU has
	// free, since the scheduler then turns such pods away from the whole
	// node.
	blocked float64
	c       *choice
}

// planDrains decides the drains after this round's changes (Plan.Drains)
// and remembers them. A drain is kept while its GPU, once empty, would
// serve pending pods that nothing else serves, until MaxDrainTime; a GPU a
// change of this round rebuilds is drained no more. New drains go to the
// busy GPUs whose drain leaves the least free capacity of the node
// unusable, then that empty soonest (fewest devices held, then least in
// use), among those whose new layout would serve pods pending for
// DrainAfter or longer, while fewer than MaxDrainingGPUs GPUs drain. Pods a drain serves
// are not counted again for the next.
func (p *Planner) planDrains(now time.Time, nodes []*nodeWork, residual []pending, served []bool, plan *Plan, sc *strandCache) {
	byName := map[string]*nodeWork{}
	for _, nw := range nodes {
		byName[nw.topo.Name] = nw
	}
	for k, t := range p.drainQuit {
		if now.Sub(t) >= p.cfg.MinGPUInterval {
			delete(p.drainQuit, k)
		}
	}
	if p.cfg.MaxDrainingGPUs == 0 {
		clear(p.drains)
		return
	}
	changed := map[string]bool{}
	for _, np := range plan.Nodes {
		for _, c := range np.Changes {
			changed[gpuKey(np.Node, c.GPU)] = true
		}
	}
	// A drain the node's annotation shows that the planner does not
	// remember (a new leader) is adopted from now.
	for _, nw := range nodes {
		for _, i := range nw.draining {
			if k := gpuKey(nw.topo.Name, i); p.drains[k] == nil {
				p.drains[k] = &drainRec{node: nw.topo.Name, gpu: i, since: now}
			}
		}
	}

	// Pods a drain may be for: unserved, pending long enough.
	mask := make([]bool, len(residual))
	wanted := false
	for ri := range residual {
		mask[ri] = served[ri] || now.Sub(residual[ri].d.Since) < p.cfg.DrainAfter
		wanted = wanted || !mask[ri]
	}

	var keep []*drainCand
	keys := make([]string, 0, len(p.drains))
	for k := range p.drains {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		d := p.drains[k]
		nw := byName[d.node]
		gi := -1
		if nw != nil {
			gi = nw.position(d.gpu)
		}
		switch {
		case gi < 0 || changed[k] || !wanted:
			delete(p.drains, k)
		case now.Sub(d.since) >= p.cfg.MaxDrainTime:
			delete(p.drains, k)
			p.drainQuit[k] = now
		case !now.Before(p.failures[d.node].until):
			keep = append(keep, &drainCand{nw: nw, gi: gi, since: d.since})
		default:
			delete(p.drains, k) // the node backs off after a failed run
		}
	}
	sort.SliceStable(keep, func(i, j int) bool { return keep[i].since.Before(keep[j].since) })

	// Kept drains claim their pods first, oldest drain first.
	var out []*drainCand
	for _, dc := range keep {
		dc.c = p.bestDrainLayout(dc.nw, dc.gi, residual, mask, sc)
		if dc.c == nil {
			delete(p.drains, gpuKey(dc.nw.topo.Name, dc.nw.topo.GPUs[dc.gi].Index))
			continue
		}
		for _, ri := range dc.c.serves {
			mask[ri] = true
		}
		out = append(out, dc)
	}

	for len(out) < p.cfg.MaxDrainingGPUs {
		drainedOn := map[*nodeWork][]int{}
		for _, dc := range out {
			drainedOn[dc.nw] = append(drainedOn[dc.nw], dc.gi)
		}
		var best *drainCand
		for _, nw := range nodes {
			if !nw.eligible {
				continue
			}
			usage := nw.state.GPUs()
			for gi := range nw.topo.GPUs {
				k := gpuKey(nw.topo.Name, nw.topo.GPUs[gi].Index)
				if !nw.realBusy[gi] || p.drains[k] != nil {
					continue
				}
				if _, quit := p.drainQuit[k]; quit {
					continue
				}
				if _, ok := p.changeable(nw, gi, now); !ok {
					continue
				}
				dc := &drainCand{nw: nw, gi: gi, since: now, devices: nw.devices(gi), used: usage[gi].Used, blocked: p.blocked(nw, gi, drainedOn[nw])}
				if best != nil && !dc.soonerThan(best) {
					continue
				}
				if dc.c = p.bestDrainLayout(nw, gi, residual, mask, sc); dc.c != nil {
					best = dc
				}
			}
		}
		if best == nil {
			break
		}
		g := &best.nw.topo.GPUs[best.gi]
		p.drains[gpuKey(best.nw.topo.Name, g.Index)] = &drainRec{node: best.nw.topo.Name, gpu: g.Index, since: now}
		for _, ri := range best.c.serves {
			mask[ri] = true
		}
		out = append(out, best)
	}

	for _, dc := range out {
		g := &dc.nw.topo.GPUs[dc.gi]
		d := Drain{Node: dc.nw.topo.Name, GPU: g.Index, Since: p.drains[gpuKey(dc.nw.topo.Name, g.Index)].since,
			From: topology.Counts(g.Instances), To: dc.c.layout.counts}
		for _, ri := range dc.c.serves {
			d.Serves = append(d.Serves, residual[ri].d.Pod)
		}
		plan.Drains = append(plan.Drains, d)
	}
	sort.Slice(plan.Drains, func(i, j int) bool {
		a, b := &plan.Drains[i], &plan.Drains[j]
		if a.Node != b.Node {
			return a.Node < b.Node
		}
		return a.GPU < b.GPU
	})
}

// soonerThan orders drain candidates: less free capacity made unusable,
// then fewer devices held (the GPU empties when the last of its pods
// ends), then less in use.
func (a *drainCand) soonerThan(b *drainCand) bool {
	if d := a.blocked - b.blocked; d < -1e-9 || d > 1e-9 {
		return d < 0
	}
	if a.devices != b.devices {
		return a.devices < b.devices
	}
	return a.used < b.used-1e-9
}

// bestDrainLayout is the layout GPU position gi would best take once empty
// for the residual pods mask leaves: the most served (highest priority
// first), then the least stranded for the mix. Nil when none serves a pod.
func (p *Planner) bestDrainLayout(nw *nodeWork, gi int, residual []pending, mask []bool, sc *strandCache) *choice {
	g := &nw.topo.GPUs[gi]
	m, ok := p.cat.Lookup(g.Product)
	if !ok || len(residual) == 0 {
		return nil
	}
	cur := topology.Counts(g.Instances)
	curKey := topology.FormatCounts(cur)
	// Free devices of the node with this GPU's free ones taken out: its
	// running pods keep theirs until it is empty.
	base := make(map[string]int, len(nw.free))
	for r, n := range nw.free {
		base[r] = n
	}
	for r := range nw.capacity[gi] {
		base[r] -= nw.state.FreeOnGPU(g.Index, r)
	}
	prios := priorityLevels(residual)
	var best *choice
	for li := range p.modelLayouts(m) {
		l := &p.layouts[m.Name][li]
		if l.key == curKey {
			continue
		}
		free := make(map[string]int, len(base)+4)
		for r, n := range base {
			free[r] = n
		}
		for r, n := range nw.layoutCapacity(g.Product, g.MemoryMiB, l.instances) {
			free[r] += n
		}
		sv := serveFrom(free, residual, mask)
		if len(sv) == 0 {
			continue
		}
		c := &choice{node: nw, gpu: gi, layout: l, serves: sv, value: make([]int, len(prios))}
		for _, ri := range sv {
			c.value[prios[residual[ri].d.Priority]]++
		}
		if sc.mix != nil {
			c.strandDelta = sc.stranded(g.Product, l.key, l.instances) - sc.stranded(g.Product, curKey, g.Instances)
			if c.strandDelta > -p.cfg.DrainMinGain {
				continue
			}
		}
		if better(c, best) {
			best = c
		}
	}
	return best
}

// position is the topology position of the GPU with this index (-1: none).
func (nw *nodeWork) position(index int) int {
	for gi := range nw.topo.GPUs {
		if nw.topo.GPUs[gi].Index == index {
			return gi
		}
	}
	return -1
}

// devices counts the devices pods hold on GPU position gi.
func (nw *nodeWork) devices(gi int) int {
	n := 0
	for _, rd := range nw.in.Allocated {
		for _, id := range rd.DeviceIDs {
			if p, ok := nw.gpuByID[topology.BaseDeviceID(id)]; ok && p == gi {
				n++
			}
		}
	}
	return n
}

// blocked is the free capacity of node nw, in GPU-equivalents, that
// draining GPU position gi makes unusable beyond what the drains of
// positions others already do.
func (p *Planner) blocked(nw *nodeWork, gi int, others []int) float64 {
	g := &nw.topo.GPUs[gi]
	m, ok := p.cat.Lookup(g.Product)
	if !ok {
		return 0
	}
	total := 0.0
	for r := range nw.capacity[gi] {
		if nw.state.FreeOnGPU(g.Index, r) == 0 {
			continue
		}
		already := false
		for _, o := range others {
			if nw.state.FreeOnGPU(nw.topo.GPUs[o].Index, r) > 0 {
				already = true
			}
		}
		if already {
			continue
		}
		name, _ := topology.ProfileFromResource(r)
		prof, ok := m.Profile(name)
		if !ok {
			continue
		}
		total += float64(nw.state.Free(r)) * float64(prof.ComputeSlices) / float64(m.ComputeSlices)
	}
	return total
}
