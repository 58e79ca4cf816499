package gpuslice

import (
	"context"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"

	gpusliceapi "github.com/gpuslice/gpuslice/pkg/apis/gpuslice/v1alpha1"
	versioned "github.com/gpuslice/gpuslice/pkg/generated/clientset/versioned"
)

const (
	// catchUpTimeout bounds one direct read of a GPUNode.
	catchUpTimeout = 5 * time.Second
	// catchUpWorkers read lagging GPUNodes at once, at most.
	catchUpWorkers = 4
)

// catchUp reads a node's GPUNode directly when the node's exporter Lease
// names a newer GPUNode version than the cache holds, and feeds it to the
// cache.
//
// Why: the cache's GPUNode watch can lag the API by up to about a minute.
// After an API server restart client-go's reflector retries the failed
// watch and list with an exponential backoff (0.8 s doubling to 30 s,
// jittered, reset only after two quiet minutes), and a custom resource is
// not served for a moment after the API server starts, so a second restart
// within minutes finds the GPUNode reflector far into its backoff. Meanwhile
// the cache counts the devices of pods that have left (the old GPUNode still
// reports them), and pods that fit wait. The Lease, renewed every heartbeat
// and a built-in resource, carries the version (see
// gpusliceapi.LeaseGPUNodeVersionAnnotation): one read per node heals the
// lag, whatever its cause (a backoff, an expired watch, a dropped event).
// A Lease event that overtakes its GPUNode's own event costs one spare read.
//
// The reads run off the event handlers, on a few workers behind a
// deduplicating queue: after an API server restart every node of a large
// cluster may be behind at once, and the scheduler's event handling must
// not wait on thousands of reads. A pod that the stale cache turned away is
// woken by its node's next Lease renewal after the read (unannounced).
type catchUp struct {
	client versioned.Interface
	shared *Shared
	queue  workqueue.TypedRateLimitingInterface[string]

	// synced reports whether the GPUNode informer has listed once (nil:
	// yes); before that a Lease ahead of its GPUNode is the initial list,
	// not a lag.
	synced func() bool

	mu   sync.Mutex
	want map[string]string // node -> newest version a Lease named
}

func newCatchUp(client versioned.Interface, s *Shared) *catchUp {
	return &catchUp{
		client: client, shared: s,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](), workqueue.TypedRateLimitingQueueConfig[string]{Name: "gpuslice-gpunode-catch-up"}),
		want:  map[string]string{},
	}
}

// observe looks at a Lease: when it names a GPUNode version newer than the
// cache holds, the node's GPUNode is read (soon, on a worker).
func (c *catchUp) observe(l *coordinationv1.Lease) {
	v := l.Annotations[gpusliceapi.LeaseGPUNodeVersionAnnotation]
	if c == nil || v == "" || (c.synced != nil && !c.synced()) || !c.shared.cache.Behind(l.Name, v) {
		return
	}
	c.mu.Lock()
	c.want[l.Name] = v
	c.mu.Unlock()
	c.queue.Add(l.Name)
}

// run works the queue until ctx ends.
func (c *catchUp) run(ctx context.Context) {
	go func() {
		<-ctx.Done()
		c.queue.ShutDown()
	}()
	var wg sync.WaitGroup
	for range catchUpWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c.next(ctx) {
			}
		}()
	}
	wg.Wait()
}

func (c *catchUp) next(ctx context.Context) bool {
	node, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(node)
	if c.read(ctx, node) {
		c.queue.Forget(node)
	} else {
		c.queue.AddRateLimited(node)
	}
	return true
}

// read reads the node's GPUNode if the cache is still behind the version
// its Lease named; false when the read failed (to be retried).
func (c *catchUp) read(ctx context.Context, node string) bool {
	c.mu.Lock()
	v := c.want[node]
	c.mu.Unlock()
	if v == "" || !c.shared.cache.Behind(node, v) {
		return true
	}
	logger := klog.FromContext(ctx).WithName(Name)
	rctx, cancel := context.WithTimeout(ctx, catchUpTimeout)
	defer cancel()
	gn, err := c.client.GpusliceV1alpha1().GPUNodes().Get(rctx, node, metav1.GetOptions{})
	if err != nil {
		c.shared.metrics.catchUp("failed")
		logger.V(2).Info("Reading a lagging GPUNode failed", "node", node, "version", v, "err", err)
		return ctx.Err() != nil
	}
	before := c.shared.cache.TopologyVersion(node)
	c.shared.onGPUNode(gn)
	if c.shared.cache.TopologyVersion(node) == before {
		c.shared.metrics.catchUp("not_newer")
		return true
	}
	c.mu.Lock()
	if c.want[node] == v {
		delete(c.want, node)
	}
	c.mu.Unlock()
	c.shared.metrics.catchUp("caught_up")
	logger.Info("GPUNode watch lags the exporter's Lease; read the GPUNode directly", "node", node, "had", before, "read", gn.ResourceVersion)
	return true
}

// unannounced records the nodes whose GPUNode the cache took from the
// plugin's own informer or a catch-up read, and when, until a queueing hint
// sees that version too. The pods the old version turned away wait for a
// GPUNode event of the framework's informer, which may lag the plugin's
// (each watch retries on its own backoff after an API server restart) or
// never come for a version the catch-up read; meanwhile the node's Lease
// renewals wake them (hintLease), within window of the change.
type unannounced struct {
	mu     sync.Mutex
	at     map[string]time.Time
	window time.Duration
	now    func() time.Time
}

func (u *unannounced) note(node string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.at == nil {
		u.at = map[string]time.Time{}
	}
	u.at[node] = u.clock()
}

// seen: a queueing hint saw the version the cache holds.
func (u *unannounced) seen(node string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	delete(u.at, node)
}

// pending reports whether the node's cache changed within the window with
// no queueing hint seeing it.
func (u *unannounced) pending(node string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	at, ok := u.at[node]
	if ok && u.clock().Sub(at) > u.window {
		delete(u.at, node)
		return false
	}
	return ok
}

func (u *unannounced) clock() time.Time {
	if u.now != nil {
		return u.now()
	}
	return time.Now()
}
