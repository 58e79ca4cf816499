package controller

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// LeaderOptions name the Lease the controller's replicas elect a leader
// with.
type LeaderOptions struct {
	Namespace, Name, Identity string
	// LeaseDuration, RenewDeadline, RetryPeriod: zero means 15 s, 10 s, 2 s.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
}

// RunWithLeaderElection runs the controller (syncing every tick) while this
// replica holds the Lease, until ctx ends. Only the leader writes. When it
// stops leading (or ctx ends) Run lifts the drains it holds, and this
// waits for that before it returns or competes for the Lease again (the
// Lease itself is released first: a successor that adopts the drains
// before they are lifted writes them again on its next round).
func (c *Controller) RunWithLeaderElection(ctx context.Context, tick time.Duration, o LeaderOptions) error {
	if o.Namespace == "" || o.Name == "" || o.Identity == "" {
		return fmt.Errorf("leader election needs the Lease's namespace and name and this replica's identity")
	}
	if o.LeaseDuration == 0 {
		o.LeaseDuration, o.RenewDeadline, o.RetryPeriod = 15*time.Second, 10*time.Second, 2*time.Second
	}
	lock, err := resourcelock.New(resourcelock.LeasesResourceLock, o.Namespace, o.Name, c.kube.CoreV1(), c.kube.CoordinationV1(),
		resourcelock.ResourceLockConfig{Identity: o.Identity})
	if err != nil {
		return err
	}
	for ctx.Err() == nil {
		// OnStartedLeading runs in a goroutine of its own; OnStoppedLeading
		// (deferred in le.Run, after the leader's context is cancelled)
		// waits for it. A goroutine not yet started by then finds its
		// context cancelled and does nothing.
		var started atomic.Bool
		done := make(chan struct{})
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock: lock, LeaseDuration: o.LeaseDuration, RenewDeadline: o.RenewDeadline, RetryPeriod: o.RetryPeriod,
			ReleaseOnCancel: true, Name: o.Name,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(ctx context.Context) {
					started.Store(true)
					defer close(done)
					c.Run(ctx, tick)
				},
				OnStoppedLeading: func() {
					if started.Load() {
						<-done
					}
				},
			},
		})
		if err != nil {
			return err
		}
		le.Run(ctx)
	}
	return nil
}
