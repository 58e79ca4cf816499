package fake

import (
	"fmt"
	"sort"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"

	"github.com/gpuslice/gpuslice/pkg/topology"
)

// supportedEvents are the event types every fake GPU accepts: those the
// NVIDIA device plugin registers.
const supportedEvents = nvml.EventTypeXidCriticalError | nvml.EventTypeSingleBitEccError | nvml.EventTypeDoubleBitEccError

// gpu is one physical GPU. Everything but the immutable identity is guarded
// by f.mu.
type gpu struct {
	f        *Fake
	index    int
	product  string
	uuid     string
	memMiB   int64
	model    *topology.Model           // nil: not MIG capable
	profiles map[int]*topology.Profile // NVML profile index -> profile
	dev      *mock.Device

	readErr      nvml.Return
	mig, pending int
	instances    []*instance // sorted by start
	created      int         // MIG devices ever created: the next UUID number
}

// instance is one GPU instance with its single compute instance / MIG device.
type instance struct {
	g       *gpu
	id      uint32
	profile *topology.Profile
	start   int
	uuid    string
	alive   bool
	handle  *mock.GpuInstance
	migDev  *mock.Device
}

func (g *gpu) layoutLocked() []topology.GPUInstance {
	out := make([]topology.GPUInstance, 0, len(g.instances)+1)
	for _, in := range g.instances {
		out = append(out, topology.GPUInstance{Profile: in.profile.Name, Start: in.start, Size: in.profile.MemorySlices})
	}
	return out
}

// fitsLocked reports whether p at start can join the current layout.
func (g *gpu) fitsLocked(p *topology.Profile, start int) bool {
	layout := append(g.layoutLocked(), topology.GPUInstance{Profile: p.Name, Start: start, Size: p.MemorySlices})
	return g.model.ValidateLayout(layout) == nil
}

// createLocked creates a GPU instance of p at start, enforcing the catalog.
func (g *gpu) createLocked(p *topology.Profile, start int) (*instance, nvml.Return) {
	if g.mig != nvml.DEVICE_MIG_ENABLE {
		return nil, nvml.ERROR_NOT_SUPPORTED
	}
	if !p.AllowsStart(start) {
		return nil, nvml.ERROR_INVALID_ARGUMENT
	}
	if !g.fitsLocked(p, start) {
		return nil, nvml.ERROR_INSUFFICIENT_RESOURCES
	}
	in := &instance{
		g:       g,
		id:      g.freeIDLocked(),
		profile: p,
		start:   start,
		uuid:    "MIG-" + uuidOf(g.f.node, g.index, g.created),
		alive:   true,
	}
	g.created++
	in.handle = in.newHandle()
	in.migDev = in.newMIGDevice()
	g.instances = append(g.instances, in)
	sort.Slice(g.instances, func(i, j int) bool { return g.instances[i].start < g.instances[j].start })
	return in, nvml.SUCCESS
}

// freeIDLocked returns the lowest unused GPU instance ID, from 1.
func (g *gpu) freeIDLocked() uint32 {
	used := map[uint32]bool{}
	for _, in := range g.instances {
		used[in.id] = true
	}
	id := uint32(1)
	for used[id] {
		id++
	}
	return id
}

func (g *gpu) destroyLocked(in *instance) {
	in.alive = false
	for i, x := range g.instances {
		if x == in {
			g.instances = append(g.instances[:i], g.instances[i+1:]...)
			return
		}
	}
}

func (g *gpu) destroyAllLocked() {
	for _, in := range g.instances {
		in.alive = false
	}
	g.instances = nil
}

// applyLayoutLocked replaces the instances with Pack(profiles).
func (g *gpu) applyLayoutLocked(profiles []string) error {
	layout, err := g.model.Pack(profiles)
	if err != nil {
		return err
	}
	g.destroyAllLocked()
	for _, want := range layout {
		p, _ := g.model.Profile(want.Profile)
		if _, ret := g.createLocked(p, want.Start); ret != nvml.SUCCESS {
			return fmt.Errorf("creating %s at %d: %v", p.Name, want.Start, ret)
		}
	}
	return nil
}

func (g *gpu) setModeLocked(mode int) {
	g.mig, g.pending = mode, mode
	if mode != nvml.DEVICE_MIG_ENABLE {
		g.destroyAllLocked()
	}
}

// profileByID resolves a GpuInstanceProfileInfo argument (model and
// profiles are immutable: no lock needed).
func (g *gpu) profileByID(info *nvml.GpuInstanceProfileInfo) (*topology.Profile, nvml.Return) {
	if info == nil {
		return nil, nvml.ERROR_INVALID_ARGUMENT
	}
	if g.model == nil {
		return nil, nvml.ERROR_NOT_SUPPORTED
	}
	for _, p := range g.profiles {
		if uint32(p.ID) == info.Id {
			return p, nvml.SUCCESS
		}
	}
	return nil, nvml.ERROR_INVALID_ARGUMENT
}

