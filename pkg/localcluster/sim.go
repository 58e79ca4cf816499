package localcluster

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/gpuslice/gpuslice/pkg/exporter/agent"
	"github.com/gpuslice/gpuslice/pkg/exporter/dpconfig"
	"github.com/gpuslice/gpuslice/pkg/exporter/nvml"
	"github.com/gpuslice/gpuslice/pkg/exporter/nvml/fake"
	versioned "github.com/gpuslice/gpuslice/pkg/generated/clientset/versioned"
	"github.com/gpuslice/gpuslice/pkg/localcluster/controlplane"
	"github.com/gpuslice/gpuslice/pkg/topology"
	"github.com/gpuslice/gpuslice/pkg/topology/fixtures"
)

// SimNode is a Node with a fake NVML and a fake kubelet, published by the
// real exporter code.
type SimNode struct {
	Spec    fixtures.Spec
	NVML    *fake.Fake
	Kubelet *FakeKubelet

	kube kubernetes.Interface
	gpu  versioned.Interface
	opts agent.Options

	mu     sync.Mutex
	config *dpconfig.Config
	cancel context.CancelFunc
	done   chan struct{}
	// kubeletCancel stops the fake kubelet.
	kubeletCancel context.CancelFunc
}

// SimOptions tune the exporters of simulated nodes.
type SimOptions struct {
	HeartbeatInterval, PollInterval, Resync time.Duration
	Seed                                    int64
}

// StartSimNode creates the node the spec describes (as fixtures.Spec, except
// that Replicas > 1 time-slices every advertised resource) with its Node (capacity as the device plugin would
// advertise it), starts its fake kubelet and its exporter.
func StartSimNode(ctx context.Context, kube kubernetes.Interface, gpu versioned.Interface, spec fixtures.Spec, o SimOptions) (*SimNode, error) {
	n, topo, err := newSimNode(kube, gpu, spec)
	if err != nil {
		return nil, err
	}
	res, err := capacity(topo)
	if err != nil {
		return nil, err
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: spec.Name, Labels: map[string]string{"kubernetes.io/hostname": spec.Name, "nvidia.com/gpu.product": strings.ReplaceAll(spec.Product, " ", "-")}}}
	if _, err := controlplane.CreateReadyNode(ctx, kube, node, res); err != nil {
		return nil, err
	}
	return n, n.start(ctx, topo, o)
}

// AdoptSimNode makes an existing Node (one an autoscaler created) the node
// the spec describes: its capacity and allocatable become base (cpu, memory,
// pods: the machine's) plus the GPU resources the device plugin advertises,
// it turns Ready without the not-ready taint, and its fake kubelet and
// exporter start.
func AdoptSimNode(ctx context.Context, kube kubernetes.Interface, gpu versioned.Interface, spec fixtures.Spec, base corev1.ResourceList, o SimOptions) (*SimNode, error) {
	n, topo, err := newSimNode(kube, gpu, spec)
	if err != nil {
		return nil, err
	}
	res, err := capacity(topo)
	if err != nil {
		return nil, err
	}
	caps := corev1.ResourceList{}
	for name, q := range base {
		if !strings.HasPrefix(string(name), "nvidia.com/") {
			caps[name] = q
		}
	}
	for name, q := range res {
		caps[name] = q
	}
	if _, err := controlplane.MarkNodeReady(ctx, kube, spec.Name, caps); err != nil {
		return nil, err
	}
	return n, n.start(ctx, topo, o)
}

// newSimNode builds the node's fake NVML and device-plugin config and
// returns the topology its exporter will publish.
func newSimNode(kube kubernetes.Interface, gpu versioned.Interface, spec fixtures.Spec) (*SimNode, *topology.Node, error) {
	specs := make([]fake.GPUSpec, spec.GPUs)
	for i := range specs {
		specs[i] = fake.GPUSpec{Product: spec.Product, MIG: spec.MIG, MemoryMiB: spec.MemoryMiB}
	}
	nv, err := fake.New(spec.Name, specs)
	if err != nil {
		return nil, nil, err
	}
	cfg := dpconfig.Defaults()
	cfg.MIGStrategy = spec.Strategy
	if cfg.MIGStrategy == "" {
		cfg.MIGStrategy = topology.MIGStrategyMixed
	}
	if spec.Policy != "" {
		cfg.AllocationPolicy = spec.Policy
	}
	n := &SimNode{Spec: spec, NVML: nv, kube: kube, gpu: gpu, config: cfg}
	topo, err := n.Topology()
	if err != nil {
		return nil, nil, err
	}
	if spec.Replicas > 1 {
		cfg.TimeSlicing = &topology.TimeSlicing{RenameByDefault: spec.RenameByDefault}
		seen := map[string]bool{}
		units, err := topo.Units()
		if err != nil {
			return nil, nil, err
		}
		for _, u := range units {
			if !seen[u.BaseResource] {
				seen[u.BaseResource] = true
				cfg.TimeSlicing.Resources = append(cfg.TimeSlicing.Resources, topology.SharedResource{Name: u.BaseResource, Replicas: spec.Replicas})
			}
		}
		if topo, err = n.Topology(); err != nil {
			return nil, nil, err
		}
	}
	return n, topo, nil
}

