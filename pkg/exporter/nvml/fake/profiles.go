package fake

import (
	"github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/gpuslice/gpuslice/pkg/topology"
)

// profileIndexes maps NVML's GPU-instance profile indexes
// (nvml.GPU_INSTANCE_PROFILE_*, the argument of GetGpuInstanceProfileInfo) to
// the catalog's profiles, whose ID is the profile ID NVML returns in
// GpuInstanceProfileInfo.Id. The index names the compute slices; REV1 is
// the media-extension variant and REV2 the 1-compute-slice profile with
// twice the memory:
//
//	A100/H100/H200/B200: 1_SLICE 1g (19), 1_SLICE_REV1 1g+me (20),
//	  1_SLICE_REV2 1g double memory (15), 2_SLICE 2g (14), 3_SLICE 3g (9),
//	  4_SLICE 4g (5), 7_SLICE 7g (0)
//	A30: 1_SLICE 1g.6gb (14), 1_SLICE_REV1 1g.6gb+me (21),
//	  2_SLICE 2g.12gb (5), 2_SLICE_REV1 2g.12gb+me (6), 4_SLICE 4g.24gb (0)
func profileIndexes(m *topology.Model) map[int]*topology.Profile {
	out := map[int]*topology.Profile{}
	if m == nil {
		return out
	}
	// The smallest memory of each compute size is the plain profile.
	minMem := map[int]int{}
	for i := range m.Profiles {
		p := &m.Profiles[i]
		if cur, ok := minMem[p.ComputeSlices]; !p.MediaExtensions && (!ok || p.MemorySlices < cur) {
			minMem[p.ComputeSlices] = p.MemorySlices
		}
	}
	plain := map[int]int{
		1: nvml.GPU_INSTANCE_PROFILE_1_SLICE,
		2: nvml.GPU_INSTANCE_PROFILE_2_SLICE,
		3: nvml.GPU_INSTANCE_PROFILE_3_SLICE,
		4: nvml.GPU_INSTANCE_PROFILE_4_SLICE,
		6: nvml.GPU_INSTANCE_PROFILE_6_SLICE,
		7: nvml.GPU_INSTANCE_PROFILE_7_SLICE,
		8: nvml.GPU_INSTANCE_PROFILE_8_SLICE,
	}
	media := map[int]int{
		1: nvml.GPU_INSTANCE_PROFILE_1_SLICE_REV1,
		2: nvml.GPU_INSTANCE_PROFILE_2_SLICE_REV1,
	}
	for i := range m.Profiles {
		p := &m.Profiles[i]
		idx, ok := -1, false
		switch {
		case p.MediaExtensions:
			idx, ok = media[p.ComputeSlices]
		case p.MemorySlices == minMem[p.ComputeSlices]:
			idx, ok = plain[p.ComputeSlices]
		case p.ComputeSlices == 1:
			idx, ok = nvml.GPU_INSTANCE_PROFILE_1_SLICE_REV2, true
		}
		if ok {
			out[idx] = p
		}
	}
	return out
}

// profileInfo is what GetGpuInstanceProfileInfo returns for p.
// Engine and SM counts are not in the catalog and stay zero.
func profileInfo(p *topology.Profile) nvml.GpuInstanceProfileInfo {
	return nvml.GpuInstanceProfileInfo{
		Id:            uint32(p.ID),
		SliceCount:    uint32(p.ComputeSlices),
		InstanceCount: uint32(p.MaxInstances),
		MemorySizeMB:  uint64(p.MemoryMiB),
	}
}