// lock takes f.mu and returns the GPU's injected error, if any.
func (g *gpu) lock() nvml.Return {
	g.f.mu.Lock()
	return g.readErr
}

func (g *gpu) unlock() { g.f.mu.Unlock() }

// newDevice wires the physical GPU's device handle.
func (g *gpu) newDevice() *mock.Device {
	d := &mock.Device{}
	d.GetIndexFunc = func() (int, nvml.Return) {
		defer g.unlock()
		if r := g.lock(); r != nvml.SUCCESS {
			return 0, r
		}
		return g.index, nvml.SUCCESS
	}
	d.GetUUIDFunc = func() (string, nvml.Return) {
		defer g.unlock()
		if r := g.lock(); r != nvml.SUCCESS {
			return "", r
		}
		return g.uuid, nvml.SUCCESS
	}
	d.GetNameFunc = func() (string, nvml.Return) {
		defer g.unlock()
		if r := g.lock(); r != nvml.SUCCESS {
			return "", r
		}
		return g.product, nvml.SUCCESS
	}
	d.GetMemoryInfoFunc = func() (nvml.Memory, nvml.Return) {
		defer g.unlock()
		if r := g.lock(); r != nvml.SUCCESS {
			return nvml.Memory{}, r
		}
		total := uint64(g.memMiB) << 20
		return nvml.Memory{Total: total, Free: total}, nvml.SUCCESS
	}
	d.GetMigModeFunc = func() (int, int, nvml.Return) {
		defer g.unlock()
		if r := g.lock(); r != nvml.SUCCESS {
			return 0, 0, r
		}
		if g.model == nil {
			return 0, 0, nvml.ERROR_NOT_SUPPORTED
		}
		return g.mig, g.pending, nvml.SUCCESS
	}
	d.SetMigModeFunc = func(mode int) (nvml.Return, nvml.Return) {
		defer g.unlock()
		if r := g.lock(); r != nvml.SUCCESS {
			return r, r
		}
		switch {
		case g.model == nil:
			return nvml.ERROR_NOT_SUPPORTED, nvml.ERROR_NOT_SUPPORTED
		case mode != nvml.DEVICE_MIG_ENABLE && mode != nvml.DEVICE_MIG_DISABLE:
			return nvml.ERROR_INVALID_ARGUMENT, nvml.ERROR_INVALID_ARGUMENT
		case mode == nvml.DEVICE_MIG_DISABLE && len(g.instances) > 0:
			// GPU instances keep MIG on, as the driver refuses.
			return nvml.ERROR_IN_USE, nvml.ERROR_IN_USE
		}
		g.setModeLocked(mode) // as if the GPU reset succeeded
		return nvml.SUCCESS, nvml.SUCCESS
	}
	d.GetGpuInstanceProfileInfoFunc = func(idx int) (nvml.GpuInstanceProfileInfo, nvml.Return) {
		defer g.unlock()
		if r := g.lock(); r != nvml.SUCCESS {
			return nvml.GpuInstanceProfileInfo{}, r
		}
		if idx < 0 || idx >= nvml.GPU_INSTANCE_PROFILE_COUNT {
			return nvml.GpuInstanceProfileInfo{}, nvml.ERROR_INVALID_ARGUMENT
		}
		p, ok := g.profiles[idx]
		if !ok {
			return nvml.GpuInstanceProfileInfo{}, nvml.ERROR_NOT_SUPPORTED
		}
		return profileInfo(p), nvml.SUCCESS
	}
	d.GetGpuInstancePossiblePlacementsFunc = func(info *nvml.GpuInstanceProfileInfo) ([]nvml.GpuInstancePlacement, nvml.Return) {
		defer g.unlock()
		if r := g.lock(); r != nvml.SUCCESS {
			return nil, r
		}
		p, r := g.profileByID(info)
		if r != nvml.SUCCESS {
			return nil, r
		}
		out := make([]nvml.GpuInstancePlacement, 0, len(p.Placements))
		for _, s := range p.Placements {
			out = append(out, nvml.GpuInstancePlacement{Start: uint32(s), Size: uint32(p.MemorySlices)})
		}
		return out, nvml.SUCCESS
	}
	d.GetGpuInstanceRemainingCapacityFunc = func(info *nvml.GpuInstanceProfileInfo) (int, nvml.Return) {
		defer g.unlock()
		if r := g.lock(); r != nvml.SUCCESS {
			return 0, r
		}
		p, r := g.profileByID(info)
		if r != nvml.SUCCESS {
			return 0, r
		}
		if g.mig != nvml.DEVICE_MIG_ENABLE {
			return 0, nvml.ERROR_NOT_SUPPORTED
		}
		// Greedily add instances of p at their lowest free start.
		layout := g.layoutLocked()
		n := 0
		for _, s := range p.Placements {
			next := append(layout, topology.GPUInstance{Profile: p.Name, Start: s, Size: p.MemorySlices})
			if g.model.ValidateLayout(next) == nil {
				layout = next
				n++
			}
		}
		return n, nvml.SUCCESS
	}
	d.CreateGpuInstanceWithPlacementFunc = func(info *nvml.GpuInstanceProfileInfo, pl *nvml.GpuInstancePlacement) (nvml.GpuInstance, nvml.Return) {
		defer g.unlock()
		if r := g.lock(); r != nvml.SUCCESS {
			return nil, r
		}
		p, r := g.profileByID(info)
		if r != nvml.SUCCESS {
			return nil, r
		}
		if pl == nil || (pl.Size != 0 && int(pl.Size) != p.MemorySlices) {
			return nil, nvml.ERROR_INVALID_ARGUMENT
		}
		in, r := g.createLocked(p, int(pl.Start))
		if r != nvml.SUCCESS {
			return nil, r
		}
		return in.handle, nvml.SUCCESS
	}
	d.CreateGpuInstanceFunc = func(info *nvml.GpuInstanceProfileInfo) (nvml.GpuInstance, nvml.Return) {
		defer g.unlock()
		if r := g.lock(); r != nvml.SUCCESS {
			return nil, r
		}
		p, r := g.profileByID(info)
		if r != nvml.SUCCESS {
			return nil, r
		}
		if g.mig != nvml.DEVICE_MIG_ENABLE {
			return nil, nvml.ERROR_NOT_SUPPORTED
		}
		// The driver picks the placement; the fake takes the lowest
		// start that fits (the real driver's choice may differ).
		for _, s := range p.Placements {
			if g.fitsLocked(p, s) {
				in, r := g.createLocked(p, s)
				if r != nvml.SUCCESS {
					return nil, r
				}
				return in.handle, nvml.SUCCESS
			}
		}
		return nil, nvml.ERROR_INSUFFICIENT_RESOURCES
	}
	d.GetGpuInstancesFunc = func(info *nvml.GpuInstanceProfileInfo) ([]nvml.GpuInstance, nvml.Return) {
		defer g.unlock()
		if r := g.lock(); r != nvml.SUCCESS {
			return nil, r
		}
		p, r := g.profileByID(info)
		if r != nvml.SUCCESS {
			return nil, r
		}
		if g.mig != nvml.DEVICE_MIG_ENABLE {
			return nil, nvml.ERROR_NOT_SUPPORTED
		}
		var out []nvml.GpuInstance
		for _, in := range g.instances {
			if in.profile == p {
				out = append(out, in.handle)
			}
		}
		return out, nvml.SUCCESS
	}
	d.GetGpuInstanceByIdFunc = func(id int) (nvml.GpuInstance, nvml.Return) {
		defer g.unlock()
		if r := g.lock(); r != nvml.SUCCESS {
			return nil, r
		}
		if g.model == nil || g.mig != nvml.DEVICE_MIG_ENABLE {
			return nil, nvml.ERROR_NOT_SUPPORTED
		}
		for _, in := range g.instances {
			if int(in.id) == id {
				return in.handle, nvml.SUCCESS
			}
		}
		return nil, nvml.ERROR_NOT_FOUND
	}
	d.GetMaxMigDeviceCountFunc = func() (int, nvml.Return) {
		defer g.unlock()
		if r := g.lock(); r != nvml.SUCCESS {
			return 0, r
		}
		if g.model == nil {
			return 0, nvml.ERROR_NOT_SUPPORTED
		}
		return g.model.ComputeSlices, nvml.SUCCESS
	}
	d.GetMigDeviceHandleByIndexFunc = func(j int) (nvml.Device, nvml.Return) {
		defer g.unlock()
		if r := g.lock(); r != nvml.SUCCESS {
			return nil, r
		}
		switch {
		case g.model == nil:
			return nil, nvml.ERROR_NOT_SUPPORTED
		case j < 0 || j >= g.model.ComputeSlices:
			return nil, nvml.ERROR_INVALID_ARGUMENT
		case g.mig != nvml.DEVICE_MIG_ENABLE || j >= len(g.instances):
			return nil, nvml.ERROR_NOT_FOUND
		}
		return g.instances[j].migDev, nvml.SUCCESS
	}
	d.IsMigDeviceHandleFunc = func() (bool, nvml.Return) { return false, nvml.SUCCESS }
	d.GetDeviceHandleFromMigDeviceHandleFunc = func() (nvml.Device, nvml.Return) {
		return nil, nvml.ERROR_INVALID_ARGUMENT
	}
	d.GetGpuInstanceIdFunc = func() (int, nvml.Return) { return 0, nvml.ERROR_INVALID_ARGUMENT }
	d.GetComputeInstanceIdFunc = func() (int, nvml.Return) { return 0, nvml.ERROR_INVALID_ARGUMENT }
	d.GetSupportedEventTypesFunc = func() (uint64, nvml.Return) {
		defer g.unlock()
		if r := g.lock(); r != nvml.SUCCESS {
			return 0, r
		}
		return supportedEvents, nvml.SUCCESS
	}
	d.RegisterEventsFunc = func(types uint64, set nvml.EventSet) nvml.Return {
		defer g.unlock()
		if r := g.lock(); r != nvml.SUCCESS {
			return r
		}
		ms, ok := set.(*mock.EventSet)
		if !ok {
			return nvml.ERROR_INVALID_ARGUMENT
		}
		es, ok := g.f.sets[ms]
		if !ok {
			return nvml.ERROR_INVALID_ARGUMENT
		}
		if types&^supportedEvents != 0 {
			return nvml.ERROR_NOT_SUPPORTED
		}
		es.masks[g.index] |= types
		if types&nvml.EventTypeXidCriticalError != 0 {
			for _, ev := range g.f.pending[g.index] {
				es.pushLocked(ev)
			}
			delete(g.f.pending, g.index)
		}
		return nvml.SUCCESS
	}
	return d
}

