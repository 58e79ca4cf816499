package localcluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"k8s.io/component-base/configz"
	"k8s.io/kubernetes/cmd/kube-scheduler/app"
	"k8s.io/kubernetes/cmd/kube-scheduler/app/options"

	_ "github.com/gpuslice/gpuslice/pkg/apis/config/scheme" // registers GPUSliceArgs
	"github.com/gpuslice/gpuslice/pkg/plugins/gpuslice"
)

// Scheduler is an in-process gpuslice-scheduler.
type Scheduler struct {
	// Shared is the plugin's shared state (its cache), for diagnostics.
	Shared *gpuslice.Shared
	cancel context.CancelFunc
	done   chan error
}

// StartScheduler runs gpuslice-scheduler with the given configuration, as
// the binary would (same command setup, fresh shared state: a restart).
func StartScheduler(ctx context.Context, dir, config string) (*Scheduler, error) {
	path := filepath.Join(dir, fmt.Sprintf("scheduler-%d.yaml", time.Now().UnixNano()))
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		return nil, err
	}
	opts := options.NewOptions()
	opts.ConfigFile = path
	opts.SecureServing.BindPort = 0
	ctx, cancel := context.WithCancel(ctx)
	shared := gpuslice.NewShared()
	cc, sched, err := app.Setup(ctx, opts, app.WithPlugin(gpuslice.Name, shared.New))
	if err != nil {
		cancel()
		return nil, fmt.Errorf("scheduler setup: %w", err)
	}
	// kube-scheduler registers its configuration under a process-wide configz
	// key; a restart inside the same process must release it first.
	configz.Delete("componentconfig")
	s := &Scheduler{Shared: shared, cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- app.Run(ctx, cc, sched) }()
	// Run returns at once on a start-up error; report it.
	select {
	case err := <-s.done:
		cancel()
		return nil, fmt.Errorf("scheduler exited at start: %v", err)
	case <-time.After(500 * time.Millisecond):
	}
	return s, nil
}

// Stop stops the scheduler and waits for it to return.
func (s *Scheduler) Stop() {
	s.cancel()
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
	}
}
