package gpuslice

import (
	"context"
	"fmt"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"

	"github.com/gpuslice/gpuslice/pkg/allocator"
	"github.com/gpuslice/gpuslice/pkg/apis/config"
	gpusliceapi "github.com/gpuslice/gpuslice/pkg/apis/gpuslice/v1alpha1"
	"github.com/gpuslice/gpuslice/pkg/assignment"
	"github.com/gpuslice/gpuslice/pkg/cache"
	"github.com/gpuslice/gpuslice/pkg/deletioncost"
	versioned "github.com/gpuslice/gpuslice/pkg/generated/clientset/versioned"
	gpusliceinformers "github.com/gpuslice/gpuslice/pkg/generated/informers/externalversions"
	"github.com/gpuslice/gpuslice/pkg/nodetaint"
	"github.com/gpuslice/gpuslice/pkg/podrequest"
	"github.com/gpuslice/gpuslice/pkg/topology"
)

// syncTimeout bounds how long start-up waits for the informers.
const syncTimeout = 2 * time.Minute

// Shared is the state all profiles of one scheduler process share: the node
// cache and the informers that feed it, and the learned workload mix. Create
// it once in main and pass its New method to app.WithPlugin.
type Shared struct {
	mu      sync.Mutex
	cache   *cache.Cache
	catalog *topology.Catalog
	mix     *allocator.MixLearner
	args    *config.GPUSliceArgs
	client  kubernetes.Interface
	// catchUps reads GPUNodes directly when the watch lags (catchup.go);
	// nil offline. unannounced: nodes whose GPUNode the cache took from the
	// plugin's informer or a catch-up read, not yet from a queueing hint.
	catchUps    *catchUp
	unannounced unannounced
	synced      []toolscache.InformerSynced
	// memos are the profiles' memos, told when a node's GPUNode goes away.
	memos []*memo
	// truth rewrites predicted assignments with the kubelet's devices (nil
	// offline and in unit tests).
	truth *truthWriter
	// badAnnotations maps the UID of a pod whose assignment annotation was
	// ignored to the value ignored, so that each bad value is logged once.
	badAnnotations sync.Map
	// taints keeps the GPU-unusable taint (nil unless a profile sets
	// taintUnusableNodes).
	taints *nodetaint.Controller
	// costs keeps the pod-deletion-cost of our ReplicaSet pods (nil unless
	// a profile sets deletionCost).
	costs *deletioncost.Controller
	// metrics and obs: what operators see (metrics.go, observe.go); nil in
	// offline use.
	metrics *Metrics
	obs     *observer
	// demand holds the MIG demand of pending pods (demand.go); demandOut
	// writes it onto them (nil offline and in unit tests).
	demand    *demandRecorder
	demandOut *demandWriter
	// clock is the demand records' clock (nil: time.Now).
	clock func() time.Time
}

// addMemo registers a profile's memo.
func (s *Shared) addMemo(m *memo) {
	s.mu.Lock()
	s.memos = append(s.memos, m)
	s.mu.Unlock()
}

// forgetNode drops a node's entries from every profile's memo.
func (s *Shared) forgetNode(name string) {
	s.mu.Lock()
	memos := s.memos
	s.mu.Unlock()
	for _, m := range memos {
		m.forget(name)
	}
}

// NewShared returns uninitialised shared state; the first profile's New
// initialises it.
func NewShared() *Shared {
	m := NewMetrics()
	return &Shared{catalog: topology.NewCatalog(), metrics: m, obs: newObserver(m, nil), demand: newDemandRecorder(m)}
}

// Metrics returns the plugin's metrics, for the caller to register
// (gpuslice-scheduler: in kube-scheduler's registry). Nil for offline
// shared state.
func (s *Shared) Metrics() *Metrics { return s.metrics }

