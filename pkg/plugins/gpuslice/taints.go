package gpuslice

import (
	"context"
	"fmt"
	"os"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"

	"github.com/gpuslice/gpuslice/pkg/nodetaint"
)

// TaintLeaseName is the Lease (in the exporters' lease namespace) that
// elects the one scheduler replica keeping the GPU-unusable taints.
const TaintLeaseName = "gpuslice-scheduler-node-taints"

// Leader election of the taint and deletion-cost controllers: client-go's
// usual timings.
const (
	taintLeaseDuration = 15 * time.Second
	taintRenewDeadline = 10 * time.Second
	taintRetryPeriod   = 2 * time.Second
)

// nodeStatus is the cache's view of a node, for the taint controller.
func (s *Shared) nodeStatus(name string) nodetaint.Status {
	v := s.cache.View(name)
	return nodetaint.Status{Usable: v.Freshness.Usable, Published: s.cache.HasTopology(name), Reason: v.Freshness.Reason}
}

// taintChanged tells the taint controller, if it runs, that a node's view
// may have changed.
func (s *Shared) taintChanged(node string) {
	s.mu.Lock()
	c := s.taints
	s.mu.Unlock()
	if c != nil {
		c.Enqueue(node)
	}
}

// startTaints starts the taint controller once per process (the caller holds
// s.mu), under its own leader election: every scheduler replica builds its
// plugins, but one writes taints. A node not usable within the heartbeat
// timeout of its creation is tainted; staleness is checked every quarter of
// the timeout.
func (s *Shared) startTaints(ctx context.Context, h fwk.Handle) error {
	if s.taints != nil {
		return nil
	}
	timeout := s.args.HeartbeatTimeout.Duration
	resync := max(timeout/4, 250*time.Millisecond)
	c, err := nodetaint.New(nodetaint.Options{
		Client: h.ClientSet(),
		Nodes:  h.SharedInformerFactory().Core().V1().Nodes(),
		Status: s.nodeStatus,
		Grace:  timeout,
		Resync: resync,
	})
	if err != nil {
		return err
	}
	if err := s.elect(ctx, h, TaintLeaseName, c.Run, "No longer keeping GPU-unusable taints (leadership lost)"); err != nil {
		return fmt.Errorf("taint controller leader election: %w", err)
	}
	s.taints = c
	return nil
}

// elect runs run whenever this replica holds the Lease lease (in the
// exporters' lease namespace), until ctx ends: every scheduler replica builds
// its plugins, but one runs each process-wide controller.
func (s *Shared) elect(ctx context.Context, h fwk.Handle, lease string, run func(context.Context), stopped string) error {
	host, _ := os.Hostname()
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: s.args.LeaseNamespace, Name: lease},
		Client:     h.ClientSet().CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: host + "_" + string(uuid.NewUUID())},
	}
	logger := klog.FromContext(ctx).WithName(Name)
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   taintLeaseDuration,
		RenewDeadline:   taintRenewDeadline,
		RetryPeriod:     taintRetryPeriod,
		ReleaseOnCancel: true,
		Name:            lease,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: run,
			OnStoppedLeading: func() { logger.Info(stopped) },
		},
	})
	if err != nil {
		return err
	}
	go func() {
		// Run returns when leadership is lost; stand again until ctx ends.
		for ctx.Err() == nil {
			le.Run(ctx)
		}
	}()
	return nil
}
