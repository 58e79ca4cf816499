// Package fake is an in-memory NVML for tests: go-nvml's generated mocks
// (mock.Interface, mock.Device, mock.GpuInstance, mock.EventSet) wired to a
// model of a node's GPUs that enforces the real MIG placement rules of
// pkg/topology's catalog rather than those of go-nvml's server mocks (the
// dgxa100 mock does no overlap checks; the H100/H200/B200 mock placements
// are wrong).
//
// Creating a GPU instance through the nvml API checks the profile's allowed
// starts (ERROR_INVALID_ARGUMENT otherwise) and then the whole layout with
// (*topology.Model).ValidateLayout: overlap, compute budget, per-profile
// maximum, one +me instance (ERROR_INSUFFICIENT_RESOURCES otherwise). Every
// GPU instance gets one compute instance spanning it, hence one MIG device.
//
// UUIDs are deterministic and follow pkg/topology/fixtures: a GPU is
// "GPU-" + u(node, index, -1) and the n-th MIG device ever created on a GPU
// (n counts from 0 across reconfigurations) is "MIG-" + u(node, index, n),
// where u formats the first 16 bytes of sha256("<node>/<gpu>/<n>") as
// 8-4-4-4-12 hex. The instances of a GPU's initial layout are created in
// (*topology.Model).Pack order, as fixtures.Build numbers them, so a fake
// built from the same node name, product and profiles reports the UUIDs of
// fixtures.Build's topology.
//
// A Fake is safe for concurrent use.
package fake

import (
	"crypto/sha256"
	"fmt"
	"sync"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"

	"github.com/gpuslice/gpuslice/pkg/topology"
)

// Versions the fake reports.
const (
	DriverVersion     = "550.90.07"
	NVMLVersion       = "12.550.90.07"
	CUDADriverVersion = 12040
)

// GPUSpec describes one GPU of a Fake.
type GPUSpec struct {
	// Product is the NVML device name, e.g. "NVIDIA A100-SXM4-40GB".
	Product string
	// MIG lists the profiles of the GPU's initial layout, placed with
	// (*topology.Model).Pack; empty means MIG disabled.
	MIG []string
	// MemoryMiB overrides the total memory. 0 takes the memory of the
	// catalog's largest profile for the product (as pkg/topology/fixtures
	// does); products outside the catalog must set it.
	MemoryMiB int64
}

// Fake is an in-memory NVML. Its nvml.Interface is Interface().
type Fake struct {
	node string
	lib  *mock.Interface

	mu      sync.Mutex
	gpus    []*gpu
	sets    map[*mock.EventSet]*eventSet
	pending map[int][]nvml.EventData // XIDs raised before any event set watched the GPU
}

// New builds a node's NVML with one GPU per spec, at NVML indexes 0, 1, ...
func New(nodeName string, gpus []GPUSpec) (*Fake, error) {
	cat := topology.NewCatalog()
	f := &Fake{
		node:    nodeName,
		sets:    map[*mock.EventSet]*eventSet{},
		pending: map[int][]nvml.EventData{},
	}
	for i, s := range gpus {
		g, err := f.newGPU(cat, i, s)
		if err != nil {
			return nil, fmt.Errorf("fake NVML gpu %d: %w", i, err)
		}
		f.gpus = append(f.gpus, g)
	}
	f.lib = f.newInterface()
	return f, nil
}

func (f *Fake) newGPU(cat *topology.Catalog, index int, s GPUSpec) (*gpu, error) {
	if s.Product == "" {
		return nil, fmt.Errorf("no product")
	}
	model, known := cat.Lookup(s.Product)
	g := &gpu{
		f:       f,
		index:   index,
		product: s.Product,
		uuid:    "GPU-" + uuidOf(f.node, index, -1),
		memMiB:  s.MemoryMiB,
		readErr: nvml.SUCCESS,
		mig:     nvml.DEVICE_MIG_DISABLE,
		pending: nvml.DEVICE_MIG_DISABLE,
	}
	if known {
		g.model = model
		g.profiles = profileIndexes(model)
		if g.memMiB == 0 {
			for _, p := range model.Profiles {
				g.memMiB = max(g.memMiB, p.MemoryMiB)
			}
		}
	}
	if g.memMiB <= 0 {
		return nil, fmt.Errorf("%q is not in the MIG catalog: set MemoryMiB", s.Product)
	}
	g.dev = g.newDevice()
	if len(s.MIG) == 0 {
		return g, nil
	}
	if !known {
		return nil, fmt.Errorf("MIG layout %v on %q, which has no MIG catalog entry", s.MIG, s.Product)
	}
	g.mig, g.pending = nvml.DEVICE_MIG_ENABLE, nvml.DEVICE_MIG_ENABLE
	if err := g.applyLayoutLocked(s.MIG); err != nil {
		return nil, err
	}
	return g, nil
}

