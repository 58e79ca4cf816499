package repartition

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gpuslice/gpuslice/pkg/allocator"
	"github.com/gpuslice/gpuslice/pkg/podrequest"
	"github.com/gpuslice/gpuslice/pkg/topology"
)

// Planner proposes layout changes and remembers what hysteresis needs: when
// each GPU last changed and which nodes are backing off after a failed run.
// It is safe for concurrent use.
type Planner struct {
	cfg Config
	cat *topology.Catalog

	mu         sync.Mutex
	layouts    map[string][]layout  // by model name
	lastChange map[string]time.Time // per GPU (gpuKey)
	lastRun    map[string]time.Time // per node
	failures   map[string]failure
	drains     map[string]*drainRec // per GPU (gpuKey): drains under way
	drainQuit  map[string]time.Time // per GPU: when a drain was given up
}

type drainRec struct {
	node  string
	gpu   int
	since time.Time
}

type failure struct {
	count int
	until time.Time
}

// New returns a planner; the configuration is validated.
func New(cfg Config, cat *topology.Catalog) (*Planner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cat == nil {
		return nil, fmt.Errorf("repartition: nil catalog")
	}
	return &Planner{cfg: cfg, cat: cat, layouts: map[string][]layout{}, lastChange: map[string]time.Time{}, lastRun: map[string]time.Time{}, failures: map[string]failure{},
		drains: map[string]*drainRec{}, drainQuit: map[string]time.Time{}}, nil
}

func gpuKey(node string, index int) string { return node + "/" + strconv.Itoa(index) }

// Commit records that the plan's changes were asked for at now: those GPUs
// do not change again before now + MinGPUInterval, their nodes not before
// now + MinNodeInterval.
func (p *Planner) Commit(plan *Plan, now time.Time) {
	if plan == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, np := range plan.Nodes {
		if len(np.Changes) > 0 {
			p.lastRun[np.Node] = now
		}
		for _, c := range np.Changes {
			p.lastChange[gpuKey(np.Node, c.GPU)] = now
		}
	}
}

// Failed records a failed run on node at now and returns how long the node
// is left alone: BackoffBase, doubled with each further failure, at most
// BackoffMax.
func (p *Planner) Failed(node string, now time.Time) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	f := p.failures[node]
	f.count++
	d := p.cfg.BackoffBase
	for i := 1; i < f.count && d < p.cfg.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, p.cfg.BackoffMax)
	f.until = now.Add(d)
	p.failures[node] = f
	return d
}

// Succeeded clears a node's failure count.
func (p *Planner) Succeeded(node string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.failures, node)
}

// BackingOff reports whether the node is left alone at now after a failed
// run.
func (p *Planner) BackingOff(node string, now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return now.Before(p.failures[node].until)
}

func (p *Planner) modelLayouts(m *topology.Model) []layout {
	if l, ok := p.layouts[m.Name]; ok {
		return l
	}
	l := buildableLayouts(m)
	p.layouts[m.Name] = l
	return l
}

// pending is one pod of the demand during planning.
type pending struct {
	d   *Demand
	req *podrequest.Request
}

// nodeWork is one node during planning.
type nodeWork struct {
	in       *NodeState
	topo     *topology.Node
	state    *allocator.State
	gpuByID  map[string]int // device ID -> GPU position
	busy     []bool
	realBusy []bool // busy with devices pods hold (not virtual placements)
	draining []int  // GPU indexes the node's drain annotation lists
	virtual  []allocator.ResourceDevices
	free     map[string]int   // free devices per resource, changes applied
	capacity []map[string]int // per GPU position: what it advertises
	changed  map[int]*layout  // GPU position -> new layout
	capCache map[string]map[string]int
	eligible bool
	selected bool
	serves   []int // indexes into the residual list, in serving order
}

