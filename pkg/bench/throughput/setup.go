package throughput

import (
	"context"
	"fmt"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/workqueue"

	gpusliceapi "github.com/gpuslice/gpuslice/pkg/apis/gpuslice/v1alpha1"
	versioned "github.com/gpuslice/gpuslice/pkg/generated/clientset/versioned"
	"github.com/gpuslice/gpuslice/pkg/localcluster"
	"github.com/gpuslice/gpuslice/pkg/localcluster/controlplane"
	"github.com/gpuslice/gpuslice/pkg/topology"
	"github.com/gpuslice/gpuslice/pkg/topology/fixtures"
)

// env is the running benchmark cluster: control plane, simulated nodes, the
// scheduler and the pod watcher.
type env struct {
	o         *options
	cp        *controlplane.ControlPlane
	kube      kubernetes.Interface
	gpu       versioned.Interface
	sched     *localcluster.Scheduler
	watch     *podWatcher
	stopWatch context.CancelFunc

	setup        time.Duration // control plane up, CRDs, nodes, GPUNodes, Leases
	nodesCreated time.Duration // of which creating the nodes' objects
}

// setUp starts the control plane, creates the nodes (each: a Ready Node
// advertising gpus-per-node nvidia.com/gpu, its GPUNode and one exporter
// Lease heartbeat, renewed never: see heartbeatTimeout), starts the pod
// watcher and the scheduler, and runs the warm-up. On error it tears down
// what it started.
func setUp(ctx context.Context, o *options, say func(string, ...any)) (_ *env, err error) {
	began := time.Now()
	cp, err := controlplane.Start(ctx, o.dir, controlplane.Options{
		// DeleteCollection between phases deletes --pods pods; one worker
		// (the default) makes that the slowest step of a run.
		APIServerFlags: []string{"--delete-collection-workers=8"},
	})
	if err != nil {
		return nil, fmt.Errorf("starting the control plane: %w", err)
	}
	e := &env{o: o, cp: cp}
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	// The benchmark's own client: as the scheduler's, not throttled.
	cfg := cp.Config()
	cfg.QPS, cfg.Burst = clientQPS, clientQPS
	if e.kube, err = kubernetes.NewForConfig(cfg); err != nil {
		return nil, fmt.Errorf("kube client: %w", err)
	}
	if e.gpu, err = versioned.NewForConfig(cfg); err != nil {
		return nil, fmt.Errorf("gpuslice client: %w", err)
	}
	if err := localcluster.InstallCRDs(ctx, cfg); err != nil {
		return nil, fmt.Errorf("installing CRDs: %w", err)
	}
	if err := localcluster.EnsureNamespace(ctx, e.kube, localcluster.LeaseNamespace); err != nil {
		return nil, fmt.Errorf("creating namespace %s: %w", localcluster.LeaseNamespace, err)
	}
	say("control plane up in %s (state and logs in %s)", short(time.Since(began)), cp.Dir())

	nodesBegan := time.Now()
	if err := createNodes(ctx, e.kube, e.gpu, o); err != nil {
		return nil, err
	}
	e.nodesCreated = time.Since(nodesBegan)
	say("cluster: %d nodes × %d × %s (whole GPUs, no MIG, no time-slicing) = %d GPUs; %d objects (Node, GPUNode, Lease per node) created in %s by %d workers",
		o.nodes, o.gpusPerNode, o.product, o.nodes*o.gpusPerNode, 3*o.nodes, short(e.nodesCreated), o.setupWorkers)

	watchCtx, stop := context.WithCancel(ctx)
	e.stopWatch = stop
	if e.watch, err = startPodWatcher(watchCtx, e.kube); err != nil {
		return nil, err
	}
	root, err := controlplane.RepoRoot()
	if err != nil {
		return nil, err
	}
	config, err := schedulerConfig(root, cp.KubeconfigPath(), o.stockBatched)
	if err != nil {
		return nil, err
	}
	if e.sched, err = localcluster.StartScheduler(ctx, cp.Dir(), config); err != nil {
		return nil, fmt.Errorf("starting the scheduler: %w", err)
	}
	say("scheduler: one in-process gpuslice-scheduler, profiles %s (stock plugins) and %s (as in %s, heartbeatTimeout %s: one Lease heartbeat per node at setup, none renewed during the run); client qps/burst %d",
		stockScheduler, gpusliceScheduler, shippedConfig, heartbeatTimeout, clientQPS)
	if o.stockBatched {
		say("third profile: %s (the stock plugins, PodTopologySpread without default constraints: its pods are batched)", stockBatchedScheduler)
	}

	if err := e.warmUp(ctx); err != nil {
		return nil, err
	}
	e.setup = time.Since(began)
	say("setup done in %s (warm-up: %d pods per profile, scheduled and deleted)", short(e.setup), o.warmup)
	say("workload: %d pods per profile and round, each nvidia.com/gpu %s, cpu %s, memory %s; created by %d concurrent workers",
		o.pods, gpuListText(o.podGPUs), podCPU, podMemory, o.createWorkers)
	return e, nil
}

// nodeName names simulated node i.
func nodeName(i int) string { return fmt.Sprintf("gpu-node-%05d", i) }

// createNodes creates the simulated nodes concurrently; the first error
// stops the others.
func createNodes(ctx context.Context, kube kubernetes.Interface, gpu versioned.Interface, o *options) error {
	cat := topology.NewCatalog()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		once     sync.Once
		firstErr error
	)
	workqueue.ParallelizeUntil(ctx, o.setupWorkers, o.nodes, func(i int) {
		name := nodeName(i)
		topo, err := fixtures.Build(cat, fixtures.Spec{Name: name, Product: o.product, GPUs: o.gpusPerNode})
		if err == nil {
			err = localcluster.CreateGPUNode(ctx, kube, gpu, topo, gpusliceapi.StateReady)
		}
		if err == nil {
			err = localcluster.Heartbeat(ctx, kube, name, time.Now())
		}
		if err != nil {
			once.Do(func() {
				firstErr = fmt.Errorf("creating node %s: %w", name, err)
				cancel()
			})
		}
	})
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

// warmUp schedules o.warmup pods with each profile and deletes them: the
// scheduler's informers and GPUSlice's cache are synced and the connections
// open before anything is measured.
func (e *env) warmUp(ctx context.Context) error {
	if e.o.warmup == 0 {
		return nil
	}
	for _, p := range e.o.profiles() {
		spec := phaseSpec{profile: p, namespace: "throughput-warmup-" + p.label, pods: e.o.warmup}
		if _, err := e.measure(ctx, spec); err != nil {
			return fmt.Errorf("warm-up of %s: %w", p.schedulerName, err)
		}
		if err := e.clear(ctx, spec); err != nil {
			return fmt.Errorf("warm-up of %s: %w", p.schedulerName, err)
		}
	}
	return nil
}

// close stops the scheduler, the watcher and the control plane.
func (e *env) close() {
	if e.sched != nil {
		e.sched.Stop()
	}
	if e.stopWatch != nil {
		e.stopWatch()
	}
	if e.cp != nil {
		e.cp.Stop()
	}
}
