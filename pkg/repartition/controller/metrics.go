package controller

import (
	"net/http"

	"k8s.io/component-base/metrics"
)

// Metrics are the controller's Prometheus metrics, on a registry of their
// own.
type Metrics struct {
	registry   metrics.KubeRegistry
	runs       *metrics.Counter
	gpus       *metrics.Counter
	results    *metrics.CounterVec
	podsServed *metrics.Counter
	inFlight   *metrics.Gauge
	// Drains (see drain.go).
	drainsStarted, drainsLifted *metrics.Counter
	draining, fenced            *metrics.Gauge
}

// NewMetrics registers the controller's metrics.
func NewMetrics() *Metrics {
	opts := func(name, help string) *metrics.CounterOpts {
		return &metrics.CounterOpts{Namespace: "gpuslice", Subsystem: "repartition", Name: name, Help: help, StabilityLevel: metrics.ALPHA}
	}
	m := &Metrics{
		registry:   metrics.NewKubeRegistry(),
		runs:       metrics.NewCounter(opts("runs_total", "MIG manager runs asked for (named configs applied to a node).")),
		gpus:       metrics.NewCounter(opts("gpus_reconfigured_total", "GPUs whose layout a run changes.")),
		results:    metrics.NewCounterVec(opts("run_results_total", "Finished runs by result (success, failed; cancelled: a GPU it rebuilds took a pod before MIG manager was asked)."), []string{"result"}),
		podsServed: metrics.NewCounter(opts("pods_served_total", "Pending pods the new layouts were verified to serve.")),
		inFlight: metrics.NewGauge(&metrics.GaugeOpts{Namespace: "gpuslice", Subsystem: "repartition", Name: "nodes_reconfiguring",
			Help: "Nodes with a run in flight.", StabilityLevel: metrics.ALPHA}),
		drainsStarted: metrics.NewCounter(opts("drains_started_total", "GPUs drained for a MIG layout change (no new pod placed on them; their running pods left alone).")),
		drainsLifted:  metrics.NewCounter(opts("drains_lifted_total", "Drains lifted without a change of their GPU (given up after the max drain time, no demand left, the controller stopped).")),
		draining: metrics.NewGauge(&metrics.GaugeOpts{Namespace: "gpuslice", Subsystem: "repartition", Name: "gpus_draining",
			Help: "GPUs the controller's drain annotations (gpuslice.io/mig-drain) list now as drains.", StabilityLevel: metrics.ALPHA}),
		fenced: metrics.NewGauge(&metrics.GaugeOpts{Namespace: "gpuslice", Subsystem: "repartition", Name: "gpus_fenced",
			Help: "GPUs the controller's drain annotations (gpuslice.io/mig-drain) list now because a run in flight rebuilds them (no new pod placed on them until it ends).", StabilityLevel: metrics.ALPHA}),
	}
	m.registry.MustRegister(m.runs, m.gpus, m.results, m.podsServed, m.inFlight, m.drainsStarted, m.drainsLifted, m.draining, m.fenced)
	return m
}

// Handler serves /metrics.
func (m *Metrics) Handler() http.Handler {
	return metrics.HandlerFor(m.registry, metrics.HandlerOpts{})
}