// Plan proposes per-GPU layouts for the pending pods. Bad input (a nil
// topology, an invalid node, allocations of unknown devices) leaves that
// node out and says why in Plan.Rejected; it is never a panic.
func (p *Planner) Plan(in Input) *Plan {
	p.mu.Lock()
	defer p.mu.Unlock()
	plan := &Plan{}

	// Pods old enough, highest priority first, then oldest.
	var pods []pending
	for i := range in.Pending {
		d := &in.Pending[i]
		if d.Request.Empty() {
			continue
		}
		if in.Now.Sub(d.Since) < p.cfg.MinDemandAge {
			plan.Young = append(plan.Young, d.Pod)
			continue
		}
		pods = append(pods, pending{d: d, req: d.Request})
	}
	sort.SliceStable(pods, func(i, j int) bool {
		a, b := pods[i].d, pods[j].d
		if a.Priority != b.Priority {
			return a.Priority > b.Priority
		}
		if !a.Since.Equal(b.Since) {
			return a.Since.Before(b.Since)
		}
		return a.Pod < b.Pod
	})

	inFlight := 0
	var nodes []*nodeWork
	for i := range in.Nodes {
		ns := &in.Nodes[i]
		if ns.Reconfiguring {
			inFlight++
		}
		nw, err := p.prepare(ns, in.Now)
		if err != nil {
			plan.Rejected = append(plan.Rejected, err.Error())
			continue
		}
		nodes = append(nodes, nw)
	}

	// Pods that fit now need no change; place them virtually so that the
	// devices they will take are not counted twice.
	var residual []pending
	for _, pd := range pods {
		if !migRequest(pd.req) {
			plan.Unserved = append(plan.Unserved, pd.d.Pod)
			continue
		}
		placed := false
		for _, nw := range nodes {
			if nw.in.Reconfiguring {
				continue
			}
			if len(nw.state.DrainConflicts(pd.req, nw.draining)) > 0 {
				continue
			}
			if pl, v := nw.state.Place(pd.req); v.OK() {
				nw.take(pl.Devices())
				placed = true
				break
			}
		}
		if placed {
			plan.FitNow = append(plan.FitNow, pd.d.Pod)
			continue
		}
		residual = append(residual, pd)
	}
	if len(residual) == 0 {
		p.planDrains(in.Now, nodes, nil, nil, plan, newStrandCache(p.cat, in.Mix))
		return plan
	}
	for _, nw := range nodes {
		nw.free = map[string]int{}
		for _, u := range nw.state.Usage() {
			nw.free[u.Resource] = u.Free
		}
	}

	served := make([]bool, len(residual))
	selected := 0
	sc := newStrandCache(p.cat, in.Mix)
	for {
		best := p.best(in.Now, nodes, residual, served, inFlight+selected, sc)
		if best == nil {
			break
		}
		nw := best.node
		if !nw.selected {
			nw.selected = true
			selected++
		}
		nw.apply(best.gpu, best.layout)
		for _, ri := range best.serves {
			served[ri] = true
			nw.serves = append(nw.serves, ri)
			for _, rc := range residual[ri].req.Effective {
				nw.free[rc.Name] -= rc.Count
			}
		}
	}

	for _, nw := range nodes {
		if !nw.selected {
			continue
		}
		np, err := p.verify(nw, residual)
		if err != nil {
			plan.Rejected = append(plan.Rejected, err.Error())
			for _, ri := range nw.serves {
				served[ri] = false
			}
			continue
		}
		plan.Nodes = append(plan.Nodes, *np)
	}
	p.planDrains(in.Now, nodes, residual, served, plan, sc)
	for ri, pd := range residual {
		if !served[ri] {
			plan.Unserved = append(plan.Unserved, pd.d.Pod)
		}
	}
	return plan
}

// migRequest reports whether the pod asks only for MIG devices (the only
// demand a layout change can serve; nvidia.com/gpu would need a MIG mode
// change).
func migRequest(req *podrequest.Request) bool {
	for _, rc := range req.Effective {
		if _, ok := topology.ProfileFromResource(rc.Name); !ok {
			return false
		}
	}
	return len(req.Effective) > 0
}

