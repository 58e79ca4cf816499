package agent

import (
	"context"
	"fmt"
	"net/http"
	"reflect"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	gpusliceapi "github.com/gpuslice/gpuslice/pkg/apis/gpuslice/v1alpha1"
	"github.com/gpuslice/gpuslice/pkg/exporter/dpconfig"
	"github.com/gpuslice/gpuslice/pkg/exporter/kubelet"
	"github.com/gpuslice/gpuslice/pkg/exporter/nvml"
	"github.com/gpuslice/gpuslice/pkg/topology"
)

// MIGConfigStateLabel is set by NVIDIA's MIG manager while it applies a
// layout: pending, rebooting, success or failed.
const MIGConfigStateLabel = "nvidia.com/mig.config.state"

// MIGConfigLabel names the layout the MIG manager is asked to apply.
const MIGConfigLabel = "nvidia.com/mig.config"

// GPUSource reads the GPUs (the nvml package's Reader).
type GPUSource interface {
	Snapshot() (*nvml.Snapshot, error)
	WatchHealth(ctx context.Context, out chan<- nvml.HealthEvent) error
}

// AllocationSource lists what the kubelet gave each pod (PodResources API,
// the kubelet package's Client).
type AllocationSource interface {
	List(ctx context.Context) ([]kubelet.PodDevices, error)
}

// Options configure an Agent.
type Options struct {
	NodeName       string
	LeaseNamespace string
	// HeartbeatInterval is how often the Lease is renewed (default 10s);
	// LeaseDuration is written into it (default 40s).
	HeartbeatInterval, LeaseDuration time.Duration
	// Resync re-reads everything even without a trigger (default 30s).
	Resync time.Duration
	// PollInterval is how often PodResources and the config file are checked
	// for changes (default 1s).
	PollInterval time.Duration
	// MinWriteInterval spaces writes of the GPUNode (default 500ms): bursts
	// of changes coalesce into one write.
	MinWriteInterval time.Duration
	Catalog          *topology.Catalog
}

func (o *Options) defaults() {
	set := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	set(&o.HeartbeatInterval, 10*time.Second)
	set(&o.LeaseDuration, 40*time.Second)
	set(&o.Resync, 30*time.Second)
	set(&o.PollInterval, time.Second)
	set(&o.MinWriteInterval, 500*time.Millisecond)
	if o.Catalog == nil {
		o.Catalog = topology.NewCatalog()
	}
	if o.LeaseNamespace == "" {
		o.LeaseNamespace = "gpuslice-system"
	}
}

// Agent is the exporter's control loop for one node.
type Agent struct {
	opts     Options
	core     rest.Interface
	gpuSlice rest.Interface
	gpus     GPUSource
	allocs   AllocationSource
	config   func() (*dpconfig.Config, error)
	metrics  *Metrics
	pub      publisher
	beat     heartbeat

	trigger chan struct{}

	mu         sync.Mutex
	unhealthy  map[string]string
	observed   []kubelet.PodDevices
	observeErr error
	cfgSeen    *dpconfig.Config
	cfgErrSeen string
	lastSync   time.Time

	// pods and nodes hold the metadata of the pods bound to this node and
	// of the node itself (PartialObjectMetadata), keyed namespace/name.
	pods, nodes toolscache.Indexer
}

// New returns an agent. config reads the device plugin's config file.
func New(opts Options, clients Clients, gpus GPUSource, allocs AllocationSource, config func() (*dpconfig.Config, error), m *Metrics) (*Agent, error) {
	opts.defaults()
	if opts.NodeName == "" {
		return nil, fmt.Errorf("node name is required")
	}
	if err := clients.validate(); err != nil {
		return nil, err
	}
	if m == nil {
		m = NewMetrics()
	}
	return &Agent{
		opts: opts, core: clients.Core, gpuSlice: clients.GPUSlice, gpus: gpus, allocs: allocs, config: config, metrics: m,
		pub:       newPublisher(clients.GPUSlice, opts.NodeName),
		beat:      newHeartbeat(clients.Coordination, opts.LeaseNamespace, opts.NodeName, opts.LeaseDuration),
		trigger:   make(chan struct{}, 1),
		unhealthy: map[string]string{},
	}, nil
}

func (a *Agent) poke() {
	select {
	case a.trigger <- struct{}{}:
	default:
	}
}

