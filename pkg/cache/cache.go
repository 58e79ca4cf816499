package cache

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/gpuslice/gpuslice/pkg/allocator"
	"github.com/gpuslice/gpuslice/pkg/podrequest"
	"github.com/gpuslice/gpuslice/pkg/topology"
)

// Cache holds every GPU node's allocations. It is safe for concurrent use.
type Cache struct {
	opts Options

	mu      sync.RWMutex
	nodes   map[string]*nodeEntry
	podNode map[types.UID]string
	seq     uint64
}

type nodeEntry struct {
	mu         sync.Mutex
	name       string
	topo       *Topology
	compiled   *allocator.Node
	compileErr error
	heartbeat  time.Time
	hasLease   bool
	// blocked says why the node takes no GPU pods whatever its heartbeat's
	// age ("" when its topology is Ready and valid and it has a Lease); kept
	// by setBlocked whenever topo, compileErr or hasLease change, so that
	// View, called for every node in every scheduling cycle, only checks the
	// heartbeat's age.
	blocked string
	cause   Cause
	pods    map[types.UID]*podRecord
	snap    *allocator.State
	gen     uint64
	// cur is what View reads, without e.mu: snap, gen, blocked and
	// heartbeat as of their last change (see publish). Filter reads it for
	// hundreds of nodes per pod, from several goroutines at once.
	cur atomic.Pointer[published]
	// unplaced counts records whose devices could not be placed without
	// double-booking; they hold nothing.
	unplaced int
	// observer is the cache's Options.Observer (nil: none).
	observer Observer
}

type podRecord struct {
	uid             types.UID
	namespace, name string
	phase           Phase
	req             *podrequest.Request
	// claimed is the reservation or the assignment annotation.
	claimed   *allocator.Placement
	devices   []allocator.ResourceDevices
	predicted bool
	order     uint64
}

