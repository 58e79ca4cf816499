package gpuslice

import (
	"k8s.io/component-base/metrics"
)

// Reservation outcomes (gpuslice_scheduler_reservations_total's outcome
// label).
const (
	// outcomeReserved: Reserve committed the predicted devices.
	outcomeReserved = "reserved"
	// outcomeRejected: Reserve failed (a device was taken since Filter, or
	// the node went stale): the pod is retried.
	outcomeRejected = "rejected"
	// outcomeReleased: a later plugin failed the cycle; Unreserve dropped
	// the reservation.
	outcomeReleased = "released"
	// outcomeRecorded: the devices were written to the pod (Bind or
	// PreBind).
	outcomeRecorded = "recorded"
	// outcomeRecordFailed: writing them failed; the cycle is undone.
	outcomeRecordFailed = "record_failed"
)

// Metrics are GPUSlice's Prometheus metrics. They are created with the
// shared state and count nothing until registered (component-base metrics
// are inert before registration): gpuslice-scheduler registers them in
// kube-scheduler's registry (legacyregistry), served on its /metrics.
// Every method is safe on a nil *Metrics.
type Metrics struct {
	reservations     *metrics.CounterVec
	readBacks        *metrics.CounterVec
	excludedNodes    *metrics.GaugeVec
	usableNodes      *metrics.Gauge
	gpuEquivalents   *metrics.GaugeVec
	stranded         *metrics.Gauge
	expectedStranded *metrics.Gauge
	emptyNodes       *metrics.Gauge
	emptyGPUs        *metrics.Gauge
	nodeEquivalents  *metrics.GaugeVec
	nodeSlices       *metrics.GaugeVec
	cacheSync        *metrics.Gauge
	nodeRebuild      *metrics.Histogram
	eventsSuppressed *metrics.Counter
	migDemand        *metrics.GaugeVec
	migDemandWrites  *metrics.Counter
	catchUps         *metrics.CounterVec
}

const (
	metricsNamespace = "gpuslice"
	metricsSubsystem = "scheduler"
)

func gaugeOpts(name, help string) *metrics.GaugeOpts {
	return &metrics.GaugeOpts{Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: name, Help: help, StabilityLevel: metrics.ALPHA}
}

func counterOpts(name, help string) *metrics.CounterOpts {
	return &metrics.CounterOpts{Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: name, Help: help, StabilityLevel: metrics.ALPHA}
}

