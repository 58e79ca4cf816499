// Package kubelet is the exporter's client of the kubelet's PodResources API
// (v1), the node-local gRPC service on a unix socket that reports which
// device IDs the kubelet actually gave each container. The exporter
// reconciles it with what the scheduler assumed.
//
// It speaks the API's two unary calls itself: gRPC over HTTP/2 without TLS
// (golang.org/x/net/http2's client on the socket), the responses decoded
// field by field from the protobuf wire format (api.proto of
// k8s.io/kubelet/pkg/apis/podresources/v1 at v0.37.1). gRPC and the
// generated API code would be about a tenth of the exporter's binary, and
// the binary's size is most of its resident memory. Its types do not link
// the scheduler's packages either (package podresources has the same client
// with allocator.ResourceDevices).
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
package kubelet

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gpuslice/gpuslice/pkg/topology"
)

const (
	// DefaultSocket is where the kubelet serves the PodResources API.
	DefaultSocket = "/var/lib/kubelet/pod-resources/kubelet.sock"
	// DefaultMaxMessageSize bounds a response, as the kubelet's own client
	// does (16 MiB).
	DefaultMaxMessageSize = 16 << 20
	// DefaultCallTimeout bounds each call, and Dial's wait for the connection
	// when its context has no earlier deadline.
	DefaultCallTimeout = 10 * time.Second
)

// The API's methods (service v1.PodResourcesLister).
const (
	methodList        = "/v1.PodResourcesLister/List"
	methodAllocatable = "/v1.PodResourcesLister/GetAllocatableResources"
)

// ResourceDevices is the device IDs one container holds of one resource.
type ResourceDevices struct {
	Resource  string
	DeviceIDs []string
}

// ContainerDevices is the GPU devices one container holds, one entry per
// resource.
type ContainerDevices struct {
	Name    string
	Devices []ResourceDevices
}

// PodDevices is the GPU devices one pod holds.
type PodDevices struct {
	Namespace, Name string
	// UID is empty when it comes from the kubelet: the v1 API does not report
	// it (see the package documentation).
	UID        string
	Containers []ContainerDevices
}

// Option configures a Client.
type Option func(*options)

type options struct {
	callTimeout time.Duration
	maxMsgSize  int
	extra       map[string]bool
}

// WithCallTimeout bounds each call (and Dial's connection wait). Zero or
// negative means DefaultCallTimeout.
func WithCallTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.callTimeout = d
		}
	}
}

// WithMaxMessageSize bounds the size of a response. Zero or negative means
// DefaultMaxMessageSize.
func WithMaxMessageSize(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.maxMsgSize = n
		}
	}
}

// WithExtraResources adds resource names, matched exactly, whose devices are
// GPU devices too: e.g. a time-slicing rename outside nvidia.com/gpu.*.
func WithExtraResources(names ...string) Option {
	return func(o *options) {
		for _, n := range names {
			o.extra[n] = true
		}
	}
}

// IsGPUResource reports whether a resource name is one of the NVIDIA device
// plugin's GPU resources: nvidia.com/gpu, nvidia.com/gpu.<suffix> or
// nvidia.com/mig-<profile>.
func IsGPUResource(name string) bool {
	if name == topology.ResourceGPU {
		return true
	}
	if s, ok := strings.CutPrefix(name, topology.ResourceGPU+"."); ok && s != "" {
		return true
	}
	_, ok := topology.ProfileFromResource(name)
	return ok
}

// Client talks to the kubelet's PodResources API. It is safe for concurrent
// use. Calls share one HTTP/2 connection, dialled again when it breaks (the
// kubelet restarted).
type Client struct {
	socket string
	opts   options
	conn   *unaryClient
	closed atomic.Bool
}

