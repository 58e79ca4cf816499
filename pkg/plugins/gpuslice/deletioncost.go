package gpuslice

import (
	"context"
	"fmt"
	"time"

	fwk "k8s.io/kube-scheduler/framework"

	"github.com/gpuslice/gpuslice/pkg/deletioncost"
)

// DeletionCostLeaseName is the Lease (in the exporters' lease namespace)
// that elects the one scheduler replica keeping pod deletion costs.
const DeletionCostLeaseName = "gpuslice-scheduler-deletion-cost"

// deletionCostPeriod is how often every pod's deletion cost is judged.
const deletionCostPeriod = 5 * time.Second

// nodeFill is how full a node's healthy GPUs are, from the cache's current
// snapshot (assumed and bound pods included); false when the node has no
// usable topology.
func (s *Shared) nodeFill(name string) (float64, bool) {
	v := s.cache.View(name)
	if v.State == nil {
		return 0, false
	}
	tot := v.State.Totals()
	if tot.Capacity <= 0 {
		return 0, false
	}
	return deletioncost.Fill(tot.Used, tot.Capacity), true
}

// startDeletionCost starts the deletion-cost controller once per process
// (the caller holds s.mu), under its own leader election.
func (s *Shared) startDeletionCost(ctx context.Context, h fwk.Handle) error {
	if s.costs != nil {
		return nil
	}
	c, err := deletioncost.New(deletioncost.Options{
		Client: h.ClientSet(),
		Pods:   h.SharedInformerFactory().Core().V1().Pods(),
		Fill:   s.nodeFill,
		Period: deletionCostPeriod,
	})
	if err != nil {
		return err
	}
	if err := s.elect(ctx, h, DeletionCostLeaseName, c.Run, "No longer keeping pod deletion costs (leadership lost)"); err != nil {
		return fmt.Errorf("deletion-cost controller leader election: %w", err)
	}
	s.costs = c
	return nil
}