// NewMetrics creates GPUSlice's metrics, unregistered.
func NewMetrics() *Metrics {
	rebuild := &metrics.HistogramOpts{
		Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: "node_rebuild_duration_seconds",
		Help:           "Time to recompute one node's allocation snapshot from its pods' records (on every change of the node's topology, reported devices or pods).",
		Buckets:        metrics.ExponentialBuckets(1e-6, 4, 10),
		StabilityLevel: metrics.ALPHA,
	}
	return &Metrics{
		reservations: metrics.NewCounterVec(counterOpts("reservations_total",
			"GPU reservations by outcome: reserved (Reserve committed the predicted devices), rejected (Reserve failed: a device was taken since Filter or the node went stale; the pod is retried), released (a later plugin failed the cycle), recorded (devices written to the pod), record_failed."),
			[]string{"outcome"}),
		readBacks: metrics.NewCounterVec(counterOpts("read_backs_total",
			"Pods whose predicted devices were compared with what the exporter reports the kubelet gave: result confirmed or corrected (other physical devices; the cache then counts the kubelet's pick); origin gpuslice (reserved by this scheduler or annotated) or other (a prediction for another scheduler's pod)."),
			[]string{"result", "origin"}),
		excludedNodes: metrics.NewGaugeVec(gaugeOpts("excluded_nodes",
			"GPU nodes that take no GPU pods, by reason: stale (exporter heartbeat too old), no_heartbeat, degraded, reconfiguring (MIG layout changing), topology_missing (no GPUNode), invalid, unknown_state."),
			[]string{"reason"}),
		usableNodes: metrics.NewGauge(gaugeOpts("usable_gpu_nodes",
			"GPU nodes that take GPU pods (fresh, Ready topology).")),
		gpuEquivalents: metrics.NewGaugeVec(gaugeOpts("gpu_equivalents",
			"Capacity of the healthy GPUs of the usable GPU nodes in GPU-equivalents (a 3g MIG slice of a 7-slice GPU is 3/7, one of 4 time-sliced replicas 1/4), by state: used (reserved, bound or reported), free."),
			[]string{"state"}),
		stranded: metrics.NewGauge(gaugeOpts("stranded_gpu_equivalents",
			"Free GPU-equivalents of partly used healthy GPUs of the usable nodes: they can take slices, not a pod that needs a whole GPU (kubectl gpuslice top's STRANDED).")),
		expectedStranded: metrics.NewGauge(gaugeOpts("expected_stranded_gpu_equivalents",
			"Free GPU-equivalents of the usable nodes that the learned workload mix is expected not to be able to use (per request class, the free capacity the class cannot take, weighted by the class's share of pods; devices only, CPU and memory not counted): the quantity the fragmentation-aware profile minimises. 0 until the scheduler has seen GPU pods.")),
		emptyNodes: metrics.NewGauge(gaugeOpts("empty_gpu_nodes",
			"Usable GPU nodes none of whose GPUs holds an allocated device (candidates for scale-down or consolidation).")),
		emptyGPUs: metrics.NewGauge(gaugeOpts("empty_gpus",
			"GPUs of usable nodes that hold no allocated device.")),
		nodeEquivalents: metrics.NewGaugeVec(gaugeOpts("node_gpu_equivalents",
			"Per usable GPU node, GPU-equivalents used and free (see gpu_equivalents)."),
			[]string{"node", "state"}),
		nodeSlices: metrics.NewGaugeVec(gaugeOpts("node_slices",
			"Per usable GPU node and GPU resource (nvidia.com/mig-<profile>, nvidia.com/gpu, nvidia.com/gpu.shared), devices by state: used, free (healthy and unallocated), unhealthy. A time-sliced replica counts as one device."),
			[]string{"node", "resource", "state"}),
		cacheSync: metrics.NewGauge(gaugeOpts("cache_sync_duration_seconds",
			"Time from start-up to the allocation cache rebuilt from pods, GPUNodes and Leases (no pod is scheduled before).")),
		nodeRebuild: metrics.NewHistogram(rebuild),
		eventsSuppressed: metrics.NewCounter(counterOpts("events_suppressed_total",
			"Events (node excluded, prediction corrected) not emitted because of the rate limit.")),
		migDemand: metrics.NewGaugeVec(gaugeOpts("mig_demand_pods",
			"Pending pods whose last scheduling attempt failed for want of a MIG profile (a node of a model with the profile would take them but for too few free instances of it), by profile: the demand gpuslice-repartitioner acts on (annotation gpuslice.io/mig-demand)."),
			[]string{"profile"}),
		migDemandWrites: metrics.NewCounter(counterOpts("mig_demand_writes_total",
			"Writes of the gpuslice.io/mig-demand annotation (set, changed or removed on a pending pod).")),
		catchUps: metrics.NewCounterVec(counterOpts("gpunode_catch_ups_total",
			"Direct reads of a GPUNode because its exporter's Lease named a newer version than the GPUNode watch had delivered (the watch lags, e.g. retrying after an API server restart), by result: caught_up (the cache took a newer version), not_newer (the watch had delivered it meanwhile), failed (the read failed)."),
			[]string{"result"}),
	}
}

// Register registers the metrics with register, e.g.
// legacyregistry.MustRegister (kube-scheduler's registry) or a
// KubeRegistry's MustRegister.
func (m *Metrics) Register(register func(...metrics.Registerable)) {
	register(m.reservations, m.readBacks, m.excludedNodes, m.usableNodes, m.gpuEquivalents, m.stranded, m.expectedStranded,
		m.emptyNodes, m.emptyGPUs, m.nodeEquivalents, m.nodeSlices, m.cacheSync, m.nodeRebuild, m.eventsSuppressed,
		m.migDemand, m.migDemandWrites, m.catchUps)
}

func (m *Metrics) reservation(outcome string) {
	if m != nil {
		m.reservations.WithLabelValues(outcome).Inc()
	}
}

func (m *Metrics) deleteSlices(node, resource string) {
	for _, state := range []string{"used", "free", "unhealthy"} {
		m.nodeSlices.DeleteLabelValues(node, resource, state)
	}
}

func (m *Metrics) setDemand(profile string, pods int) {
	if m == nil {
		return
	}
	if pods <= 0 {
		m.migDemand.DeleteLabelValues(profile)
		return
	}
	m.migDemand.WithLabelValues(profile).Set(float64(pods))
}

func (m *Metrics) demandWrite() {
	if m != nil {
		m.migDemandWrites.Inc()
	}
}

func (m *Metrics) catchUp(result string) {
	if m != nil {
		m.catchUps.WithLabelValues(result).Inc()
	}
}