// Dial checks the PodResources socket (DefaultSocket when empty) and that
// something accepts connections on it, so that a missing socket, a path
// that is not a socket, or a stale socket nobody listens on fail here.
func Dial(ctx context.Context, socket string, opts ...Option) (*Client, error) {
	o := options{callTimeout: DefaultCallTimeout, maxMsgSize: DefaultMaxMessageSize, extra: map[string]bool{}}
	for _, opt := range opts {
		opt(&o)
	}
	if socket == "" {
		socket = DefaultSocket
	}
	fi, err := os.Stat(socket)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("kubelet pod resources socket %s is missing: %w", socket, err)
		}
		return nil, fmt.Errorf("kubelet pod resources socket %s: %w", socket, err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return nil, fmt.Errorf("kubelet pod resources socket %s is not a unix socket (mode %s)", socket, fi.Mode())
	}
	abs, err := filepath.Abs(socket)
	if err != nil {
		return nil, fmt.Errorf("kubelet pod resources socket %s: %w", socket, err)
	}
	dial := func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", abs)
	}
	cctx, cancel := context.WithTimeout(ctx, o.callTimeout)
	defer cancel()
	probe, err := dial(cctx)
	if err != nil {
		return nil, fmt.Errorf("connecting to kubelet pod resources socket %s: %w", socket, err)
	}
	_ = probe.Close()
	return &Client{socket: socket, opts: o, conn: newUnaryClient(dial, o.maxMsgSize)}, nil
}

// Close closes the connection; later calls fail.
func (c *Client) Close() error {
	c.closed.Store(true)
	c.conn.close()
	return nil
}

func (c *Client) call(ctx context.Context, method string) ([]byte, error) {
	if c.closed.Load() {
		return nil, fmt.Errorf("kubelet pod resources %s on %s: the client is closed", method, c.socket)
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.callTimeout)
	defer cancel()
	// Both requests are empty messages.
	resp, err := c.conn.call(ctx, method, nil)
	if err != nil {
		return nil, fmt.Errorf("kubelet pod resources %s on %s: %w", method, c.socket, err)
	}
	return resp, nil
}

// List returns the GPU devices of every pod the kubelet reports, sorted by
// namespace and name, containers by name, resources by name and device IDs
// in order. Pods and containers without GPU devices are left out. A device
// the kubelet lists more than once for a container (it does so for devices
// with affinity to several NUMA nodes) appears once.
func (c *Client) List(ctx context.Context) ([]PodDevices, error) {
	raw, err := c.call(ctx, methodList)
	if err != nil {
		return nil, err
	}
	pods, err := decodeListResponse(raw)
	if err != nil {
		return nil, fmt.Errorf("kubelet pod resources %s on %s: %w", methodList, c.socket, err)
	}
	var out []PodDevices
	for _, pr := range pods {
		pd := PodDevices{Namespace: pr.namespace, Name: pr.name}
		for _, cr := range pr.containers {
			devs := c.gpuDevices(cr.devices)
			if len(devs) > 0 {
				pd.Containers = append(pd.Containers, ContainerDevices{Name: cr.name, Devices: devs})
			}
		}
		if len(pd.Containers) > 0 {
			slices.SortStableFunc(pd.Containers, func(a, b ContainerDevices) int { return strings.Compare(a.Name, b.Name) })
			out = append(out, pd)
		}
	}
	slices.SortStableFunc(out, comparePods)
	return out, nil
}

// Allocatable returns the GPU devices the kubelet can hand out: every device
// the device plugin advertises, healthy or not (GetAllocatableResources). It
// is ground truth for the advertised resource names and replica IDs, e.g. to
// check the device plugin's config against.
func (c *Client) Allocatable(ctx context.Context) ([]ResourceDevices, error) {
	raw, err := c.call(ctx, methodAllocatable)
	if err != nil {
		return nil, err
	}
	devs, err := decodeAllocatableResponse(raw)
	if err != nil {
		return nil, fmt.Errorf("kubelet pod resources %s on %s: %w", methodAllocatable, c.socket, err)
	}
	return c.gpuDevices(devs), nil
}

func (c *Client) isGPU(name string) bool { return IsGPUResource(name) || c.opts.extra[name] }

// gpuDevices keeps the GPU resources, merges entries of one resource and
// drops repeated device IDs.
func (c *Client) gpuDevices(in []containerDevices) []ResourceDevices {
	byRes := map[string][]string{}
	for _, d := range in {
		if !c.isGPU(d.resourceName) {
			continue
		}
		byRes[d.resourceName] = append(byRes[d.resourceName], d.deviceIDs...)
	}
	return canonicalResources(byRes)
}

