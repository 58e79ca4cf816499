package podresources

import (
	"context"
	"errors"
	"io/fs"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	podresourcesv1 "k8s.io/kubelet/pkg/apis/podresources/v1"

	"github.com/gpuslice/gpuslice/pkg/exporter/kubelet/kubelettest"

	"github.com/gpuslice/gpuslice/pkg/allocator"
	"github.com/gpuslice/gpuslice/pkg/exporter/kubelet"
)

// rpcCode is the gRPC status code of a call's error.
func rpcCode(err error) codes.Code {
	var e *kubelet.RPCError
	switch {
	case err == nil:
		return codes.OK
	case errors.As(err, &e):
		return codes.Code(e.Code)
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	}
	return codes.Unknown
}

const (
	gpuA = "GPU-3f1c9c52-7a1e-4b1e-9d0c-0a1b2c3d4e5f"
	gpuB = "GPU-8a6fb1fe-1c4e-2a73-3a2b-6c1f4c5d9e01"
	gpuC = "GPU-d2b7e4c0-55aa-4e2f-8b9c-7e6f5a4b3c2d"
	migX = "MIG-0e4f0c9a-1b2c-5d3e-8f4a-9b0c1d2e3f4a"
	migY = "MIG-5a6b7c8d-9e0f-5a1b-8c2d-3e4f5a6b7c8d"
)

// fakeKubelet serves the PodResources API on a unix socket.
type fakeKubelet struct {
	podresourcesv1.UnimplementedPodResourcesListerServer
	mu          sync.Mutex
	pods        []*podresourcesv1.PodResources
	allocatable []*podresourcesv1.ContainerDevices
	hang        bool
	calls       int
}