// Interface returns the fake's NVML, for nvml.NewReader or direct calls.
// Init and Shutdown always succeed and are not required.
func (f *Fake) Interface() nvml.Interface { return f.lib }

// SetUnhealthy raises XID xid on GPU index: every event set registered for
// XID events on that GPU receives it; if none is, it is queued for the next
// one that registers (so a WatchHealth started just after still sees it).
// An index out of range is ignored.
func (f *Fake) SetUnhealthy(index int, xid uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if index < 0 || index >= len(f.gpus) {
		return
	}
	ev := nvml.EventData{
		Device:            f.gpus[index].dev,
		EventType:         nvml.EventTypeXidCriticalError,
		EventData:         xid,
		GpuInstanceId:     0xFFFFFFFF, // the whole GPU, not one MIG device
		ComputeInstanceId: 0xFFFFFFFF,
	}
	delivered := false
	for _, es := range f.sets {
		if es.masks[index]&nvml.EventTypeXidCriticalError != 0 {
			es.pushLocked(ev)
			delivered = true
		}
	}
	if !delivered {
		f.pending[index] = append(f.pending[index], ev)
	}
}

// SetLayout reconfigures GPU index's MIG instances: the profiles are placed
// with (*topology.Model).Pack, then every instance is destroyed and the new
// ones created (new MIG device UUIDs). MIG must be enabled. On error nothing
// changes.
func (f *Fake) SetLayout(index int, profiles []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	g, err := f.gpuLocked(index)
	if err != nil {
		return err
	}
	if g.model == nil {
		return fmt.Errorf("gpu %d: %q has no MIG catalog entry", index, g.product)
	}
	if g.mig != nvml.DEVICE_MIG_ENABLE {
		return fmt.Errorf("gpu %d: MIG is disabled", index)
	}
	return g.applyLayoutLocked(profiles)
}

// SetMIGMode sets GPU index's MIG mode, current and pending, as if the GPU
// had been reset. Disabling destroys every instance; enabling leaves the
// GPU without instances (see SetLayout).
func (f *Fake) SetMIGMode(index int, enabled bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	g, err := f.gpuLocked(index)
	if err != nil {
		return err
	}
	if g.model == nil {
		return fmt.Errorf("gpu %d: %q does not support MIG", index, g.product)
	}
	g.setModeLocked(migMode(enabled))
	return nil
}

// SetMIGPending sets only GPU index's pending MIG mode: the state of a mode
// change that waits for a GPU reset.
func (f *Fake) SetMIGPending(index int, enabled bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	g, err := f.gpuLocked(index)
	if err != nil {
		return err
	}
	if g.model == nil {
		return fmt.Errorf("gpu %d: %q does not support MIG", index, g.product)
	}
	g.pending = migMode(enabled)
	return nil
}

// SetDeviceError makes every call on GPU index's device handle (and its MIG
// devices) fail with ret, e.g. nvml.ERROR_GPU_IS_LOST; nvml.SUCCESS clears
// it. DeviceGetHandleByIndex still succeeds, as with a real lost GPU.
func (f *Fake) SetDeviceError(index int, ret nvml.Return) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	g, err := f.gpuLocked(index)
	if err != nil {
		return err
	}
	g.readErr = ret
	return nil
}

func (f *Fake) gpuLocked(index int) (*gpu, error) {
	if index < 0 || index >= len(f.gpus) {
		return nil, fmt.Errorf("gpu %d: the fake has %d GPUs", index, len(f.gpus))
	}
	return f.gpus[index], nil
}

func migMode(enabled bool) int {
	if enabled {
		return nvml.DEVICE_MIG_ENABLE
	}
	return nvml.DEVICE_MIG_DISABLE
}

// uuidOf is pkg/topology/fixtures' UUID derivation (unexported there),
// replicated so that fixture topologies and the fake agree.
func uuidOf(node string, gpu, inst int) string {
	h := sha256.Sum256([]byte(fmt.Sprintf("%s/%d/%d", node, gpu, inst)))
	return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}