func canonicalResources(byRes map[string][]string) []ResourceDevices {
	var out []ResourceDevices
	for name, ids := range byRes {
		ids = slices.Clone(ids)
		slices.Sort(ids)
		ids = slices.Compact(ids)
		if len(ids) == 0 {
			continue
		}
		out = append(out, ResourceDevices{Resource: name, DeviceIDs: ids})
	}
	slices.SortFunc(out, func(a, b ResourceDevices) int { return strings.Compare(a.Resource, b.Resource) })
	return out
}

func comparePods(a, b PodDevices) int {
	if c := strings.Compare(a.Namespace, b.Namespace); c != 0 {
		return c
	}
	if c := strings.Compare(a.Name, b.Name); c != 0 {
		return c
	}
	return strings.Compare(a.UID, b.UID)
}

// Fingerprint is a stable SHA-256 (hex) of the devices held: it does not
// depend on the order of pods, containers, resources or device IDs, on
// repeated device IDs, nor on containers or pods without devices. The
// exporter compares fingerprints to detect a change.
func Fingerprint(pods []PodDevices) string {
	type ctr struct {
		name string
		devs []ResourceDevices
	}
	type pod struct {
		ns, name, uid string
		ctrs          []ctr
	}
	canon := make([]pod, 0, len(pods))
	for _, p := range pods {
		cp := pod{ns: p.Namespace, name: p.Name, uid: p.UID}
		for _, c := range p.Containers {
			byRes := map[string][]string{}
			for _, rd := range c.Devices {
				byRes[rd.Resource] = append(byRes[rd.Resource], rd.DeviceIDs...)
			}
			if devs := canonicalResources(byRes); len(devs) > 0 {
				cp.ctrs = append(cp.ctrs, ctr{name: c.Name, devs: devs})
			}
		}
		if len(cp.ctrs) == 0 {
			continue
		}
		slices.SortFunc(cp.ctrs, func(a, b ctr) int {
			if c := strings.Compare(a.name, b.name); c != 0 {
				return c
			}
			return compareDevices(a.devs, b.devs)
		})
		canon = append(canon, cp)
	}
	slices.SortFunc(canon, func(a, b pod) int {
		for _, c := range []int{strings.Compare(a.ns, b.ns), strings.Compare(a.name, b.name), strings.Compare(a.uid, b.uid)} {
			if c != 0 {
				return c
			}
		}
		return slices.CompareFunc(a.ctrs, b.ctrs, func(x, y ctr) int {
			if c := strings.Compare(x.name, y.name); c != 0 {
				return c
			}
			return compareDevices(x.devs, y.devs)
		})
	})

	h := sha256.New()
	var buf []byte
	str := func(s string) {
		buf = binary.AppendUvarint(buf[:0], uint64(len(s)))
		buf = append(buf, s...)
		h.Write(buf)
	}
	num := func(n int) {
		buf = binary.AppendUvarint(buf[:0], uint64(n))
		h.Write(buf)
	}
	str("gpuslice.podresources.v1")
	num(len(canon))
	for _, p := range canon {
		str(p.ns)
		str(p.name)
		str(p.uid)
		num(len(p.ctrs))
		for _, c := range p.ctrs {
			str(c.name)
			num(len(c.devs))
			for _, rd := range c.devs {
				str(rd.Resource)
				num(len(rd.DeviceIDs))
				for _, id := range rd.DeviceIDs {
					str(id)
				}
			}
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// compareDevices orders canonical resource lists, so that two containers of
// the same name (which the kubelet never reports) still sort stably.
func compareDevices(a, b []ResourceDevices) int {
	return slices.CompareFunc(a, b, func(x, y ResourceDevices) int {
		if c := strings.Compare(x.Resource, y.Resource); c != 0 {
			return c
		}
		return slices.Compare(x.DeviceIDs, y.DeviceIDs)
	})
}
