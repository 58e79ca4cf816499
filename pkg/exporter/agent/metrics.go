package agent

import (
	"net/http"
	"time"

	"k8s.io/component-base/metrics"

	gpusliceapi "github.com/gpuslice/gpuslice/pkg/apis/gpuslice/v1alpha1"
	"github.com/gpuslice/gpuslice/pkg/topology"
)

// Metrics are the exporter's Prometheus metrics, on a registry of their own
// (no package-level registry).
type Metrics struct {
	registry     metrics.KubeRegistry
	slicesTotal  *metrics.GaugeVec
	slicesInUse  *metrics.GaugeVec
	gpuHealthy   *metrics.GaugeVec
	syncErrors   *metrics.CounterVec
	writes       *metrics.Counter
	lastSync     *metrics.Gauge
	lastSyncTime time.Time
}

// NewMetrics registers the exporter's metrics.
func NewMetrics() *Metrics {
	m := &Metrics{
		registry: metrics.NewKubeRegistry(),
		slicesTotal: metrics.NewGaugeVec(&metrics.GaugeOpts{
			Namespace: "gpuslice", Subsystem: "exporter", Name: "slices_total",
			Help: "Devices the device plugin advertises per GPU and resource (time-sliced replicas counted one by one).", StabilityLevel: metrics.ALPHA,
		}, []string{"gpu", "resource"}),
		slicesInUse: metrics.NewGaugeVec(&metrics.GaugeOpts{
			Namespace: "gpuslice", Subsystem: "exporter", Name: "slices_in_use",
			Help: "Devices the kubelet reports allocated per GPU and resource.", StabilityLevel: metrics.ALPHA,
		}, []string{"gpu", "resource"}),
		gpuHealthy: metrics.NewGaugeVec(&metrics.GaugeOpts{
			Namespace: "gpuslice", Subsystem: "exporter", Name: "gpu_healthy",
			Help: "1 when the GPU is healthy, 0 otherwise.", StabilityLevel: metrics.ALPHA,
		}, []string{"gpu"}),
		syncErrors: metrics.NewCounterVec(&metrics.CounterOpts{
			Namespace: "gpuslice", Subsystem: "exporter", Name: "sync_errors_total",
			Help: "Failed syncs by stage (nvml, config, podresources, publish, lease).", StabilityLevel: metrics.ALPHA,
		}, []string{"stage"}),
		writes: metrics.NewCounter(&metrics.CounterOpts{
			Namespace: "gpuslice", Subsystem: "exporter", Name: "topology_writes_total",
			Help: "Writes of the GPUNode object (only on change).", StabilityLevel: metrics.ALPHA,
		}),
		lastSync: metrics.NewGauge(&metrics.GaugeOpts{
			Namespace: "gpuslice", Subsystem: "exporter", Name: "last_sync_timestamp_seconds",
			Help: "Unix time of the last completed sync.", StabilityLevel: metrics.ALPHA,
		}),
	}
	m.Register(m.registry.MustRegister)
	return m
}

// Register passes every metric to register (NewMetrics registers them in
// the exporter's registry; tests list what is exported through it).
func (m *Metrics) Register(register func(...metrics.Registerable)) {
	register(m.slicesTotal, m.slicesInUse, m.gpuHealthy, m.syncErrors, m.writes, m.lastSync)
}

// Handler serves /metrics.
func (m *Metrics) Handler() http.Handler {
	return metrics.HandlerFor(m.registry, metrics.HandlerOpts{})
}

func (m *Metrics) syncError(stage string) { m.syncErrors.WithLabelValues(stage).Inc() }

// observe records a published spec's per-GPU slice counts.
func (m *Metrics) observe(spec *gpusliceapi.GPUNodeSpec, now time.Time) {
	m.slicesTotal.Reset()
	m.slicesInUse.Reset()
	m.gpuHealthy.Reset()
	units, err := spec.Topology().Units()
	if err == nil {
		gpuOf := map[string]string{}
		for _, u := range units {
			g := spec.GPUs[u.GPU].UUID
			m.slicesTotal.WithLabelValues(g, u.Resource).Add(float64(u.Replicas))
			gpuOf[u.Resource+"/"+u.DeviceID] = g
		}
		for _, pa := range spec.Allocations {
			for _, c := range pa.Containers {
				for _, d := range c.Devices {
					for _, id := range d.DeviceIDs {
						base, _, _ := topology.SplitReplicaID(id)
						if g, ok := gpuOf[d.Resource+"/"+base]; ok {
							m.slicesInUse.WithLabelValues(g, d.Resource).Inc()
						}
					}
				}
			}
		}
	}
	for _, g := range spec.GPUs {
		v := 0.0
		if g.Healthy {
			v = 1
		}
		m.gpuHealthy.WithLabelValues(g.UUID).Set(v)
	}
	m.lastSync.Set(float64(now.Unix()))
	m.lastSyncTime = now
}