// Run syncs until ctx ends. It returns nil on a clean stop.
func (a *Agent) Run(ctx context.Context) error {
	logger := klog.FromContext(ctx).WithValues("node", a.opts.NodeName)
	ctx = klog.NewContext(ctx, logger)

	// Three informers of metadata: the pods bound to this node (their UIDs,
	// which PodResources does not report), the node (its MIG manager
	// label, its UID as the GPUNode's owner) and the node's own GPUNode
	// (its resource version: a deletion or an edit by anyone else is
	// repaired at once).
	newInformer := func(client rest.Interface, resource, field string) (toolscache.SharedIndexInformer, error) {
		lw := metadataListWatch(client, resource, fields.OneTermEqualSelector(field, a.opts.NodeName).String())
		inf := toolscache.NewSharedIndexInformer(lw, &metav1.PartialObjectMetadata{}, 0, toolscache.Indexers{})
		return inf, inf.SetTransform(keepIdentity)
	}
	pods, err := newInformer(a.core, "pods", "spec.nodeName")
	if err != nil {
		return err
	}
	nodes, err := newInformer(a.core, "nodes", "metadata.name")
	if err != nil {
		return err
	}
	gpuNodes, err := newInformer(a.gpuSlice, "gpunodes", "metadata.name")
	if err != nil {
		return err
	}
	a.pods, a.nodes = pods.GetIndexer(), nodes.GetIndexer()
	poke := toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { a.poke() },
		UpdateFunc: func(oldObj, newObj any) { a.pokeOnLabelChange(oldObj, newObj) },
		DeleteFunc: func(any) { a.poke() },
	}
	if _, err := nodes.AddEventHandler(poke); err != nil {
		return err
	}
	if _, err := gpuNodes.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    a.gpuNodeSeen,
		UpdateFunc: func(_, newObj any) { a.gpuNodeSeen(newObj) },
		DeleteFunc: func(any) { a.gpuNodeSeen(nil) },
	}); err != nil {
		return err
	}
	// The pod informer has no handler: its store maps PodResources names to UIDs.
	var informers sync.WaitGroup
	defer informers.Wait()
	informers.Go(func() { pods.RunWithContext(ctx) })
	informers.Go(func() { nodes.RunWithContext(ctx) })
	informers.Go(func() { gpuNodes.RunWithContext(ctx) })
	if !toolscache.WaitFor(ctx, "" /* no logging */, pods.HasSyncedChecker()) {
		return fmt.Errorf("informer for the pods of node %s did not sync", a.opts.NodeName)
	}
	toolscache.WaitFor(ctx, "", nodes.HasSyncedChecker())

	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(3)
	go func() { defer wg.Done(); a.watchHealth(ctx) }()
	go func() { defer wg.Done(); a.poll(ctx) }()
	go func() { defer wg.Done(); a.heartbeatLoop(ctx) }()

	resync := time.NewTicker(a.opts.Resync)
	defer resync.Stop()
	a.poke()
	for {
		select {
		case <-ctx.Done():
			logger.Info("Exporter stopping")
			return nil
		case <-a.trigger:
		case <-resync.C:
			if !gpuNodes.HasSynced() {
				// Not watching the live object (yet): compare with it.
				a.pub.forget()
			}
		}
		if err := a.Sync(ctx); err != nil {
			logger.Error(err, "Sync failed")
		}
		// Coalesce bursts: at most one write per MinWriteInterval.
		select {
		case <-ctx.Done():
		case <-time.After(a.opts.MinWriteInterval):
		}
	}
}

// gpuNodeSeen is called with each version of this node's GPUNode the watch
// delivers, nil for a deletion. Anything but the version the publisher last
// wrote or read triggers a sync against the live object.
func (a *Agent) gpuNodeSeen(obj any) {
	rv := ""
	if m, ok := obj.(*metav1.PartialObjectMetadata); ok {
		rv = m.ResourceVersion
	}
	if a.pub.observed(rv) {
		a.poke()
	}
}

func (a *Agent) pokeOnLabelChange(oldObj, newObj any) {
	o, ok1 := oldObj.(*metav1.PartialObjectMetadata)
	n, ok2 := newObj.(*metav1.PartialObjectMetadata)
	if !ok1 || !ok2 || o.Labels[MIGConfigStateLabel] != n.Labels[MIGConfigStateLabel] || o.UID != n.UID {
		a.poke()
	}
}

// watchHealth marks GPUs unhealthy on critical XIDs and syncs at once.
func (a *Agent) watchHealth(ctx context.Context) {
	events := make(chan nvml.HealthEvent, 16)
	go func() {
		if err := a.gpus.WatchHealth(ctx, events); err != nil && ctx.Err() == nil {
			klog.FromContext(ctx).Error(err, "NVML health events unavailable; health is read on every sync")
			a.metrics.syncError("nvml")
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-events:
			if !ev.Critical {
				continue
			}
			a.mu.Lock()
			a.unhealthy[ev.GPUUUID] = fmt.Sprintf("XID %d", ev.XID)
			a.mu.Unlock()
			klog.FromContext(ctx).Info("GPU unhealthy", "gpu", ev.GPUUUID, "xid", ev.XID)
			a.poke()
		}
	}
}