// init builds the cache and starts its informers on the first call; later
// calls check that the profile's args agree on what the cache depends on.
func (s *Shared) init(ctx context.Context, h fwk.Handle, args *config.GPUSliceArgs) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cache != nil && s.args == nil {
		// Offline: the caller feeds the cache (NewSharedOffline).
		s.args = args
		s.mix = allocator.NewMixLearner(int(args.ScoringStrategy.MixHalfLife), 64)
		return nil
	}
	if s.cache != nil {
		switch {
		case args.HeartbeatTimeout != s.args.HeartbeatTimeout:
			return fmt.Errorf("all profiles must share heartbeatTimeout (%s vs %s)", args.HeartbeatTimeout.Duration, s.args.HeartbeatTimeout.Duration)
		case args.DefaultAllocationPolicy != s.args.DefaultAllocationPolicy:
			return fmt.Errorf("all profiles must share defaultAllocationPolicy (%s vs %s)", args.DefaultAllocationPolicy, s.args.DefaultAllocationPolicy)
		case args.LeaseNamespace != s.args.LeaseNamespace:
			return fmt.Errorf("all profiles must share leaseNamespace (%s vs %s)", args.LeaseNamespace, s.args.LeaseNamespace)
		}
		return s.startControllers(ctx, h, args)
	}
	logger := klog.FromContext(ctx).WithName(Name)
	start := time.Now()
	s.args = args
	s.client = h.ClientSet()
	s.mix = allocator.NewMixLearner(int(args.ScoringStrategy.MixHalfLife), 64)
	opts := cache.Options{
		Catalog:       s.catalog,
		DefaultPolicy: topology.AllocationPolicy(args.DefaultAllocationPolicy),
		StaleAfter:    args.HeartbeatTimeout.Duration,
	}
	if s.obs != nil {
		opts.Observer = s.obs
		if r := h.EventRecorder(); r != nil {
			s.obs.setRecorder(r)
		}
	}
	s.cache = cache.New(opts)
	nodeLister := h.SharedInformerFactory().Core().V1().Nodes().Lister()

	podReg, err := h.SharedInformerFactory().Core().V1().Pods().Informer().AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { s.onPod(logger, obj) },
		UpdateFunc: func(_, obj any) { s.onPod(logger, obj) },
		DeleteFunc: func(obj any) { s.onPodDelete(obj) },
	})
	if err != nil {
		return fmt.Errorf("pod handler: %w", err)
	}

	gpuClient, err := versioned.NewForConfig(h.KubeConfig())
	if err != nil {
		return fmt.Errorf("gpuslice client: %w", err)
	}
	s.catchUps = newCatchUp(gpuClient, s)
	s.unannounced.window = args.HeartbeatTimeout.Duration
	gpuFactory := gpusliceinformers.NewSharedInformerFactory(gpuClient, 0)
	gpuReg, err := gpuFactory.Gpuslice().V1alpha1().GPUNodes().Informer().AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { s.onGPUNode(obj) },
		UpdateFunc: func(_, obj any) { s.onGPUNode(obj) },
		DeleteFunc: func(obj any) { s.onGPUNodeDelete(obj) },
	})
	if err != nil {
		return fmt.Errorf("GPUNode handler: %w", err)
	}
	s.catchUps.synced = gpuReg.HasSynced
	leaseFactory := informers.NewSharedInformerFactoryWithOptions(h.ClientSet(), 0, informers.WithNamespace(args.LeaseNamespace))
	leaseReg, err := leaseFactory.Coordination().V1().Leases().Informer().AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { s.onLease(obj) },
		UpdateFunc: func(_, obj any) { s.onLease(obj) },
		DeleteFunc: func(obj any) { s.onLeaseDelete(obj) },
	})
	if err != nil {
		return fmt.Errorf("Lease handler: %w", err)
	}
	s.truth = newTruthWriter(h.ClientSet(), h.SharedInformerFactory().Core().V1().Pods().Lister(), gpuFactory.Gpuslice().V1alpha1().GPUNodes().Lister())
	if s.demand != nil {
		s.demandOut = newDemandWriter(h.ClientSet(), h.SharedInformerFactory().Core().V1().Pods().Lister(), s.demand, s.metrics)
		go s.demandOut.run(ctx)
	}
	gpuFactory.Start(ctx.Done())
	leaseFactory.Start(ctx.Done())
	go s.truth.run(ctx)
	go s.catchUps.run(ctx)
	s.synced = []toolscache.InformerSynced{podReg.HasSynced, gpuReg.HasSynced, leaseReg.HasSynced}
	if s.obs != nil {
		go s.runObserver(ctx, start, nodeLister)
	}
	logger.Info("GPUSlice shared state initialised", "leaseNamespace", args.LeaseNamespace, "heartbeatTimeout", args.HeartbeatTimeout.Duration)
	return s.startControllers(ctx, h, args)
}