// New returns an empty cache.
func New(opts Options) *Cache {
	if opts.Catalog == nil {
		opts.Catalog = topology.NewCatalog()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Cache{opts: opts, nodes: map[string]*nodeEntry{}, podNode: map[types.UID]string{}}
}

// entry returns the node's entry, creating it when create is set. The caller
// holds c.mu (write lock when create is set).
func (c *Cache) entry(name string, create bool) *nodeEntry {
	e := c.nodes[name]
	if e == nil && create {
		e = &nodeEntry{name: name, pods: map[types.UID]*podRecord{}, observer: c.opts.Observer}
		e.setBlocked()
		c.nodes[name] = e
	}
	return e
}

// SetTopology records what the node's exporter published.
func (c *Cache) SetTopology(name string, t *Topology) {
	c.mu.Lock()
	e := c.entry(name, true)
	c.mu.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	if t != nil && e.topo != nil && !newerVersion(t.ResourceVersion, e.topo.ResourceVersion) {
		return // seen already (the hint or the informer was first)
	}
	e.topo = t
	e.compiled, e.compileErr = nil, nil
	if t == nil || t.Node == nil {
		e.compileErr = fmt.Errorf("empty topology")
	} else if t.Node.Name != name {
		e.compileErr = fmt.Errorf("topology names node %q", t.Node.Name)
	} else {
		e.compiled, e.compileErr = allocator.Compile(t.Node, c.opts.Catalog, c.opts.DefaultPolicy)
	}
	e.setBlocked()
	e.rebuild()
}

// RemoveTopology forgets a node's topology; the node takes no GPU pods until
// its exporter publishes again.
func (c *Cache) RemoveTopology(name string) {
	c.mu.RLock()
	e := c.entry(name, false)
	c.mu.RUnlock()
	if e == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.topo, e.compiled, e.compileErr = nil, nil, nil
	e.setBlocked()
	e.rebuild()
}

// SetHeartbeat records the renew time of the node exporter's Lease.
func (c *Cache) SetHeartbeat(name string, renew time.Time) {
	c.mu.Lock()
	e := c.entry(name, true)
	c.mu.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.hasLease && renew.Before(e.heartbeat) {
		return // an older renewal arriving late (see Topology.ResourceVersion)
	}
	e.heartbeat, e.hasLease = renew, true
	e.setBlocked()
}

// TopologyVersion is the resource version of the node's topology, "" when
// it has none or it was set without one.
func (c *Cache) TopologyVersion(name string) string {
	c.mu.RLock()
	e := c.entry(name, false)
	c.mu.RUnlock()
	if e == nil {
		return ""
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.topo == nil {
		return ""
	}
	return e.topo.ResourceVersion
}

// newerVersion reports whether resource version v is newer than old. The
// API server's resource versions are etcd revisions, so that for one
// object a later write has a larger number (the scheduler's assume cache
// compares them the same way); an empty or non-numeric version counts as
// newer, so that callers without versions always apply.
func newerVersion(v, old string) bool {
	n, err1 := strconv.ParseUint(v, 10, 64)
	o, err2 := strconv.ParseUint(old, 10, 64)
	if err1 != nil || err2 != nil {
		return true
	}
	return n > o
}

// Behind reports whether the cache holds no topology of the node, or one
// older than resource version v (the version the node's exporter says it
// published last).
func (c *Cache) Behind(name, v string) bool {
	cur := c.TopologyVersion(name)
	return cur == "" || (cur != v && newerVersion(v, cur))
}

// RemoveHeartbeat forgets the node's Lease.
func (c *Cache) RemoveHeartbeat(name string) {
	c.mu.RLock()
	e := c.entry(name, false)
	c.mu.RUnlock()
	if e == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.hasLease = false
	e.setBlocked()
}

// View returns the node's current snapshot and whether it may take GPU pods.
func (c *Cache) View(name string) NodeView {
	c.mu.RLock()
	e := c.entry(name, false)
	c.mu.RUnlock()
	if e == nil {
		return NodeView{Freshness: UnknownNode(name)}
	}
	return c.view(e)
}

// UnknownNode is the freshness of a node the cache knows nothing of.
func UnknownNode(name string) Freshness {
	return Freshness{Reason: noTopology(name), Cause: CauseNoTopology}
}

func noTopology(name string) string {
	return fmt.Sprintf("no GPU topology published for node %s (is the gpuslice exporter running there?)", name)
}

func (c *Cache) view(e *nodeEntry) NodeView {
	p := e.cur.Load()
	return NodeView{State: p.snap, Freshness: p.freshness(e.name, c.opts.Now(), c.opts.StaleAfter), Generation: p.gen}
}

// published is an immutable copy of what a node's view is made of.
type published struct {
	snap      *allocator.State
	gen       uint64
	blocked   string
	cause     Cause
	heartbeat time.Time
}

// publish makes the entry's current state what View sees. The caller holds
// e.mu (or e is not shared yet) and calls it after every change of snap,
// gen, blocked or heartbeat: setBlocked, rebuild and Assume do.
func (e *nodeEntry) publish() {
	e.cur.Store(&published{snap: e.snap, gen: e.gen, blocked: e.blocked, cause: e.cause, heartbeat: e.heartbeat})
}

// Handle is a node's entry, looked up once. The cache never drops or
// replaces an entry, so a handle stays valid for the cache's life, and a
// View through it costs no lookup by name and takes no lock: the scheduler
// plugin keeps one per node for Filter, which runs for hundreds of nodes per
// pod.
type Handle struct {
	c *Cache
	e *nodeEntry
}

// Handle returns the node's handle; false while the cache knows nothing of
// the node (no topology, heartbeat or pod seen), which then takes no GPU
// pods (View says why). It adds no entry: the scheduler looks up every node
// of the cluster, CPU-only ones included, and nodes come and go.
func (c *Cache) Handle(name string) (Handle, bool) {
	c.mu.RLock()
	e := c.entry(name, false)
	c.mu.RUnlock()
	if e == nil {
		return Handle{}, false
	}
	return Handle{c: c, e: e}, true
}

// View is Cache.View of the handle's node.
func (h Handle) View() NodeView { return h.c.view(h.e) }

// freshness says whether the node may take GPU pods at now.
func (p *published) freshness(node string, now time.Time, staleAfter time.Duration) Freshness {
	if p.blocked != "" {
		return Freshness{Reason: p.blocked, Cause: p.cause}
	}
	if staleAfter > 0 && now.Sub(p.heartbeat) > staleAfter {
		return Freshness{Reason: fmt.Sprintf("GPU topology of node %s is stale: last exporter heartbeat %s ago (limit %s)",
			node, now.Sub(p.heartbeat).Round(time.Second), staleAfter), Cause: CauseStale}
	}
	return Freshness{Usable: true}
}

// setBlocked recomputes e.blocked and publishes. The caller holds e.mu (or
// e is not shared yet).
func (e *nodeEntry) setBlocked() {
	switch {
	case e.topo == nil:
		e.blocked, e.cause = noTopology(e.name), CauseNoTopology
	case e.compileErr != nil:
		e.blocked, e.cause = fmt.Sprintf("GPU topology of node %s is invalid: %v", e.name, e.compileErr), CauseInvalid
	case e.topo.State == "Reconfiguring":
		e.blocked, e.cause = fmt.Sprintf("node %s is reconfiguring MIG: %s", e.name, e.topo.Message), CauseReconfiguring
	case e.topo.State == "Degraded":
		e.blocked, e.cause = fmt.Sprintf("GPU topology of node %s is degraded: %s", e.name, e.topo.Message), CauseDegraded
	case e.topo.State != "Ready":
		e.blocked, e.cause = fmt.Sprintf("GPU topology of node %s is in unknown state %q", e.name, e.topo.State), CauseUnknownState
	case !e.hasLease:
		e.blocked, e.cause = fmt.Sprintf("no heartbeat from the gpuslice exporter on node %s", e.name), CauseNoHeartbeat
	default:
		e.blocked, e.cause = "", ""
	}
	e.publish()
}

// PodUpdate is what the cache needs of a pod from the informer.
type PodUpdate struct {
	UID             types.UID
	Namespace, Name string
	// Node is spec.nodeName; empty while the pod is pending.
	Node string
	// Request is the pod's GPU request; nil or empty pods are not tracked.
	Request *podrequest.Request
	// Assignment is the decoded gpuslice.io/assignment annotation, if any.
	Assignment *allocator.Placement
	// Terminated is true for pods in phase Succeeded or Failed, or being
	// deleted with no running containers: the kubelet frees their devices.
	Terminated bool
}

// UpsertPod records a pod's current state.
func (c *Cache) UpsertPod(u PodUpdate) {
	if u.Terminated || u.Request.Empty() {
		c.RemovePod(u.UID)
		return
	}
	c.mu.Lock()
	oldNode, known := c.podNode[u.UID]
	if u.Node == "" {
		c.mu.Unlock()
		// Pending: keep an assumption of ours, drop anything else.
		if known {
			if e := c.lockedEntry(oldNode); e != nil {
				if r := e.pods[u.UID]; r != nil && r.phase != Assumed {
					delete(e.pods, u.UID)
					e.rebuild()
					c.dropIndex(u.UID, oldNode)
				}
				e.mu.Unlock()
			}
		}
		return
	}
	if known && oldNode != u.Node {
		c.mu.Unlock()
		c.RemovePod(u.UID)
		c.mu.Lock()
	}
	c.podNode[u.UID] = u.Node
	e := c.entry(u.Node, true)
	c.seq++
	seq := c.seq
	c.mu.Unlock()

	e.mu.Lock()
	defer e.mu.Unlock()
	r := e.pods[u.UID]
	if r != nil && r.phase == Assumed && (u.Assignment == nil || samePlacement(u.Assignment, r.claimed)) {
		// The bind of a pod this scheduler reserved: same devices, so the
		// snapshot stays as it is (no rebuild on every bind).
		r.namespace, r.name, r.req, r.phase = u.Namespace, u.Name, u.Request, Bound
		return
	}
	if r == nil {
		r = &podRecord{uid: u.UID, order: seq}
		e.pods[u.UID] = r
	}
	r.namespace, r.name, r.req = u.Namespace, u.Name, u.Request
	if r.phase == 0 || r.phase == Assumed {
		r.phase = Bound
	}
	if u.Assignment != nil && u.Assignment.Node == u.Node {
		r.claimed = u.Assignment
	}
	e.rebuild()
}

// RemovePod forgets a pod (deleted, terminated, or no longer asking for GPUs).
func (c *Cache) RemovePod(uid types.UID) {
	c.mu.Lock()
	node, ok := c.podNode[uid]
	delete(c.podNode, uid)
	e := c.entry(node, false)
	c.mu.Unlock()
	if !ok || e == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, had := e.pods[uid]; had {
		delete(e.pods, uid)
		e.rebuild()
	}
}

func (c *Cache) lockedEntry(name string) *nodeEntry {
	c.mu.RLock()
	e := c.entry(name, false)
	c.mu.RUnlock()
	if e != nil {
		e.mu.Lock()
	}
	return e
}

func (c *Cache) dropIndex(uid types.UID, node string) {
	c.mu.Lock()
	if c.podNode[uid] == node {
		delete(c.podNode, uid)
	}
	c.mu.Unlock()
}

// Assume reserves a placement for a pod on a node: the scheduling cycle's
// Reserve. It fails, changing nothing, when any device of the placement is
// no longer free (another cycle or an informer update took it) or the pod is
// already placed.
func (c *Cache) Assume(uid types.UID, namespace, name string, req *podrequest.Request, p *allocator.Placement) error {
	node := p.Node
	c.mu.Lock()
	if other, ok := c.podNode[uid]; ok {
		c.mu.Unlock()
		return fmt.Errorf("pod %s/%s already has devices on node %s", namespace, name, other)
	}
	e := c.entry(node, false)
	if e == nil {
		c.mu.Unlock()
		return fmt.Errorf("node %s has no GPU topology", node)
	}
	c.podNode[uid] = node
	c.seq++
	seq := c.seq
	c.mu.Unlock()

	e.mu.Lock()
	defer e.mu.Unlock()
	fail := func(err error) error {
		c.dropIndex(uid, node)
		return err
	}
	if e.snap == nil {
		return fail(fmt.Errorf("node %s has no usable GPU topology", node))
	}
	next := e.snap.Clone()
	devs := p.Devices()
	if err := next.Apply(devs); err != nil {
		return fail(fmt.Errorf("reserve on node %s: %w", node, err))
	}
	e.pods[uid] = &podRecord{uid: uid, namespace: namespace, name: name, phase: Assumed, req: req, claimed: p, devices: devs, predicted: true, order: seq}
	e.snap = next
	e.gen++
	e.publish()
	return nil
}

// Forget drops a reservation that did not lead to a binding (Unreserve),
// reporting whether there was one. It leaves bound and confirmed pods
// alone.
func (c *Cache) Forget(uid types.UID) bool {
	c.mu.RLock()
	node, ok := c.podNode[uid]
	c.mu.RUnlock()
	if !ok {
		return false
	}
	e := c.lockedEntry(node)
	if e == nil {
		return false
	}
	defer e.mu.Unlock()
	if r := e.pods[uid]; r == nil || r.phase != Assumed {
		return false
	}
	delete(e.pods, uid)
	e.rebuild()
	c.dropIndex(uid, node)
	return true
}

// Pod returns a pod's record.
func (c *Cache) Pod(uid types.UID) (PodInfo, bool) {
	c.mu.RLock()
	node, ok := c.podNode[uid]
	c.mu.RUnlock()
	if !ok {
		return PodInfo{}, false
	}
	e := c.lockedEntry(node)
	if e == nil {
		return PodInfo{}, false
	}
	defer e.mu.Unlock()
	r := e.pods[uid]
	if r == nil {
		return PodInfo{}, false
	}
	return PodInfo{UID: uid, Namespace: r.namespace, Name: r.name, Node: e.name, Phase: r.phase, Devices: r.devices, Predicted: r.predicted}, true
}

// PodsOn returns the records of the pods the cache holds on a node, in the
// order it gives them devices.
func (c *Cache) PodsOn(node string) []PodInfo {
	e := c.lockedEntry(node)
	if e == nil {
		return nil
	}
	defer e.mu.Unlock()
	records := make([]*podRecord, 0, len(e.pods))
	for _, r := range e.pods {
		records = append(records, r)
	}
	sort.Slice(records, func(i, j int) bool { return records[i].order < records[j].order })
	out := make([]PodInfo, 0, len(records))
	for _, r := range records {
		out = append(out, PodInfo{UID: r.uid, Namespace: r.namespace, Name: r.name, Node: e.name, Phase: r.phase, Devices: r.devices, Predicted: r.predicted})
	}
	return out
}

// Nodes lists the names of the nodes the cache knows, sorted.
func (c *Cache) Nodes() []string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]string, 0, len(c.nodes))
	for n := range c.nodes {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// HasTopology reports whether the node's exporter has published a topology
// the cache holds (valid or not, fresh or stale).
func (c *Cache) HasTopology(name string) bool {
	e := c.lockedEntry(name)
	if e == nil {
		return false
	}
	defer e.mu.Unlock()
	return e.topo != nil
}

// Unplaced reports how many pods on the node could not be given devices
// without double-booking (a sign that the node's topology changed under them).
func (c *Cache) Unplaced(name string) int {
	e := c.lockedEntry(name)
	if e == nil {
		return 0
	}
	defer e.mu.Unlock()
	return e.unplaced
}

// samePlacement reports whether two placements name the same devices per
// container.
func samePlacement(a, b *allocator.Placement) bool {
	if a == nil || b == nil || a.Node != b.Node || len(a.Containers) != len(b.Containers) {
		return a == b
	}
	for i := range a.Containers {
		ca, cb := &a.Containers[i], &b.Containers[i]
		if ca.Name != cb.Name || len(ca.Devices) != len(cb.Devices) {
			return false
		}
		for j := range ca.Devices {
			da, db := &ca.Devices[j], &cb.Devices[j]
			if da.Resource != db.Resource || !slices.Equal(da.DeviceIDs, db.DeviceIDs) {
				return false
			}
		}
	}
	return true
}
