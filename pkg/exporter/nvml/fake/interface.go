package fake

import (
	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
)

// newInterface wires the library-level calls. Besides the methods on
// handles, the nvml.Interface forms of the calls the fake implements
// (lib.DeviceGetUUID(d) for d.GetUUID(), ...) delegate to the handles; every
// other call panics, as go-nvml's mocks do for unset methods.
func (f *Fake) newInterface() *mock.Interface {
	ext := &mock.ExtendedInterface{LookupSymbolFunc: func(string) error { return nil }}
	l := &mock.Interface{}
	l.ExtensionsFunc = func() nvml.ExtendedInterface { return ext }
	l.InitFunc = func() nvml.Return { return nvml.SUCCESS }
	l.InitWithFlagsFunc = func(uint32) nvml.Return { return nvml.SUCCESS }
	l.ShutdownFunc = func() nvml.Return { return nvml.SUCCESS }
	l.ErrorStringFunc = func(r nvml.Return) string { return r.Error() }
	l.SystemGetDriverVersionFunc = func() (string, nvml.Return) { return DriverVersion, nvml.SUCCESS }
	l.SystemGetNVMLVersionFunc = func() (string, nvml.Return) { return NVMLVersion, nvml.SUCCESS }
	l.SystemGetCudaDriverVersionFunc = func() (int, nvml.Return) { return CUDADriverVersion, nvml.SUCCESS }
	l.DeviceGetCountFunc = func() (int, nvml.Return) { return len(f.gpus), nvml.SUCCESS }
	l.DeviceGetHandleByIndexFunc = func(i int) (nvml.Device, nvml.Return) {
		if i < 0 || i >= len(f.gpus) {
			return nil, nvml.ERROR_INVALID_ARGUMENT
		}
		return f.gpus[i].dev, nvml.SUCCESS
	}
	l.DeviceGetHandleByUUIDFunc = func(uuid string) (nvml.Device, nvml.Return) {
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, g := range f.gpus {
			if g.uuid == uuid {
				return g.dev, nvml.SUCCESS
			}
			for _, in := range g.instances {
				if in.uuid == uuid {
					return in.migDev, nvml.SUCCESS
				}
			}
		}
		return nil, nvml.ERROR_NOT_FOUND
	}
	l.EventSetCreateFunc = func() (nvml.EventSet, nvml.Return) { return f.newEventSet(), nvml.SUCCESS }
	l.EventSetWaitFunc = func(s nvml.EventSet, ms uint32) (nvml.EventData, nvml.Return) { return s.Wait(ms) }
	l.EventSetFreeFunc = func(s nvml.EventSet) nvml.Return { return s.Free() }

	l.DeviceGetIndexFunc = func(d nvml.Device) (int, nvml.Return) { return d.GetIndex() }
	l.DeviceGetUUIDFunc = func(d nvml.Device) (string, nvml.Return) { return d.GetUUID() }
	l.DeviceGetNameFunc = func(d nvml.Device) (string, nvml.Return) { return d.GetName() }
	l.DeviceGetMemoryInfoFunc = func(d nvml.Device) (nvml.Memory, nvml.Return) { return d.GetMemoryInfo() }
	l.DeviceGetMigModeFunc = func(d nvml.Device) (int, int, nvml.Return) { return d.GetMigMode() }
	l.DeviceSetMigModeFunc = func(d nvml.Device, mode int) (nvml.Return, nvml.Return) { return d.SetMigMode(mode) }
	l.DeviceGetGpuInstanceProfileInfoFunc = func(d nvml.Device, idx int) (nvml.GpuInstanceProfileInfo, nvml.Return) {
		return d.GetGpuInstanceProfileInfo(idx)
	}
	l.DeviceGetGpuInstancePossiblePlacementsFunc = func(d nvml.Device, info *nvml.GpuInstanceProfileInfo) ([]nvml.GpuInstancePlacement, nvml.Return) {
		return d.GetGpuInstancePossiblePlacements(info)
	}
	l.DeviceGetGpuInstanceRemainingCapacityFunc = func(d nvml.Device, info *nvml.GpuInstanceProfileInfo) (int, nvml.Return) {
		return d.GetGpuInstanceRemainingCapacity(info)
	}
	l.DeviceCreateGpuInstanceFunc = func(d nvml.Device, info *nvml.GpuInstanceProfileInfo) (nvml.GpuInstance, nvml.Return) {
		return d.CreateGpuInstance(info)
	}
	l.DeviceCreateGpuInstanceWithPlacementFunc = func(d nvml.Device, info *nvml.GpuInstanceProfileInfo, pl *nvml.GpuInstancePlacement) (nvml.GpuInstance, nvml.Return) {
		return d.CreateGpuInstanceWithPlacement(info, pl)
	}
	l.DeviceGetGpuInstancesFunc = func(d nvml.Device, info *nvml.GpuInstanceProfileInfo) ([]nvml.GpuInstance, nvml.Return) {
		return d.GetGpuInstances(info)
	}
	l.DeviceGetGpuInstanceByIdFunc = func(d nvml.Device, id int) (nvml.GpuInstance, nvml.Return) { return d.GetGpuInstanceById(id) }
	l.DeviceGetMaxMigDeviceCountFunc = func(d nvml.Device) (int, nvml.Return) { return d.GetMaxMigDeviceCount() }
	l.DeviceGetMigDeviceHandleByIndexFunc = func(d nvml.Device, j int) (nvml.Device, nvml.Return) { return d.GetMigDeviceHandleByIndex(j) }
	l.DeviceIsMigDeviceHandleFunc = func(d nvml.Device) (bool, nvml.Return) { return d.IsMigDeviceHandle() }
	l.DeviceGetDeviceHandleFromMigDeviceHandleFunc = func(d nvml.Device) (nvml.Device, nvml.Return) {
		return d.GetDeviceHandleFromMigDeviceHandle()
	}
	l.DeviceGetGpuInstanceIdFunc = func(d nvml.Device) (int, nvml.Return) { return d.GetGpuInstanceId() }
	l.DeviceGetComputeInstanceIdFunc = func(d nvml.Device) (int, nvml.Return) { return d.GetComputeInstanceId() }
	l.DeviceGetSupportedEventTypesFunc = func(d nvml.Device) (uint64, nvml.Return) { return d.GetSupportedEventTypes() }
	l.DeviceRegisterEventsFunc = func(d nvml.Device, types uint64, s nvml.EventSet) nvml.Return { return d.RegisterEvents(types, s) }
	l.GpuInstanceGetInfoFunc = func(gi nvml.GpuInstance) (nvml.GpuInstanceInfo, nvml.Return) { return gi.GetInfo() }
	l.GpuInstanceDestroyFunc = func(gi nvml.GpuInstance) nvml.Return { return gi.Destroy() }
	return l
}
