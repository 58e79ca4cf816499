package nvml

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	gonvml "github.com/NVIDIA/go-nvml/pkg/nvml"
)

// Reader is what the exporter needs from NVML, free of go-nvml types.
type Reader interface {
	// Snapshot reads every GPU: UUID, index, NVML name, total memory (MiB),
	// MIG mode current and pending, and, when MIG is on, every GPU instance
	// with its NVML GI profile ID, placement (start, size in memory slices)
	// and the UUID of its MIG device (the ID the NVIDIA device plugin
	// advertises). Per-GPU read errors are reported in the GPU's Err field,
	// not as a failure of the whole snapshot; only a failure to count the
	// GPUs fails it.
	Snapshot() (*Snapshot, error)
	// WatchHealth delivers XID events from an NVML event set to out until
	// ctx ends (it then returns nil) or the Reader is closed (ErrClosed).
	// An XID is Critical unless the NVIDIA device plugin ignores it as an
	// application error (see ApplicationXIDs). It returns an error when no
	// event set can be created, when no GPU accepts XID events, or when
	// waiting fails.
	WatchHealth(ctx context.Context, out chan<- HealthEvent) error
	// Close stops WatchHealth calls in progress and, for a Reader from Open,
	// shuts NVML down. It is idempotent.
	Close() error
}

// Snapshot is one read of the node's GPUs.
type Snapshot struct {
	// DriverVersion is empty when NVML cannot report it.
	DriverVersion string
	// GPUs in NVML index order.
	GPUs []GPU
}

// GPU is one physical GPU.
type GPU struct {
	UUID string
	// Index is the NVML device index.
	Index int
	// Name is the NVML device name, e.g. "NVIDIA A100-SXM4-40GB".
	Name string
	// MemoryMiB is the total framebuffer memory; 0 when unsupported.
	MemoryMiB int64
	// MIGEnabled is the current MIG mode, MIGPending the mode after the next
	// GPU reset. Both are false on GPUs without MIG support.
	MIGEnabled, MIGPending bool
	// Instances are the GPU instances, sorted by placement start; only read
	// when MIG is currently enabled.
	Instances []Instance
	// Err lists what could not be read ("" when everything was); the fields
	// it concerns hold zero values.
	Err string
}

// Instance is one MIG GPU instance.
type Instance struct {
	// ProfileID is the NVML GPU-instance profile ID (nvidia-smi mig -lgip's
	// ID column; topology.Profile.ID), not the NVML_GPU_INSTANCE_PROFILE_*
	// index used to look it up.
	ProfileID int
	// Start and Size are the placement in memory slices.
	Start, Size int
	// DeviceUUID is the "MIG-..." UUID of the instance's MIG device; empty
	// when the instance has no compute instance yet. If it has several, the
	// one with the lowest MIG device index is kept.
	DeviceUUID string
}

// HealthEvent is one XID reported by NVML.
type HealthEvent struct {
	// GPUUUID is the physical GPU's UUID (the parent's for MIG devices).
	GPUUUID string
	XID     uint64
	// Critical marks XIDs that make the NVIDIA device plugin mark the GPU
	// unhealthy.
	Critical bool
	// Time is when the event was received (NVML gives no timestamp).
	Time time.Time
}

// ErrClosed is returned by a Reader after Close.
var ErrClosed = errors.New("nvml: reader closed")

// eventWaitMS bounds each blocking NVML event wait, and so how long
// WatchHealth takes to notice that its context ended or the Reader closed.
const eventWaitMS = 1000

type reader struct {
	lib gonvml.Interface
	// owned: the Reader initialized lib (Open) and shuts it down on Close.
	owned bool

	mu       sync.Mutex
	closed   bool
	done     chan struct{}
	watchers sync.WaitGroup
}

// NewReader returns the Reader over lib: the real library or a mock. The
// caller initializes lib and owns its lifecycle: Close does not shut it down.
func NewReader(lib gonvml.Interface) Reader {
	return newReader(lib, false)
}

func newReader(lib gonvml.Interface, owned bool) *reader {
	return &reader{lib: lib, owned: owned, done: make(chan struct{})}
}

func (r *reader) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	close(r.done)
	r.mu.Unlock()
	// No event wait may run while NVML shuts down.
	r.watchers.Wait()
	if !r.owned {
		return nil
	}
	if ret := r.lib.Shutdown(); ret != gonvml.SUCCESS {
		return fmt.Errorf("nvml: shutting down NVML: %w", ret)
	}
	return nil
}

func (r *reader) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

func (r *reader) Snapshot() (*Snapshot, error) {
	if r.isClosed() {
		return nil, ErrClosed
	}
	count, ret := r.lib.DeviceGetCount()
	if ret != gonvml.SUCCESS {
		return nil, fmt.Errorf("nvml: counting GPUs: %w", ret)
	}
	snap := &Snapshot{GPUs: make([]GPU, 0, count)}
	// The driver version is informational: on failure it stays empty.
	if v, ret := r.lib.SystemGetDriverVersion(); ret == gonvml.SUCCESS {
		snap.DriverVersion = v
	}
	for i := 0; i < count; i++ {
		snap.GPUs = append(snap.GPUs, readGPU(r.lib, i))
	}
	return snap, nil
}

// gpuErrors collects the per-GPU read failures that end up in GPU.Err.
type gpuErrors []string

func (e *gpuErrors) add(format string, args ...any) {
	*e = append(*e, fmt.Sprintf(format, args...))
}