// start runs the node's fake kubelet and its exporter.
func (n *SimNode) start(ctx context.Context, topo *topology.Node, o SimOptions) error {
	n.Kubelet = NewFakeKubelet(n.kube, topo, o.Seed)
	kctx, cancel := context.WithCancel(ctx)
	n.kubeletCancel = cancel
	go n.Kubelet.Run(kctx)
	n.opts = agent.Options{
		NodeName: n.Spec.Name, LeaseNamespace: LeaseNamespace,
		HeartbeatInterval: o.HeartbeatInterval, PollInterval: o.PollInterval, Resync: o.Resync,
		MinWriteInterval: 100 * time.Millisecond,
	}
	return n.StartExporter(ctx)
}

// Stop stops the node's exporter and fake kubelet (the machine is gone); the
// API objects stay.
func (n *SimNode) Stop() {
	n.StopExporter()
	if n.kubeletCancel != nil {
		n.kubeletCancel()
	}
}

// Topology is the node as the exporter sees it now (fake NVML + config).
func (n *SimNode) Topology() (*topology.Node, error) {
	snap, err := nvml.NewReader(n.NVML.Interface()).Snapshot()
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	cfg := n.config
	n.mu.Unlock()
	spec := agent.Desired(topology.NewCatalog(), agent.Inputs{NodeName: n.Spec.Name, Snapshot: snap, Config: cfg})
	if spec.State != "Ready" {
		return nil, fmt.Errorf("node %s: %s", n.Spec.Name, spec.Message)
	}
	return spec.Topology(), nil
}

// StartExporter runs the node's exporter (again).
func (n *SimNode) StartExporter(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cancel != nil {
		return nil
	}
	cfgFn := func() (*dpconfig.Config, error) {
		n.mu.Lock()
		defer n.mu.Unlock()
		return n.config, nil
	}
	// The REST clients of the clientsets' groups, as the exporter's binary
	// builds them with agent.NewClients.
	clients := agent.Clients{
		Core:         n.kube.CoreV1().RESTClient(),
		Coordination: n.kube.CoordinationV1().RESTClient(),
		GPUSlice:     n.gpu.GpusliceV1alpha1().RESTClient(),
	}
	a, err := agent.New(n.opts, clients, nvml.NewReader(n.NVML.Interface()), n.Kubelet, cfgFn, nil)
	if err != nil {
		return err
	}
	actx, cancel := context.WithCancel(ctx)
	n.cancel, n.done = cancel, make(chan struct{})
	go func(done chan struct{}) {
		defer close(done)
		_ = a.Run(actx)
	}(n.done)
	return nil
}

// StopExporter kills the node's exporter: its Lease stops being renewed.
func (n *SimNode) StopExporter() {
	n.mu.Lock()
	cancel, done := n.cancel, n.done
	n.cancel = nil
	n.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// SetLayout reconfigures MIG on every GPU (what the MIG manager does), then
// restarts the device plugin's view: the kubelet's devices and the Node's
// allocatable follow the new layout.
func (n *SimNode) SetLayout(ctx context.Context, profiles []string) error {
	// The MIG manager marks the node while it works; the exporter publishes
	// it Reconfiguring, then the new layout once the state is success.
	if err := n.setMIGConfigState(ctx, "pending"); err != nil {
		return err
	}
	for i := 0; i < n.Spec.GPUs; i++ {
		if err := n.NVML.SetLayout(i, profiles); err != nil {
			return err
		}
	}
	topo, err := n.Topology()
	if err != nil {
		return err
	}
	n.Kubelet.SetTopology(topo)
	res, err := capacity(topo)
	if err != nil {
		return err
	}
	if err := n.setDeviceResources(ctx, res); err != nil {
		return err
	}
	return n.setMIGConfigState(ctx, "success")
}

func (n *SimNode) setMIGConfigState(ctx context.Context, state string) error {
	return n.setNodeLabels(ctx, map[string]string{agent.MIGConfigStateLabel: state})
}

func capacity(topo *topology.Node) (corev1.ResourceList, error) {
	caps, err := topo.Capacity()
	if err != nil {
		return nil, err
	}
	res := corev1.ResourceList{}
	for name, n := range caps {
		res[corev1.ResourceName(name)] = *resource.NewQuantity(n, resource.DecimalSI)
	}
	return res, nil
}