func (f *fakeKubelet) List(ctx context.Context, _ *podresourcesv1.ListPodResourcesRequest) (*podresourcesv1.ListPodResourcesResponse, error) {
	f.mu.Lock()
	f.calls++
	hang, pods := f.hang, f.pods
	f.mu.Unlock()
	if hang {
		<-ctx.Done()
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	return &podresourcesv1.ListPodResourcesResponse{PodResources: pods}, nil
}

func (f *fakeKubelet) GetAllocatableResources(context.Context, *podresourcesv1.AllocatableResourcesRequest) (*podresourcesv1.AllocatableResourcesResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &podresourcesv1.AllocatableResourcesResponse{Devices: f.allocatable}, nil
}

func (f *fakeKubelet) set(pods []*podresourcesv1.PodResources) {
	f.mu.Lock()
	f.pods = pods
	f.mu.Unlock()
}

func socketPath(t *testing.T) string { return kubelettest.SocketPath(t) }

func serve(t *testing.T, f *fakeKubelet) string { return kubelettest.Serve(t, f) }

func dial(t *testing.T, sock string, opts ...Option) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, sock, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func devs(resource string, ids ...string) *podresourcesv1.ContainerDevices {
	return &podresourcesv1.ContainerDevices{ResourceName: resource, DeviceIds: ids}
}

func numaDevs(resource string, node int64, ids ...string) *podresourcesv1.ContainerDevices {
	d := devs(resource, ids...)
	d.Topology = &podresourcesv1.TopologyInfo{Nodes: []*podresourcesv1.NUMANode{{ID: node}}}
	return d
}

func ctr(name string, d ...*podresourcesv1.ContainerDevices) *podresourcesv1.ContainerResources {
	return &podresourcesv1.ContainerResources{Name: name, Devices: d, CpuIds: []int64{2, 3}}
}

func pod(ns, name string, c ...*podresourcesv1.ContainerResources) *podresourcesv1.PodResources {
	return &podresourcesv1.PodResources{Namespace: ns, Name: name, Containers: c}
}

// kubeletPods is what a busy node's kubelet reports, the way it reports it:
// one ContainerDevices per device and NUMA node, in no particular order.
func kubeletPods() []*podresourcesv1.PodResources {
	return []*podresourcesv1.PodResources{
		pod("team-b", "infer-7d9f",
			ctr("server", devs("nvidia.com/mig-1g.10gb", migY), devs("nvidia.com/mig-1g.10gb", migX))),
		pod("kube-system", "sriov-agent",
			ctr("agent", devs("example.com/sriov-nic", "0000:3b:00.2"))),
		pod("team-a", "train-0",
			ctr("trainer",
				numaDevs("nvidia.com/gpu", 1, gpuB),
				numaDevs("nvidia.com/gpu", 0, gpuA),
				numaDevs("nvidia.com/gpu", 1, gpuA), // gpuA has affinity to NUMA 0 and 1
				devs("example.com/sriov-nic", "0000:3b:00.3")),
			ctr("logger", devs("example.com/sriov-nic", "0000:3b:00.4")),
			ctr("idle")),
		pod("team-a", "notebook",
			ctr("jupyter", devs("nvidia.com/gpu.shared", gpuC+"::3", gpuC+"::0")),
			ctr("helper", devs("nvidia.com/gpu.shared", gpuC+"::1"))),
		pod("hami", "vgpu-user",
			ctr("main", devs("nvidia.com/gpumem", "4096"), devs("nvidia.com/gpu-quarter", gpuB+"::2"))),
		pod("default", "no-devices", ctr("main")),
	}
}

func TestList(t *testing.T) {
	f := &fakeKubelet{pods: kubeletPods()}
	c := dial(t, serve(t, f))
	got, err := c.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	rd := func(res string, ids ...string) allocator.ResourceDevices {
		return allocator.ResourceDevices{Resource: res, DeviceIDs: ids}
	}
	want := []PodDevices{
		{Namespace: "team-a", Name: "notebook", Containers: []ContainerDevices{
			{Name: "helper", Devices: []allocator.ResourceDevices{rd("nvidia.com/gpu.shared", gpuC+"::1")}},
			{Name: "jupyter", Devices: []allocator.ResourceDevices{rd("nvidia.com/gpu.shared", gpuC+"::0", gpuC+"::3")}},
		}},
		{Namespace: "team-a", Name: "train-0", Containers: []ContainerDevices{
			{Name: "trainer", Devices: []allocator.ResourceDevices{rd("nvidia.com/gpu", gpuA, gpuB)}},
		}},
		{Namespace: "team-b", Name: "infer-7d9f", Containers: []ContainerDevices{
			{Name: "server", Devices: []allocator.ResourceDevices{rd("nvidia.com/mig-1g.10gb", migX, migY)}},
		}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("List\n got %+v\nwant %+v", got, want)
	}

	// A custom rename is a GPU resource only when named.
	c2 := dial(t, c.socket, WithExtraResources("nvidia.com/gpu-quarter"))
	got2, err := c2.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	hami := PodDevices{Namespace: "hami", Name: "vgpu-user", Containers: []ContainerDevices{
		{Name: "main", Devices: []allocator.ResourceDevices{rd("nvidia.com/gpu-quarter", gpuB+"::2")}},
	}}
	if want2 := append([]PodDevices{hami}, want...); !reflect.DeepEqual(got2, want2) {
		t.Fatalf("List with extra resources\n got %+v\nwant %+v", got2, want2)
	}
}

func TestListEmpty(t *testing.T) {
	c := dial(t, serve(t, &fakeKubelet{}))
	got, err := c.List(context.Background())
	if err != nil || len(got) != 0 {
		t.Fatalf("List = %v, %v", got, err)
	}
	if Fingerprint(got) != Fingerprint(nil) {
		t.Fatal("fingerprint of an empty list differs from nil")
	}
}

func TestAllocatable(t *testing.T) {
	f := &fakeKubelet{allocatable: []*podresourcesv1.ContainerDevices{
		numaDevs("nvidia.com/gpu.shared", 0, gpuA+"::0", gpuA+"::1"),
		numaDevs("nvidia.com/gpu.shared", 1, gpuA+"::1", gpuB+"::0"),
		devs("nvidia.com/mig-1g.10gb", migX),
		devs("example.com/sriov-nic", "0000:3b:00.2"),
	}}
	c := dial(t, serve(t, f))
	got, err := c.Allocatable(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []allocator.ResourceDevices{
		{Resource: "nvidia.com/gpu.shared", DeviceIDs: []string{gpuA + "::0", gpuA + "::1", gpuB + "::0"}},
		{Resource: "nvidia.com/mig-1g.10gb", DeviceIDs: []string{migX}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Allocatable\n got %+v\nwant %+v", got, want)
	}
}

func TestIsGPUResource(t *testing.T) {
	for name, want := range map[string]bool{
		"nvidia.com/gpu":         true,
		"nvidia.com/gpu.shared":  true,
		"nvidia.com/mig-1g.10gb": true,
		"nvidia.com/mig-":        false,
		"nvidia.com/gpu.":        false,
		"nvidia.com/gpumem":      false,
		"nvidia.com/gpu-quarter": false,
		"example.com/gpu":        false,
		"cpu":                    false,
	} {
		if got := IsGPUResource(name); got != want {
			t.Errorf("IsGPUResource(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestFingerprint(t *testing.T) {
	f := &fakeKubelet{pods: kubeletPods()}
	c := dial(t, serve(t, f))
	list := func() []PodDevices {
		t.Helper()
		got, err := c.List(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	base := list()
	fp := Fingerprint(base)
	if len(fp) != 64 {
		t.Fatalf("fingerprint %q is not a hex sha256", fp)
	}

	// The kubelet's order does not matter.
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		pods := kubeletPods()
		rng.Shuffle(len(pods), func(i, j int) { pods[i], pods[j] = pods[j], pods[i] })
		for _, p := range pods {
			rng.Shuffle(len(p.Containers), func(i, j int) { p.Containers[i], p.Containers[j] = p.Containers[j], p.Containers[i] })
			for _, c := range p.Containers {
				rng.Shuffle(len(c.Devices), func(i, j int) { c.Devices[i], c.Devices[j] = c.Devices[j], c.Devices[i] })
			}
		}
		f.set(pods)
		if got := Fingerprint(list()); got != fp {
			t.Fatalf("fingerprint changed with the kubelet's order: %s != %s", got, fp)
		}
	}

	// Nor does the order of the input, repeated IDs or empty containers.
	shuffled := clonePods(base)
	cs := shuffled[0].Containers
	cs[0], cs[1] = cs[1], cs[0]
	shuffled[0], shuffled[2] = shuffled[2], shuffled[0]
	ids := shuffled[1].Containers[0].Devices[0].DeviceIDs
	ids[0], ids[1] = ids[1], ids[0]
	shuffled[1].Containers[0].Devices[0].DeviceIDs = append(ids, ids[0])
	shuffled[1].Containers = append(shuffled[1].Containers, ContainerDevices{Name: "empty"})
	shuffled = append(shuffled, PodDevices{Namespace: "x", Name: "no-gpu"})
	if got := Fingerprint(shuffled); got != fp {
		t.Fatalf("fingerprint depends on input order: %s != %s", got, fp)
	}

	// Any change of devices changes it.
	changes := map[string]func([]PodDevices){
		"device ID": func(p []PodDevices) { p[1].Containers[0].Devices[0].DeviceIDs[1] = gpuC },
		"replica":   func(p []PodDevices) { p[0].Containers[0].Devices[0].DeviceIDs[0] = gpuC + "::2" },
		"resource":  func(p []PodDevices) { p[2].Containers[0].Devices[0].Resource = "nvidia.com/mig-2g.20gb" },
		"container": func(p []PodDevices) { p[2].Containers[0].Name = "server2" },
		"pod":       func(p []PodDevices) { p[2].Name = "infer-8e0a" },
		"namespace": func(p []PodDevices) { p[2].Namespace = "team-c" },
		"uid":       func(p []PodDevices) { p[2].UID = "6b1c3a4e-0000-4000-8000-000000000001" },
		"released": func(p []PodDevices) {
			p[1].Containers[0].Devices[0].DeviceIDs = p[1].Containers[0].Devices[0].DeviceIDs[:1]
		},
		"moved": func(p []PodDevices) {
			// Same devices, other container of the pod.
			p[0].Containers[0].Devices, p[0].Containers[1].Devices = p[0].Containers[1].Devices, p[0].Containers[0].Devices
		},
	}
	seen := map[string]string{fp: "base"}
	for name, change := range changes {
		p := clonePods(base)
		change(p)
		got := Fingerprint(p)
		if prev, dup := seen[got]; dup {
			t.Errorf("change %q gives the fingerprint of %q", name, prev)
		}
		seen[got] = name
	}
	// And List sees a change on the node.
	pods := kubeletPods()
	pods[0].Containers[0].Devices[0].DeviceIds = []string{"MIG-11111111-2222-5333-8444-555555555555"}
	f.set(pods)
	if Fingerprint(list()) == fp {
		t.Fatal("fingerprint unchanged after the kubelet reported other devices")
	}
}

func clonePods(in []PodDevices) []PodDevices {
	out := make([]PodDevices, len(in))
	for i, p := range in {
		out[i] = p
		out[i].Containers = make([]ContainerDevices, len(p.Containers))
		for j, c := range p.Containers {
			out[i].Containers[j] = ContainerDevices{Name: c.Name, Devices: make([]allocator.ResourceDevices, len(c.Devices))}
			for k, d := range c.Devices {
				out[i].Containers[j].Devices[k] = allocator.ResourceDevices{Resource: d.Resource, DeviceIDs: append([]string(nil), d.DeviceIDs...)}
			}
		}
	}
	return out
}

func TestListTimeout(t *testing.T) {
	f := &fakeKubelet{pods: kubeletPods(), hang: true}
	c := dial(t, serve(t, f), WithCallTimeout(200*time.Millisecond))
	start := time.Now()
	_, err := c.List(context.Background())
	elapsed := time.Since(start)
	if err == nil {
		t.Fatal("List on a hanging kubelet succeeded")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("List error %v: code %s, want DeadlineExceeded", err, rpcCode(err))
	}
	if elapsed < 150*time.Millisecond || elapsed > 5*time.Second {
		t.Errorf("List took %v with a 200ms call timeout", elapsed)
	}
	if !strings.Contains(err.Error(), c.socket) {
		t.Errorf("error %q does not name the socket", err)
	}

	// The caller's earlier deadline wins over the call timeout.
	c2 := dial(t, c.socket, WithCallTimeout(time.Minute))
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := c2.List(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("List with a short context: %v", err)
	}

	// The connection recovers when the kubelet answers again.
	f.mu.Lock()
	f.hang = false
	f.mu.Unlock()
	if _, err := c.List(context.Background()); err != nil {
		t.Fatalf("List after the hang: %v", err)
	}
}

func TestMaxMessageSize(t *testing.T) {
	var pods []*podresourcesv1.PodResources
	for i := range 200 {
		pods = append(pods, pod("bulk", strings.Repeat("p", 200)+string(rune('a'+i%26)), ctr("c", devs("nvidia.com/gpu", gpuA))))
	}
	sock := serve(t, &fakeKubelet{pods: pods})
	c := dial(t, sock, WithMaxMessageSize(1024))
	if _, err := c.List(context.Background()); rpcCode(err) != codes.ResourceExhausted {
		t.Fatalf("List of a large response with a 1 KiB limit: %v", err)
	}
	if _, err := dial(t, sock).List(context.Background()); err != nil {
		t.Fatalf("List with the default limit: %v", err)
	}
}

func TestConcurrentList(t *testing.T) {
	c := dial(t, serve(t, &fakeKubelet{pods: kubeletPods()}))
	var wg sync.WaitGroup
	fps := make([]string, 8)
	for i := range fps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := c.List(context.Background())
			if err != nil {
				t.Error(err)
				return
			}
			fps[i] = Fingerprint(got)
		}()
	}
	wg.Wait()
	for _, fp := range fps[1:] {
		if fp != fps[0] {
			t.Fatal("concurrent Lists disagree")
		}
	}
}

func TestDialErrors(t *testing.T) {
	ctx := context.Background()

	missing := filepath.Join(t.TempDir(), "pod-resources", "kubelet.sock")
	if c, err := Dial(ctx, missing); err == nil {
		c.Close()
		t.Fatal("Dial on a missing socket succeeded")
	} else {
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("error %q does not wrap fs.ErrNotExist", err)
		}
		if !strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), "missing") {
			t.Errorf("error %q does not say the socket %s is missing", err, missing)
		}
	}

	regular := filepath.Join(t.TempDir(), "kubelet.sock")
	if err := os.WriteFile(regular, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if c, err := Dial(ctx, regular); err == nil {
		c.Close()
		t.Fatal("Dial on a regular file succeeded")
	} else if !strings.Contains(err.Error(), "not a unix socket") {
		t.Errorf("Dial on a regular file: %v", err)
	}

	// A socket file left behind by a kubelet that is gone.
	stale := socketPath(t)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	start := time.Now()
	if c, err := Dial(ctx, stale, WithCallTimeout(5*time.Second)); err == nil {
		c.Close()
		t.Fatal("Dial on a stale socket succeeded")
	} else if !strings.Contains(err.Error(), stale) {
		t.Errorf("error %q does not name the socket", err)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("Dial on a stale socket took %v: it should fail fast", d)
	}
}

func TestListAfterClose(t *testing.T) {
	sock := serve(t, &fakeKubelet{pods: kubeletPods()})
	ctx := context.Background()
	c, err := Dial(ctx, sock)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.List(ctx); err == nil {
		t.Fatal("List after Close succeeded")
	}
}

func TestKubeletRestart(t *testing.T) {
	f := &fakeKubelet{pods: kubeletPods()}
	sock := socketPath(t)
	start := func() (stop func()) {
		lis, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		srv := grpc.NewServer()
		podresourcesv1.RegisterPodResourcesListerServer(srv, f)
		done := make(chan struct{})
		go func() { defer close(done); _ = srv.Serve(lis) }()
		return func() { srv.Stop(); <-done }
	}
	stop := start()
	c := dial(t, sock)
	if _, err := c.List(context.Background()); err != nil {
		t.Fatal(err)
	}
	stop()
	stop = start()
	defer stop()
	// The client reconnects by itself; allow it a few attempts.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := c.List(context.Background())
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("List after a kubelet restart: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestKubeletConversion(t *testing.T) {
	c := dial(t, serve(t, &fakeKubelet{pods: kubeletPods()}))
	pods, err := c.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	pods = append(pods, PodDevices{Namespace: "x", Name: "uid-known", UID: "u-1", Containers: []ContainerDevices{{Name: "c"}}})
	back := FromKubelet(ToKubelet(pods))
	if !reflect.DeepEqual(back, pods) {
		t.Fatalf("round trip\n got %+v\nwant %+v", back, pods)
	}
	if FromKubelet(nil) != nil || ToKubelet(nil) != nil {
		t.Fatal("nil does not convert to nil")
	}
	if Fingerprint(pods) != kubelet.Fingerprint(ToKubelet(pods)) {
		t.Fatal("fingerprints of the same devices differ between the packages")
	}
}