// poll watches the kubelet's allocations and the device-plugin config, which
// offer no change notification, and triggers a sync when either changes.
func (a *Agent) poll(ctx context.Context) {
	t := time.NewTicker(a.opts.PollInterval)
	defer t.Stop()
	for {
		devs, err := a.allocs.List(ctx)
		cfg, cfgErr := a.config()
		changed := false
		a.mu.Lock()
		if (err == nil) != (a.observeErr == nil) || (err == nil && kubelet.Fingerprint(devs) != kubelet.Fingerprint(a.observed)) {
			a.observed, a.observeErr, changed = devs, err, true
		}
		errText := ""
		if cfgErr != nil {
			errText = cfgErr.Error()
		}
		if errText != a.cfgErrSeen || !reflect.DeepEqual(cfg, a.cfgSeen) {
			a.cfgSeen, a.cfgErrSeen, changed = cfg, errText, true
		}
		a.mu.Unlock()
		if changed {
			a.poke()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (a *Agent) heartbeatLoop(ctx context.Context) {
	t := time.NewTicker(a.opts.HeartbeatInterval)
	defer t.Stop()
	for {
		if err := a.beat.renew(ctx, time.Now(), a.pub.version()); err != nil && ctx.Err() == nil {
			klog.FromContext(ctx).Error(err, "Heartbeat failed")
			a.metrics.syncError("lease")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Sync reads everything once and publishes the result if it changed.
func (a *Agent) Sync(ctx context.Context) error {
	in := Inputs{NodeName: a.opts.NodeName}
	in.Snapshot, in.SnapshotErr = a.gpus.Snapshot()
	if in.SnapshotErr != nil {
		a.metrics.syncError("nvml")
	}
	in.Config, in.ConfigErr = a.config()
	if in.ConfigErr != nil {
		a.metrics.syncError("config")
	}
	a.mu.Lock()
	// What poll compares the file with is what was last published from:
	// a sync woken by something else may read a new config before poll's
	// tick does, and poll must then see the next change as one.
	a.cfgSeen, a.cfgErrSeen = in.Config, ""
	if in.ConfigErr != nil {
		a.cfgErrSeen = in.ConfigErr.Error()
	}
	in.Unhealthy = make(map[string]string, len(a.unhealthy))
	for k, v := range a.unhealthy {
		in.Unhealthy[k] = v
	}
	observed, observeErr := a.observed, a.observeErr
	a.mu.Unlock()
	if observed == nil && observeErr == nil {
		observed, observeErr = a.allocs.List(ctx)
	}
	if observeErr != nil {
		in.AllocationsErr = observeErr
		a.metrics.syncError("podresources")
	} else {
		in.Allocations = a.podAllocations(observed)
	}
	node := a.node()
	if node != nil {
		in.MIGConfigState = node.Labels[MIGConfigStateLabel]
		in.MIGConfig = node.Labels[MIGConfigLabel]
	}
	spec := Desired(a.opts.Catalog, in)
	wrote, err := a.pub.publish(ctx, spec, node)
	if err != nil {
		a.pub.forget()
		a.metrics.syncError("publish")
		return err
	}
	now := time.Now()
	a.metrics.observe(&spec, now)
	if wrote {
		a.metrics.writes.Inc()
		klog.FromContext(ctx).V(2).Info("Published GPU topology", "state", spec.State, "slices", spec.Summary.Slices, "message", spec.Message)
	}
	a.mu.Lock()
	a.lastSync = now
	a.mu.Unlock()
	return nil
}

// node is this node's metadata; nil before the informer has it.
func (a *Agent) node() *metav1.PartialObjectMetadata {
	return metadataOf(a.nodes, a.opts.NodeName)
}

// metadataOf returns the object stored under key, nil when there is none
// (or no store yet).
func metadataOf(store toolscache.Store, key string) *metav1.PartialObjectMetadata {
	if store == nil {
		return nil
	}
	obj, ok, err := store.GetByKey(key)
	if err != nil || !ok {
		return nil
	}
	m, _ := obj.(*metav1.PartialObjectMetadata)
	return m
}

// podAllocations attaches pod UIDs (PodResources reports names only) and
// sorts the result canonically.
func (a *Agent) podAllocations(devs []kubelet.PodDevices) []gpusliceapi.PodAllocation {
	out := make([]gpusliceapi.PodAllocation, 0, len(devs))
	for _, pd := range devs {
		pa := gpusliceapi.PodAllocation{PodUID: pd.UID, Namespace: pd.Namespace, Name: pd.Name}
		if pa.PodUID == "" {
			if pod := metadataOf(a.pods, pd.Namespace+"/"+pd.Name); pod != nil {
				pa.PodUID = string(pod.UID)
			}
		}
		for _, c := range pd.Containers {
			ca := gpusliceapi.ContainerAllocation{Name: c.Name}
			for _, d := range c.Devices {
				ca.Devices = append(ca.Devices, gpusliceapi.ResourceDevices{Resource: d.Resource, DeviceIDs: append([]string(nil), d.DeviceIDs...)})
			}
			if len(ca.Devices) > 0 {
				pa.Containers = append(pa.Containers, ca)
			}
		}
		if len(pa.Containers) > 0 {
			out = append(out, pa)
		}
	}
	SortAllocations(out)
	return out
}

// Healthz fails when no sync succeeded within three resync periods.
func (a *Agent) Healthz(w http.ResponseWriter, _ *http.Request) {
	a.mu.Lock()
	last := a.lastSync
	a.mu.Unlock()
	if last.IsZero() || time.Since(last) > 3*a.opts.Resync {
		http.Error(w, fmt.Sprintf("no successful sync since %v", last), http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ok"))
}
