package controller

import (
	"context"
	"fmt"
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
// replica holds the Lease, until ctx ends. Only the leader writes.
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
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock: lock, LeaseDuration: o.LeaseDuration, RenewDeadline: o.RenewDeadline, RetryPeriod: o.RetryPeriod,
		ReleaseOnCancel: true, Name: o.Name,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) { c.Run(ctx, tick) },
			OnStoppedLeading: func() {},
		},
	})
	if err != nil {
		return err
	}
	for ctx.Err() == nil {
		le.Run(ctx)
	}
	return nil
}
