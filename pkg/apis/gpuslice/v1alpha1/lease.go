package v1alpha1

// LeaseGPUNodeVersionAnnotation is set by the exporter on its Lease, at every
// renewal, to the resourceVersion of the GPUNode it last wrote or read back.
// A reader whose GPUNode watch lags (after an API server restart, client-go
// retries a failed watch with a backoff of up to about a minute) sees from
// the Lease that its copy is behind, and reads the GPUNode directly. Absent
// while the exporter does not know the live version.
const LeaseGPUNodeVersionAnnotation = "gpuslice.io/gpunode-version"