// newHandle wires the GPU instance handle.
func (in *instance) newHandle() *mock.GpuInstance {
	g := in.g
	h := &mock.GpuInstance{}
	h.GetInfoFunc = func() (nvml.GpuInstanceInfo, nvml.Return) {
		defer g.unlock()
		if r := g.lock(); r != nvml.SUCCESS {
			return nvml.GpuInstanceInfo{}, r
		}
		if !in.alive {
			return nvml.GpuInstanceInfo{}, nvml.ERROR_INVALID_ARGUMENT
		}
		return nvml.GpuInstanceInfo{
			Device:    g.dev,
			Id:        in.id,
			ProfileId: uint32(in.profile.ID),
			Placement: nvml.GpuInstancePlacement{Start: uint32(in.start), Size: uint32(in.profile.MemorySlices)},
		}, nvml.SUCCESS
	}
	h.DestroyFunc = func() nvml.Return {
		defer g.unlock()
		if r := g.lock(); r != nvml.SUCCESS {
			return r
		}
		if !in.alive {
			return nvml.ERROR_INVALID_ARGUMENT
		}
		// Its compute instance (the MIG device) goes with it.
		g.destroyLocked(in)
		return nvml.SUCCESS
	}
	return h
}

// newMIGDevice wires the MIG device handle of the instance's compute instance.
func (in *instance) newMIGDevice() *mock.Device {
	g := in.g
	d := &mock.Device{}
	// check takes f.mu and reports the GPU's error or a stale handle.
	check := func() nvml.Return {
		if r := g.lock(); r != nvml.SUCCESS {
			return r
		}
		if !in.alive {
			return nvml.ERROR_INVALID_ARGUMENT
		}
		return nvml.SUCCESS
	}
	d.GetUUIDFunc = func() (string, nvml.Return) {
		defer g.unlock()
		if r := check(); r != nvml.SUCCESS {
			return "", r
		}
		return in.uuid, nvml.SUCCESS
	}
	d.GetNameFunc = func() (string, nvml.Return) {
		defer g.unlock()
		if r := check(); r != nvml.SUCCESS {
			return "", r
		}
		return g.product + " MIG " + in.profile.Name, nvml.SUCCESS
	}
	d.GetMemoryInfoFunc = func() (nvml.Memory, nvml.Return) {
		defer g.unlock()
		if r := check(); r != nvml.SUCCESS {
			return nvml.Memory{}, r
		}
		total := uint64(in.profile.MemoryMiB) << 20
		return nvml.Memory{Total: total, Free: total}, nvml.SUCCESS
	}
	d.GetGpuInstanceIdFunc = func() (int, nvml.Return) {
		defer g.unlock()
		if r := check(); r != nvml.SUCCESS {
			return 0, r
		}
		return int(in.id), nvml.SUCCESS
	}
	d.GetComputeInstanceIdFunc = func() (int, nvml.Return) {
		defer g.unlock()
		if r := check(); r != nvml.SUCCESS {
			return 0, r
		}
		return 0, nvml.SUCCESS
	}
	d.IsMigDeviceHandleFunc = func() (bool, nvml.Return) { return true, nvml.SUCCESS }
	d.GetDeviceHandleFromMigDeviceHandleFunc = func() (nvml.Device, nvml.Return) { return g.dev, nvml.SUCCESS }
	return d
}
