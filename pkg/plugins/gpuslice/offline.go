package gpuslice

import (
	v1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"

	"github.com/gpuslice/gpuslice/pkg/cache"
	"github.com/gpuslice/gpuslice/pkg/topology"
)

// NewSharedOffline returns shared state around a cache that the caller
// feeds itself (topologies, heartbeats, pods) instead of informers: for
// in-process simulation such as gpuslice-bench. The first profile's args
// complete it; no informer is started and nothing is read from the API.
func NewSharedOffline(c *cache.Cache, cat *topology.Catalog) *Shared {
	return &Shared{catalog: cat, cache: c, demand: newDemandRecorder(nil)}
}

// ObservePod feeds a pod's current state to the cache, as the pod
// informer's handler does.
func (s *Shared) ObservePod(logger klog.Logger, pod *v1.Pod) { s.onPod(logger, pod) }

// ForgetPod removes a deleted pod from the cache.
func (s *Shared) ForgetPod(pod *v1.Pod) { s.onPodDelete(pod) }

// NodeView is the cache's view of a node now: its allocation snapshot and
// whether it may take GPU pods (for diagnostics and tests).
func (s *Shared) NodeView(name string) cache.NodeView { return s.cache.View(name) }

// PodsOn is the cache's records of the pods on a node (for diagnostics).
func (s *Shared) PodsOn(node string) []cache.PodInfo { return s.cache.PodsOn(node) }

// TopologyVersion is the resource version of the GPUNode the cache holds
// for the node (for diagnostics).
func (s *Shared) TopologyVersion(node string) string { return s.cache.TopologyVersion(node) }

// ForgetNode drops a deleted node: its topology, heartbeat and every
// profile's memo of it, as the GPUNode and Lease deletions do.
func (s *Shared) ForgetNode(name string) {
	s.cache.RemoveTopology(name)
	s.cache.RemoveHeartbeat(name)
	s.forgetNode(name)
}