// prepare compiles a node with its allocations and decides which of its
// GPUs may change.
func (p *Planner) prepare(ns *NodeState, now time.Time) (*nodeWork, error) {
	t := ns.Topology
	if t == nil {
		return nil, fmt.Errorf("node without topology left out")
	}
	cn, err := allocator.Compile(t, p.cat, topology.PolicyDistributed)
	if err != nil {
		return nil, fmt.Errorf("node %s left out: %w", t.Name, err)
	}
	nw := &nodeWork{in: ns, topo: t, state: allocator.NewState(cn), gpuByID: map[string]int{}, busy: make([]bool, len(t.GPUs)),
		changed: map[int]*layout{}, capCache: map[string]map[string]int{}, capacity: make([]map[string]int, len(t.GPUs))}
	units, err := t.Units()
	if err != nil {
		return nil, fmt.Errorf("node %s left out: %w", t.Name, err)
	}
	for _, u := range units {
		nw.gpuByID[u.DeviceID] = u.GPU
	}
	for _, rd := range ns.Allocated {
		for _, id := range rd.DeviceIDs {
			gi, ok := nw.gpuByID[topology.BaseDeviceID(id)]
			if !ok {
				return nil, fmt.Errorf("node %s left out: allocated %s device %s is not advertised", t.Name, rd.Resource, id)
			}
			nw.busy[gi] = true
		}
	}
	if err := nw.state.Apply(ns.Allocated); err != nil {
		return nil, fmt.Errorf("node %s left out: %w", t.Name, err)
	}
	busyIdx := map[int]bool{}
	for _, i := range ns.BusyGPUs {
		busyIdx[i] = true
	}
	for _, i := range ns.Draining {
		if nw.position(i) >= 0 {
			nw.draining = append(nw.draining, i)
		}
	}
	for gi := range t.GPUs {
		g := &t.GPUs[gi]
		if busyIdx[g.Index] {
			nw.busy[gi] = true
		}
		if g.MIGEnabled {
			nw.capacity[gi] = nw.layoutCapacity(g.Product, g.MemoryMiB, g.Instances)
		}
	}
	nw.realBusy = append([]bool(nil), nw.busy...)
	nw.eligible = !ns.Reconfiguring && t.MIGStrategy == topology.MIGStrategyMixed &&
		(t.TimeSlicing == nil || !t.TimeSlicing.OneGPUPerRequest) && !now.Before(p.failures[t.Name].until) &&
		p.nodeRested(t.Name, now)
	return nw, nil
}

// nodeRested reports whether MinNodeInterval has passed since the node's
// last run was asked for.
func (p *Planner) nodeRested(node string, now time.Time) bool {
	last, ok := p.lastRun[node]
	return !ok || now.Sub(last) >= p.cfg.MinNodeInterval
}

// layoutCapacity is what one GPU with these instances advertises on this
// node (its time-slicing settings applied).
func (nw *nodeWork) layoutCapacity(product string, memMiB int64, instances []topology.GPUInstance) map[string]int {
	var key strings.Builder
	key.WriteString(product)
	for _, in := range instances {
		fmt.Fprintf(&key, "|%s@%d", in.Profile, in.Start)
	}
	if c, ok := nw.capCache[key.String()]; ok {
		return c
	}
	c64, err := oneGPUNode(product, memMiB, instances, nw.topo.TimeSlicing).Capacity()
	out := map[string]int{}
	if err == nil {
		for k, v := range c64 {
			out[k] = int(v)
		}
	}
	nw.capCache[key.String()] = out
	return out
}

// take records a virtual placement: its devices are used and its GPUs busy.
func (nw *nodeWork) take(devs []allocator.ResourceDevices) {
	_ = nw.state.Apply(devs) // Place predicted them on this state
	nw.virtual = append(nw.virtual, devs...)
	for _, rd := range devs {
		for _, id := range rd.DeviceIDs {
			if gi, ok := nw.gpuByID[topology.BaseDeviceID(id)]; ok {
				nw.busy[gi] = true
			}
		}
	}
}

// candidate reports whether GPU position gi may change at now.
func (p *Planner) candidate(nw *nodeWork, gi int, now time.Time) (*topology.Model, bool) {
	if nw.busy[gi] {
		return nil, false
	}
	return p.changeable(nw, gi, now)
}

// changeable reports whether GPU position gi may change at now once it
// is empty: its node takes changes, it did not change this round or within
// MinGPUInterval, and it is a healthy MIG GPU of a known model.
func (p *Planner) changeable(nw *nodeWork, gi int, now time.Time) (*topology.Model, bool) {
	if !nw.eligible {
		return nil, false
	}
	if _, done := nw.changed[gi]; done {
		return nil, false
	}
	g := &nw.topo.GPUs[gi]
	if !g.MIGEnabled || !g.Healthy {
		return nil, false
	}
	if last, ok := p.lastChange[gpuKey(nw.topo.Name, g.Index)]; ok && now.Sub(last) < p.cfg.MinGPUInterval {
		return nil, false
	}
	m, ok := p.cat.Lookup(g.Product)
	return m, ok
}

// currentCounts is a GPU's counts with the plan's change applied.
func (nw *nodeWork) currentCounts(gi int) map[string]int {
	if l, ok := nw.changed[gi]; ok {
		return l.counts
	}
	return topology.Counts(nw.topo.GPUs[gi].Instances)
}