// startControllers starts the process-wide controllers a profile's args ask
// for (the caller holds s.mu); each starts once.
func (s *Shared) startControllers(ctx context.Context, h fwk.Handle, args *config.GPUSliceArgs) error {
	if args.TaintUnusableNodes {
		if err := s.startTaints(ctx, h); err != nil {
			return err
		}
	}
	if args.DeletionCost {
		return s.startDeletionCost(ctx, h)
	}
	return nil
}

// waitSynced blocks until every handler has seen its informer's initial
// list, so that no pod is scheduled before the cache is rebuilt (after a
// restart or a leader failover).
func (s *Shared) waitSynced(ctx context.Context) error {
	s.mu.Lock()
	synced := s.synced
	s.mu.Unlock()
	done := func() bool {
		for _, f := range synced {
			if !f() {
				return false
			}
		}
		return true
	}
	if done() {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	if !toolscache.WaitForCacheSync(ctx.Done(), synced...) {
		return fmt.Errorf("GPU allocation cache not synced yet")
	}
	return nil
}

func (s *Shared) onPod(logger klog.Logger, obj any) {
	pod, ok := obj.(*v1.Pod)
	if !ok {
		return
	}
	u, annErr, err := PodUpdateOf(pod, s.catalog)
	if err != nil {
		// Such a pod cannot have been admitted with devices; track nothing.
		logger.V(4).Info("Ignoring pod with an invalid GPU request", "pod", klog.KObj(pod), "err", err)
		s.cache.RemovePod(pod.UID)
		return
	}
	if annErr != nil {
		s.logBadAnnotation(logger, pod, annErr)
	} else {
		s.badAnnotations.Delete(pod.UID)
	}
	s.cache.UpsertPod(u)
	if pod.Spec.NodeName != "" || u.Terminated {
		s.demand.forget(pod.UID)
	}
	if s.truth != nil {
		s.truth.podChanged(pod)
	}
}

// PodUpdateOf is what the pod informer's handler feeds the cache for a pod.
// err is set when the pod's GPU request is invalid (the cache then tracks
// nothing of it); annErr when its assignment annotation is malformed and
// ignored (u is usable: its devices are predicted from its request).
func PodUpdateOf(pod *v1.Pod, cat *topology.Catalog) (u cache.PodUpdate, annErr, err error) {
	req, err := podrequest.Parse(pod, podrequest.Options{Catalog: cat})
	if err != nil {
		return cache.PodUpdate{}, nil, err
	}
	u = cache.PodUpdate{
		UID: pod.UID, Namespace: pod.Namespace, Name: pod.Name, Node: pod.Spec.NodeName, Request: req,
		Terminated: pod.Status.Phase == v1.PodSucceeded || pod.Status.Phase == v1.PodFailed,
	}
	a, annErr := assignment.FromPod(pod)
	if annErr == nil && a != nil {
		u.Assignment = a.Placement()
	}
	return u, annErr, nil
}

func (s *Shared) onPodDelete(obj any) {
	if pod, ok := unwrap(obj).(*v1.Pod); ok {
		s.cache.RemovePod(pod.UID)
		s.badAnnotations.Delete(pod.UID)
		s.demand.forget(pod.UID)
	}
}

// logBadAnnotation says, once per pod and value, that a pod's assignment
// annotation is ignored, what it held and why: the cache then predicts the
// pod's devices from its request, as for a pod of another scheduler.
func (s *Shared) logBadAnnotation(logger klog.Logger, pod *v1.Pod, err error) {
	value := pod.Annotations[assignment.Annotation]
	if prev, seen := s.badAnnotations.Swap(pod.UID, value); seen && prev == value {
		return
	}
	const limit = 256
	if len(value) > limit {
		value = value[:limit] + "..."
	}
	logger.Info("Ignoring the pod's "+assignment.Annotation+" annotation; its devices are predicted from its request instead",
		"pod", klog.KObj(pod), "node", pod.Spec.NodeName, "value", value, "err", err)
}

// unwrap returns the object of a delete event, unwrapping the tombstone an
// informer delivers when it missed the deletion.
func unwrap(obj any) any {
	if t, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		return t.Obj
	}
	return obj
}

