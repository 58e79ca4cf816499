package podrequest

import (
	"fmt"
	"slices"
	"strings"

	"github.com/gpuslice/gpuslice/pkg/topology"
)

// Options configure Parse and IsGPUResource.
type Options struct {
	// Catalog checks MIG profile names; nil means topology.NewCatalog().
	Catalog *topology.Catalog
	// ExtraResources are further GPU resource names (time-sliced resources
	// renamed in the device plugin config, e.g. "example.com/gpu-shared").
	ExtraResources []string
}

// gpuSharedPrefix matches the resources the device plugin derives from
// nvidia.com/gpu, e.g. the time-sliced nvidia.com/gpu.shared.
const gpuSharedPrefix = topology.ResourceGPU + "."

// maxPerContainer bounds one container's request for one resource. No node
// has that many devices of one kind (time-slicing replicas included: 8 GPUs
// of 8 192 replicas), so a larger number is a typo.
const maxPerContainer = 65536

// IsGPUResource reports whether name is a GPU resource gpuslice schedules:
// nvidia.com/gpu, any nvidia.com/gpu.<suffix> (e.g. nvidia.com/gpu.shared),
// any nvidia.com/mig-<profile> with a non-empty profile, or one of
// opts.ExtraResources. It does not check MIG profiles against the catalog;
// Parse does.
func IsGPUResource(name string, opts Options) bool {
	switch {
	case name == "":
		return false
	case name == topology.ResourceGPU:
		return true
	case strings.HasPrefix(name, gpuSharedPrefix):
		return len(name) > len(gpuSharedPrefix)
	case strings.HasPrefix(name, topology.MIGResourcePrefix):
		return len(name) > len(topology.MIGResourcePrefix)
	}
	return slices.Contains(opts.ExtraResources, name)
}

// isCandidate reports whether Parse must look at the resource: every GPU
// resource, and malformed NVIDIA names (nvidia.com/mig-, nvidia.com/gpu.)
// that a user meant as one and should hear about.
func isCandidate(name string, opts Options) bool {
	return IsGPUResource(name, opts) ||
		name == topology.MIGResourcePrefix || name == gpuSharedPrefix
}

// checkName validates a candidate resource name: a MIG resource must name a
// profile some GPU model in the catalog has. Names listed in ExtraResources
// are taken as they are, since the device plugin may rename to anything.
func checkName(name string, opts Options, catalog *topology.Catalog) error {
	if name != "" && slices.Contains(opts.ExtraResources, name) {
		return nil
	}
	if name == gpuSharedPrefix {
		return fmt.Errorf("%s has no suffix after %q; did you mean %s or %s%s?",
			name, gpuSharedPrefix, topology.ResourceGPU, topology.ResourceGPU, topology.SharedSuffix)
	}
	rest, ok := strings.CutPrefix(name, topology.MIGResourcePrefix)
	if !ok {
		return nil
	}
	// Time-sliced MIG devices are advertised as nvidia.com/mig-<profile>.shared.
	profile := strings.TrimSuffix(rest, topology.SharedSuffix)
	if profile == "" {
		return fmt.Errorf("%s names no MIG profile; use %s<profile>, e.g. %s",
			name, topology.MIGResourcePrefix, topology.MIGResourceName("1g.10gb"))
	}
	for _, m := range catalog.Models() {
		if _, ok := m.Profile(profile); ok {
			return nil
		}
	}
	return fmt.Errorf("unknown MIG profile %q in %s: no GPU model gpuslice knows has it (%s; `nvidia-smi mig -lgip` on a node lists its GPU's profiles)",
		profile, name, suggestProfiles(profile, catalog))
}

// suggestProfiles lists a few known profiles, preferring those with the same
// compute size ("3g" for "3g.41gb").
func suggestProfiles(profile string, catalog *topology.Catalog) string {
	const most = 8
	var all []string
	for _, m := range catalog.Models() {
		for _, n := range m.ProfileNames() {
			if !slices.Contains(all, n) {
				all = append(all, n)
			}
		}
	}
	if len(all) == 0 {
		return "the catalog has no MIG profiles"
	}
	head, _, _ := strings.Cut(profile, ".")
	var picked []string
	for _, n := range all {
		if h, _, _ := strings.Cut(n, "."); h == head {
			picked = append(picked, n)
		}
	}
	label := "known " + head + " profiles: "
	if len(picked) == 0 {
		picked, label = all, "known profiles include: "
	}
	slices.Sort(picked)
	if len(picked) > most {
		picked = append(picked[:most:most], "...")
	}
	return label + strings.Join(picked, ", ")
}