// apply changes GPU position gi to l in the working free counts.
func (nw *nodeWork) apply(gi int, l *layout) {
	g := &nw.topo.GPUs[gi]
	for r, n := range nw.capacity[gi] {
		nw.free[r] -= n
	}
	nw.capacity[gi] = nw.layoutCapacity(g.Product, g.MemoryMiB, l.instances)
	for r, n := range nw.capacity[gi] {
		nw.free[r] += n
	}
	nw.changed[gi] = l
}

// serve lists the residual pods, in order, that the node's free devices
// serve with GPU position gi changed to l (a count per resource: the
// kubelet hands out any free device of a resource).
func (nw *nodeWork) serve(gi int, l *layout, residual []pending, served []bool) []int {
	g := &nw.topo.GPUs[gi]
	free := make(map[string]int, len(nw.free)+4)
	for r, n := range nw.free {
		free[r] = n
	}
	for r, n := range nw.capacity[gi] {
		free[r] -= n
	}
	for r, n := range nw.layoutCapacity(g.Product, g.MemoryMiB, l.instances) {
		free[r] += n
	}
	return serveFrom(free, residual, served)
}

// serveFrom lists the residual pods, in order, that the free devices
// serve; it consumes free.
func serveFrom(free map[string]int, residual []pending, served []bool) []int {
	var out []int
	for ri := range residual {
		if served[ri] {
			continue
		}
		fits := true
		for _, rc := range residual[ri].req.Effective {
			if free[rc.Name] < rc.Count {
				fits = false
				break
			}
		}
		if !fits {
			continue
		}
		for _, rc := range residual[ri].req.Effective {
			free[rc.Name] -= rc.Count
		}
		out = append(out, ri)
	}
	return out
}

type choice struct {
	node   *nodeWork
	gpu    int
	layout *layout
	serves []int
	// value counts the pods served per priority, highest priority first.
	value       []int
	strandDelta float64
}

// better reports whether a beats b under the fragmentation-aware strategy.
func better(a, b *choice) bool {
	if b == nil {
		return true
	}
	for i := range a.value {
		if a.value[i] != b.value[i] {
			return a.value[i] > b.value[i]
		}
	}
	if d := a.strandDelta - b.strandDelta; d < -1e-9 || d > 1e-9 {
		return d < 0
	}
	if a.node.selected != b.node.selected {
		return a.node.selected
	}
	return false
}

// best finds the next change: the one that serves most (highest priority
// first) and strands least for the mix, or, for FirstFit, the first that
// serves any pod. Nodes not yet selected are considered only while fewer
// than MaxNodesInFlight nodes reconfigure.
func (p *Planner) best(now time.Time, nodes []*nodeWork, residual []pending, served []bool, busyNodes int, sc *strandCache) *choice {
	prios := priorityLevels(residual)
	var best *choice
	for _, nw := range nodes {
		if !nw.eligible || (!nw.selected && busyNodes >= p.cfg.MaxNodesInFlight) {
			continue
		}
		seen := map[string]bool{}
		for gi := range nw.topo.GPUs {
			m, ok := p.candidate(nw, gi, now)
			if !ok {
				continue
			}
			g := &nw.topo.GPUs[gi]
			cur := topology.Counts(g.Instances)
			curKey := topology.FormatCounts(cur)
			if seen[g.Product+"|"+curKey] {
				continue
			}
			seen[g.Product+"|"+curKey] = true
			curStrand := 0.0
			if p.cfg.Strategy == FragmentationAware {
				curStrand = sc.stranded(g.Product, curKey, g.Instances)
			}
			for li := range p.modelLayouts(m) {
				l := &p.layouts[m.Name][li]
				if l.key == curKey {
					continue
				}
				sv := nw.serve(gi, l, residual, served)
				if len(sv) == 0 {
					continue
				}
				c := &choice{node: nw, gpu: gi, layout: l, serves: sv, value: make([]int, len(prios))}
				for _, ri := range sv {
					c.value[prios[residual[ri].d.Priority]]++
				}
				if p.cfg.Strategy == FirstFit {
					return c
				}
				c.strandDelta = sc.stranded(g.Product, l.key, l.instances) - curStrand
				if better(c, best) {
					best = c
				}
			}
		}
	}
	return best
}

// priorityLevels maps each priority of the residual pods to its rank,
// highest first.
func priorityLevels(residual []pending) map[int32]int {
	var ps []int32
	seen := map[int32]bool{}
	for _, pd := range residual {
		if !seen[pd.d.Priority] {
			seen[pd.d.Priority] = true
			ps = append(ps, pd.d.Priority)
		}
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i] > ps[j] })
	out := make(map[int32]int, len(ps))
	for i, pr := range ps {
		out[pr] = i
	}
	return out
}