func (s *Shared) onGPUNode(obj any) {
	gn, ok := obj.(*gpusliceapi.GPUNode)
	if !ok {
		return
	}
	before := s.cache.TopologyVersion(gn.Name)
	s.observeGPUNode(gn)
	if s.cache.TopologyVersion(gn.Name) != before {
		s.unannounced.note(gn.Name)
	}
	if s.truth != nil {
		s.truth.gpuNodeChanged(gn)
	}
}

// observeGPUNode feeds a GPUNode to the cache unless the cache has that
// version already. Both the plugin's informer and the queueing hints call
// it: a pod a hint queues is retried against a cache that has seen the
// event that woke it, whichever informer delivers first.
func (s *Shared) observeGPUNode(gn *gpusliceapi.GPUNode) {
	if gn.ResourceVersion != "" && s.cache.TopologyVersion(gn.Name) == gn.ResourceVersion {
		return // the common case for the hints: no conversion
	}
	s.cache.SetTopology(gn.Name, TopologyOf(gn))
	s.taintChanged(gn.Name)
}

func (s *Shared) onGPUNodeDelete(obj any) {
	if gn, ok := unwrap(obj).(*gpusliceapi.GPUNode); ok {
		s.cache.RemoveTopology(gn.Name)
		s.forgetNode(gn.Name)
		s.taintChanged(gn.Name)
	}
}

func (s *Shared) onLease(obj any) {
	l, ok := obj.(*coordinationv1.Lease)
	if !ok {
		return
	}
	s.cache.SetHeartbeat(l.Name, RenewTime(l))
	s.taintChanged(l.Name)
	s.catchUps.observe(l)
}

func (s *Shared) onLeaseDelete(obj any) {
	if l, ok := unwrap(obj).(*coordinationv1.Lease); ok {
		s.cache.RemoveHeartbeat(l.Name)
		s.taintChanged(l.Name)
	}
}

// RenewTime is the heartbeat an exporter's Lease records: its renew time,
// else its acquire time, else its creation.
func RenewTime(l *coordinationv1.Lease) time.Time {
	switch {
	case l.Spec.RenewTime != nil:
		return l.Spec.RenewTime.Time
	case l.Spec.AcquireTime != nil:
		return l.Spec.AcquireTime.Time
	}
	return l.CreationTimestamp.Time
}

// TopologyOf converts a published GPUNode for the cache. Validation happens
// when the cache compiles it, so a corrupted object is reported by name.
func TopologyOf(gn *gpusliceapi.GPUNode) *cache.Topology {
	t := &cache.Topology{Node: gn.Spec.Topology(), State: string(gn.Spec.State), Message: gn.Spec.Message, ResourceVersion: gn.ResourceVersion}
	// The object is named after its node; a spec naming another node is
	// corrupt, and the cache reports it as such.
	if t.Node.Name == "" {
		t.Node.Name = gn.Name
	}
	if len(gn.Spec.Allocations) > 0 {
		t.Allocations = make(map[types.UID][]allocator.ResourceDevices, len(gn.Spec.Allocations))
	}
	for _, pa := range gn.Spec.Allocations {
		p := &allocator.Placement{Node: gn.Name}
		for _, c := range pa.Containers {
			cd := allocator.ContainerDevices{Name: c.Name}
			for _, d := range c.Devices {
				cd.Devices = append(cd.Devices, allocator.ResourceDevices{Resource: d.Resource, DeviceIDs: d.DeviceIDs})
			}
			p.Containers = append(p.Containers, cd)
		}
		t.Allocations[types.UID(pa.PodUID)] = p.Devices()
	}
	return t
}
