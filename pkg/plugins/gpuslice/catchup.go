package gpuslice

import (
	"context"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	gpusliceapi "github.com/gpuslice/gpuslice/pkg/apis/gpuslice/v1alpha1"
)

// catchUpTimeout bounds one direct read of a GPUNode.
const catchUpTimeout = 5 * time.Second

// catchUp reads a node's GPUNode directly when the node's exporter Lease
// names a newer GPUNode version than the cache holds, and feeds it to the
// cache; it reports whether the cache took a newer version.
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
// A race of the Lease ahead of the GPUNode's own event costs one spare read.
//
// Concurrent calls for one node share one read.
func (s *Shared) catchUp(l *coordinationv1.Lease) bool {
	v := l.Annotations[gpusliceapi.LeaseGPUNodeVersionAnnotation]
	if v == "" || s.gpuClient == nil || !s.cache.Behind(l.Name, v) {
		return false
	}
	res, _, _ := s.catchUps.Do(l.Name, func() (any, error) {
		if !s.cache.Behind(l.Name, v) {
			return false, nil
		}
		logger := klog.Background().WithName(Name)
		ctx, cancel := context.WithTimeout(context.Background(), catchUpTimeout)
		defer cancel()
		gn, err := s.gpuClient.GpusliceV1alpha1().GPUNodes().Get(ctx, l.Name, metav1.GetOptions{})
		if err != nil {
			s.metrics.catchUp("failed")
			logger.V(2).Info("Reading a lagging GPUNode failed", "node", l.Name, "version", v, "err", err)
			return false, nil
		}
		before := s.cache.TopologyVersion(l.Name)
		s.onGPUNode(gn)
		if s.cache.TopologyVersion(l.Name) == before {
			s.metrics.catchUp("not_newer")
			return false, nil
		}
		s.metrics.catchUp("caught_up")
		logger.Info("GPUNode watch lags the exporter's Lease; read the GPUNode directly", "node", l.Name, "had", before, "read", gn.ResourceVersion)
		return true, nil
	})
	caught, _ := res.(bool)
	return caught
}