func readGPU(lib gonvml.Interface, index int) (g GPU) {
	g.Index = index
	var errs gpuErrors
	defer func() { g.Err = strings.Join(errs, "; ") }()

	dev, ret := lib.DeviceGetHandleByIndex(index)
	if ret != gonvml.SUCCESS {
		errs.add("device handle: %v", ret)
		return g
	}
	if g.UUID, ret = dev.GetUUID(); ret != gonvml.SUCCESS {
		g.UUID = ""
		errs.add("UUID: %v", ret)
		if ret == gonvml.ERROR_GPU_IS_LOST {
			return g
		}
	}
	if g.Name, ret = dev.GetName(); ret != gonvml.SUCCESS {
		g.Name = ""
		errs.add("name: %v", ret)
	}
	switch mem, ret := dev.GetMemoryInfo(); ret {
	case gonvml.SUCCESS:
		g.MemoryMiB = int64(mem.Total >> 20)
	case gonvml.ERROR_NOT_SUPPORTED:
	default:
		errs.add("memory info: %v", ret)
	}
	switch current, pending, ret := dev.GetMigMode(); ret {
	case gonvml.SUCCESS:
		g.MIGEnabled = current == gonvml.DEVICE_MIG_ENABLE
		g.MIGPending = pending == gonvml.DEVICE_MIG_ENABLE
	case gonvml.ERROR_NOT_SUPPORTED:
		// No MIG on this GPU.
	default:
		errs.add("MIG mode: %v", ret)
	}
	if g.MIGEnabled {
		// A reconfiguration between two calls invalidates handles or
		// shows a MIG device of an instance not yet listed: re-read.
		var migErrs gpuErrors
		for attempt := 0; attempt < migReadAttempts; attempt++ {
			migErrs = nil
			if g.Instances = readInstances(dev, &migErrs); len(migErrs) == 0 {
				break
			}
		}
		errs = append(errs, migErrs...)
	}
	return g
}

// migReadAttempts bounds the re-reads of a GPU's MIG instances.
const migReadAttempts = 3

// readInstances lists the GPU instances of every profile the GPU supports
// and attaches the UUID of each instance's MIG device.
func readInstances(dev gonvml.Device, errs *gpuErrors) []Instance {
	byID := map[uint32]*Instance{}
	for idx := 0; idx < gonvml.GPU_INSTANCE_PROFILE_COUNT; idx++ {
		info, ret := dev.GetGpuInstanceProfileInfo(idx)
		switch ret {
		case gonvml.SUCCESS:
		case gonvml.ERROR_NOT_SUPPORTED, gonvml.ERROR_INVALID_ARGUMENT:
			// Not a profile of this GPU, or one this driver predates.
			continue
		default:
			errs.add("GPU instance profile %d: %v", idx, ret)
			continue
		}
		if info.InstanceCount == 0 {
			// go-nvml sizes its result buffer by InstanceCount and
			// indexes its first element: never call it with 0.
			continue
		}
		gis, ret := dev.GetGpuInstances(&info)
		switch ret {
		case gonvml.SUCCESS:
		case gonvml.ERROR_NOT_SUPPORTED:
			continue
		default:
			errs.add("GPU instances of profile ID %d: %v", info.Id, ret)
			continue
		}
		for _, gi := range gis {
			gii, ret := gi.GetInfo()
			if ret != gonvml.SUCCESS {
				errs.add("GPU instance info (profile ID %d): %v", info.Id, ret)
				continue
			}
			if _, seen := byID[gii.Id]; seen {
				continue
			}
			byID[gii.Id] = &Instance{
				ProfileID: int(gii.ProfileId),
				Start:     int(gii.Placement.Start),
				Size:      int(gii.Placement.Size),
			}
		}
	}
	if len(byID) > 0 {
		attachMIGDevices(dev, byID, errs)
	}
	out := make([]Instance, 0, len(byID))
	for _, in := range byID {
		out = append(out, *in)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Start != out[j].Start {
			return out[i].Start < out[j].Start
		}
		return out[i].ProfileID < out[j].ProfileID
	})
	return out
}

// attachMIGDevices maps MIG device handles to their GPU instances.
func attachMIGDevices(dev gonvml.Device, byID map[uint32]*Instance, errs *gpuErrors) {
	slots, ret := dev.GetMaxMigDeviceCount()
	switch ret {
	case gonvml.SUCCESS:
	case gonvml.ERROR_NOT_SUPPORTED:
		return
	default:
		errs.add("max MIG device count: %v", ret)
		return
	}
	for j := 0; j < slots; j++ {
		mig, ret := dev.GetMigDeviceHandleByIndex(j)
		switch ret {
		case gonvml.SUCCESS:
		case gonvml.ERROR_NOT_FOUND:
			continue // no MIG device at this index
		default:
			errs.add("MIG device %d: %v", j, ret)
			continue
		}
		giID, ret := mig.GetGpuInstanceId()
		if ret != gonvml.SUCCESS {
			errs.add("GPU instance of MIG device %d: %v", j, ret)
			continue
		}
		uuid, ret := mig.GetUUID()
		if ret != gonvml.SUCCESS {
			errs.add("UUID of MIG device %d: %v", j, ret)
			continue
		}
		in, ok := byID[uint32(giID)]
		if !ok {
			// Created after the instances were listed: the next
			// snapshot sees both.
			errs.add("MIG device %s belongs to GPU instance %d, which was not listed", uuid, giID)
			continue
		}
		if in.DeviceUUID == "" {
			in.DeviceUUID = uuid
		}
	}
}
