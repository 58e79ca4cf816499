package exporter

import (
	"context"

	"k8s.io/client-go/kubernetes"

	gpusliceapi "github.com/gpuslice/gpuslice/pkg/apis/gpuslice/v1alpha1"
	"github.com/gpuslice/gpuslice/pkg/exporter/agent"
	"github.com/gpuslice/gpuslice/pkg/exporter/dpconfig"
	"github.com/gpuslice/gpuslice/pkg/exporter/kubelet"
	"github.com/gpuslice/gpuslice/pkg/exporter/podresources"
	versioned "github.com/gpuslice/gpuslice/pkg/generated/clientset/versioned"
	"github.com/gpuslice/gpuslice/pkg/topology"
)

// MIGConfigStateLabel is set by NVIDIA's MIG manager while it applies a layout.
const MIGConfigStateLabel = agent.MIGConfigStateLabel

type (
	// Agent is the exporter's control loop for one node.
	Agent = agent.Agent
	// Options configure an Agent.
	Options = agent.Options
	// GPUSource reads the GPUs (the nvml package's Reader).
	GPUSource = agent.GPUSource
	// Inputs are everything one sync observed.
	Inputs = agent.Inputs
	// Metrics are the exporter's Prometheus metrics.
	Metrics = agent.Metrics
)

// AllocationSource lists what the kubelet gave each pod (PodResources API),
// with the scheduler's device types.
type AllocationSource interface {
	List(ctx context.Context) ([]podresources.PodDevices, error)
}

// allocations adapts an AllocationSource to the agent's.
type allocations struct{ src AllocationSource }

func (a allocations) List(ctx context.Context) ([]kubelet.PodDevices, error) {
	pods, err := a.src.List(ctx)
	if err != nil {
		return nil, err
	}
	return podresources.ToKubelet(pods), nil
}

// New returns an agent that calls the API server through the REST clients
// of kube's core/v1 and coordination/v1 groups and of gpu's gpuslice.io
// group. config reads the device plugin's config file.
func New(opts Options, kube kubernetes.Interface, gpu versioned.Interface, gpus GPUSource, allocs AllocationSource, config func() (*dpconfig.Config, error), m *Metrics) (*Agent, error) {
	return agent.New(opts, agent.Clients{
		Core:         kube.CoreV1().RESTClient(),
		Coordination: kube.CoordinationV1().RESTClient(),
		GPUSlice:     gpu.GpusliceV1alpha1().RESTClient(),
	}, gpus, allocations{allocs}, config, m)
}

// NewMetrics registers the exporter's metrics on a registry of their own.
func NewMetrics() *Metrics { return agent.NewMetrics() }

// Desired builds the GPUNode spec to publish (agent.Desired).
func Desired(cat *topology.Catalog, in Inputs) gpusliceapi.GPUNodeSpec { return agent.Desired(cat, in) }

// Summarize counts a node's advertised and allocated devices for the
// GPUNode's printer columns (agent.Summarize).
func Summarize(node *topology.Node, allocs []gpusliceapi.PodAllocation) gpusliceapi.Summary {
	return agent.Summarize(node, allocs)
}
