package nodetaint

import (
	"context"
	"errors"
	"fmt"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
)

// Options configure a Controller.
type Options struct {
	Client kubernetes.Interface
	// Nodes is the Node informer (the scheduler's shared one).
	Nodes coreinformers.NodeInformer
	// Status is gpuslice's view of a node (the scheduler's node cache).
	Status func(node string) Status
	// Grace is how long after its creation a node is left untainted while
	// it is not yet usable (see Decide).
	Grace time.Duration
	// Resync is how often every node is judged again: a heartbeat goes
	// stale with time alone, without an event.
	Resync time.Duration
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Controller keeps the taint of every node in line with Decide.
type Controller struct {
	o      Options
	lister corelisters.NodeLister
	synced toolscache.InformerSynced
	queue  workqueue.TypedRateLimitingInterface[string]

	// written remembers, per node, the action of the controller's last
	// write and the resourceVersion it was made on. While the informer's
	// copy still has that version it has not seen the write: the node is
	// not judged again on it (one worker: no lock needed).
	written map[string]write
}

type write struct {
	action Action
	base   string
}

// New returns a controller; call Run. Its event handler is registered at
// once, so the informer must not have been started without it being
// acceptable that the first sync enqueues every node.
func New(o Options) (*Controller, error) {
	switch {
	case o.Client == nil:
		return nil, errors.New("nodetaint: no client")
	case o.Nodes == nil:
		return nil, errors.New("nodetaint: no node informer")
	case o.Status == nil:
		return nil, errors.New("nodetaint: no status function")
	case o.Grace < 0:
		return nil, fmt.Errorf("nodetaint: negative grace %s", o.Grace)
	case o.Resync <= 0:
		return nil, fmt.Errorf("nodetaint: resync %s, want > 0", o.Resync)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	c := &Controller{
		written: map[string]write{},
		o:       o,
		lister:  o.Nodes.Lister(),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "gpuslice-nodetaint"}),
	}
	reg, err := o.Nodes.Informer().AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueueObj,
		UpdateFunc: func(_, obj any) { c.enqueueObj(obj) },
	})
	if err != nil {
		return nil, fmt.Errorf("nodetaint: node handler: %w", err)
	}
	c.synced = reg.HasSynced
	return c, nil
}

func (c *Controller) enqueueObj(obj any) {
	if n, ok := obj.(*v1.Node); ok {
		c.queue.Add(n.Name)
	}
}

// Enqueue asks for a node to be judged again (its GPUNode or Lease changed).
func (c *Controller) Enqueue(node string) { c.queue.Add(node) }

// Run judges nodes until ctx ends: on node events, on Enqueue, and every
// node each Resync.
func (c *Controller) Run(ctx context.Context) {
	logger := klog.FromContext(ctx).WithName("nodetaint")
	defer c.queue.ShutDown()
	if !toolscache.WaitForCacheSync(ctx.Done(), c.synced) {
		return
	}
	logger.Info("Keeping the GPU-unusable taint of GPU nodes", "taint", Key, "grace", c.o.Grace, "resync", c.o.Resync)
	go wait.UntilWithContext(ctx, func(context.Context) {
		nodes, err := c.lister.List(everything)
		if err != nil {
			return
		}
		for _, n := range nodes {
			c.queue.Add(n.Name)
		}
	}, c.o.Resync)
	go func() {
		for c.processNext(klog.NewContext(ctx, logger)) {
		}
	}()
	<-ctx.Done()
}

func (c *Controller) processNext(ctx context.Context) bool {
	name, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(name)
	if err := c.sync(ctx, name); err != nil {
		klog.FromContext(ctx).Error(err, "Syncing the GPU-unusable taint", "node", name)
		c.queue.AddRateLimited(name)
		return true
	}
	c.queue.Forget(name)
	return true
}

// sync judges one node and writes its taints when they must change.
func (c *Controller) sync(ctx context.Context, name string) error {
	node, err := c.lister.Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	st := c.o.Status(name)
	action, reason := Decide(node, st, c.o.Now(), c.o.Grace)
	if action == Keep {
		return nil
	}
	if w, ok := c.written[name]; ok && w.action == action && w.base == node.ResourceVersion {
		return nil // our own write, not in the informer's copy yet
	}
	logger := klog.FromContext(ctx)
	first := true
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur := node
		if !first {
			// The cached copy was stale: judge the node as the API has it.
			fresh, err := c.o.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			cur = fresh
			if action, reason = Decide(cur, c.o.Status(name), c.o.Now(), c.o.Grace); action == Keep {
				return nil
			}
		}
		first = false
		taints, changed := apply(cur.Spec.Taints, action, reason)
		if !changed {
			return nil
		}
		upd := cur.DeepCopy()
		upd.Spec.Taints = taints
		if _, err := c.o.Client.CoreV1().Nodes().Update(ctx, upd, metav1.UpdateOptions{}); err != nil {
			return err
		}
		c.written[name] = write{action: action, base: cur.ResourceVersion}
		if action == Add {
			logger.Info("Tainted GPU node that gpuslice cannot use", "node", name, "taint", Key, "value", reason, "why", st.Reason)
		} else {
			logger.Info("Removed GPU-unusable taint: node usable again", "node", name, "taint", Key)
		}
		return nil
	})
}

var everything = labels.Everything()
