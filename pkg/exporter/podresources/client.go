// Package podresources is the client of the kubelet's PodResources API (v1)
// of package kubelet, with the devices as the scheduler's packages know
// them (allocator.ResourceDevices): the types the simulated kubelets of the
// tests report. The exporter's binary uses package kubelet directly, whose
// types keep the allocator package, and with it k8s.io/api/core/v1, out of
// it.
//
// The v1 API identifies pods by namespace and name only: PodResources has no
// UID field. List therefore leaves PodDevices.UID empty; the exporter maps
// namespace/name to the UID through its pod informer, and must treat a pod
// whose UID changed under the same name as a different pod.
//
// Only devices of GPU resources are kept: nvidia.com/gpu, nvidia.com/gpu.*
// (nvidia.com/gpu.shared and other time-slicing renames under that prefix),
// nvidia.com/mig-* and the names given with WithExtraResources (custom
// renames). Mapping device IDs to GPUs is the exporter's business.
package podresources

import (
	"context"
	"time"

	"github.com/gpuslice/gpuslice/pkg/allocator"
	"github.com/gpuslice/gpuslice/pkg/exporter/kubelet"
)

const (
	// DefaultSocket is where the kubelet serves the PodResources API.
	DefaultSocket = kubelet.DefaultSocket
	// DefaultMaxMessageSize bounds a response, as the kubelet's own client
	// does (16 MiB).
	DefaultMaxMessageSize = kubelet.DefaultMaxMessageSize
	// DefaultCallTimeout bounds each call, and Dial's wait for the connection
	// when its context has no earlier deadline.
	DefaultCallTimeout = kubelet.DefaultCallTimeout
)

// PodDevices is the GPU devices one pod holds.
type PodDevices struct {
	Namespace, Name string
	// UID is empty when it comes from the kubelet: the v1 API does not report
	// it (see the package documentation).
	UID        string
	Containers []ContainerDevices
}

// ContainerDevices is the GPU devices one container holds, one entry per
// resource.
type ContainerDevices struct {
	Name    string
	Devices []allocator.ResourceDevices
}

// Option configures a Client.
type Option = kubelet.Option

// WithCallTimeout bounds each call (and Dial's connection wait). Zero or
// negative means DefaultCallTimeout.
func WithCallTimeout(d time.Duration) Option { return kubelet.WithCallTimeout(d) }

// WithMaxMessageSize bounds the size of a response. Zero or negative means
// DefaultMaxMessageSize.
func WithMaxMessageSize(n int) Option { return kubelet.WithMaxMessageSize(n) }

// WithExtraResources adds resource names, matched exactly, whose devices are
// GPU devices too: e.g. a time-slicing rename outside nvidia.com/gpu.*.
func WithExtraResources(names ...string) Option { return kubelet.WithExtraResources(names...) }

// IsGPUResource reports whether a resource name is one of the NVIDIA device
// plugin's GPU resources: nvidia.com/gpu, nvidia.com/gpu.<suffix> or
// nvidia.com/mig-<profile>.
func IsGPUResource(name string) bool { return kubelet.IsGPUResource(name) }

// Client talks to the kubelet's PodResources API. It is safe for concurrent
// use and reconnects by itself after a kubelet restart.
type Client struct {
	socket string
	c      *kubelet.Client
}

// Dial checks the PodResources socket (DefaultSocket when empty) and that
// something accepts connections on it, so that a missing socket, a path
// that is not a socket, or a stale socket nobody listens on fail here.
func Dial(ctx context.Context, socket string, opts ...Option) (*Client, error) {
	c, err := kubelet.Dial(ctx, socket, opts...)
	if err != nil {
		return nil, err
	}
	if socket == "" {
		socket = DefaultSocket
	}
	return &Client{socket: socket, c: c}, nil
}

// Close closes the connection; later calls fail.
func (c *Client) Close() error { return c.c.Close() }

// List returns the GPU devices of every pod the kubelet reports, sorted by
// namespace and name, containers by name, resources by name and device IDs
// in order. Pods and containers without GPU devices are left out. A device
// the kubelet lists more than once for a container (it does so for devices
// with affinity to several NUMA nodes) appears once.
func (c *Client) List(ctx context.Context) ([]PodDevices, error) {
	pods, err := c.c.List(ctx)
	if err != nil {
		return nil, err
	}
	return FromKubelet(pods), nil
}

// Allocatable returns the GPU devices the kubelet can hand out: every device
// the device plugin advertises, healthy or not (GetAllocatableResources).
func (c *Client) Allocatable(ctx context.Context) ([]allocator.ResourceDevices, error) {
	devs, err := c.c.Allocatable(ctx)
	if err != nil {
		return nil, err
	}
	return fromKubeletDevices(devs), nil
}

// Fingerprint is a stable SHA-256 (hex) of the devices held: it does not
// depend on the order of pods, containers, resources or device IDs, on
// repeated device IDs, nor on containers or pods without devices. It is
// kubelet.Fingerprint of the same devices.
func Fingerprint(pods []PodDevices) string { return kubelet.Fingerprint(ToKubelet(pods)) }

// ToKubelet converts pods to package kubelet's types.
func ToKubelet(pods []PodDevices) []kubelet.PodDevices {
	if pods == nil {
		return nil
	}
	out := make([]kubelet.PodDevices, len(pods))
	for i, p := range pods {
		out[i] = kubelet.PodDevices{Namespace: p.Namespace, Name: p.Name, UID: p.UID}
		if p.Containers != nil {
			out[i].Containers = make([]kubelet.ContainerDevices, len(p.Containers))
		}
		for j, c := range p.Containers {
			out[i].Containers[j] = kubelet.ContainerDevices{Name: c.Name}
			if c.Devices != nil {
				out[i].Containers[j].Devices = make([]kubelet.ResourceDevices, len(c.Devices))
			}
			for k, d := range c.Devices {
				out[i].Containers[j].Devices[k] = kubelet.ResourceDevices(d)
			}
		}
	}
	return out
}

// FromKubelet converts pods from package kubelet's types.
func FromKubelet(pods []kubelet.PodDevices) []PodDevices {
	if pods == nil {
		return nil
	}
	out := make([]PodDevices, len(pods))
	for i, p := range pods {
		out[i] = PodDevices{Namespace: p.Namespace, Name: p.Name, UID: p.UID}
		if p.Containers != nil {
			out[i].Containers = make([]ContainerDevices, len(p.Containers))
		}
		for j, c := range p.Containers {
			out[i].Containers[j] = ContainerDevices{Name: c.Name, Devices: fromKubeletDevices(c.Devices)}
		}
	}
	return out
}

func fromKubeletDevices(devs []kubelet.ResourceDevices) []allocator.ResourceDevices {
	if devs == nil {
		return nil
	}
	out := make([]allocator.ResourceDevices, len(devs))
	for i, d := range devs {
		out[i] = allocator.ResourceDevices(d)
	}
	return out
}
