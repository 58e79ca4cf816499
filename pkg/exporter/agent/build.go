package agent

import (
	"fmt"
	"sort"
	"strings"

	gpusliceapi "github.com/gpuslice/gpuslice/pkg/apis/gpuslice/v1alpha1"
	"github.com/gpuslice/gpuslice/pkg/exporter/dpconfig"
	"github.com/gpuslice/gpuslice/pkg/exporter/nvml"
	"github.com/gpuslice/gpuslice/pkg/topology"
)

// Inputs are everything one sync observed.
type Inputs struct {
	NodeName string
	// Snapshot is NVML's view; nil with SnapshotErr when NVML failed.
	Snapshot    *nvml.Snapshot
	SnapshotErr error
	// Config is the device plugin's config; nil with ConfigErr when it could
	// not be read.
	Config    *dpconfig.Config
	ConfigErr error
	// Unhealthy maps GPU UUIDs to the reason they are unhealthy (XIDs seen).
	Unhealthy map[string]string
	// MIGConfigState is the node label nvidia.com/mig.config.state ("" when
	// absent: no MIG manager).
	MIGConfigState string
	// MIGConfig is the node label nvidia.com/mig.config: the layout asked
	// of the MIG manager ("" when absent).
	MIGConfig string
	// Allocations are what the kubelet reports; nil with AllocationsErr when
	// the PodResources API could not be read.
	Allocations    []gpusliceapi.PodAllocation
	AllocationsErr error
}

// migConfigFailed is the MIG manager's state label value after a failed run.
const migConfigFailed = "failed"

// Desired builds the GPUNode spec to publish. Problems do not fail the
// build: they make the node Degraded (or Reconfiguring) with a message that
// names them, so the scheduler keeps GPU pods away and says why.
func Desired(cat *topology.Catalog, in Inputs) gpusliceapi.GPUNodeSpec {
	var problems []string
	cfg := in.Config
	if in.ConfigErr != nil || cfg == nil {
		problems = append(problems, fmt.Sprintf("device-plugin config: %v", in.ConfigErr))
		cfg = dpconfig.Defaults()
	}
	node := &topology.Node{
		Name:             in.NodeName,
		MIGStrategy:      cfg.MIGStrategy,
		DeviceIDStrategy: cfg.DeviceIDStrategy,
		AllocationPolicy: cfg.AllocationPolicy,
		TimeSlicing:      cfg.TimeSlicing,
	}
	if in.SnapshotErr != nil || in.Snapshot == nil {
		problems = append(problems, fmt.Sprintf("NVML: %v", in.SnapshotErr))
	} else {
		gpus, gpuProblems := convertGPUs(cat, in.Snapshot, in.Unhealthy)
		node.GPUs = gpus
		problems = append(problems, gpuProblems...)
	}
	if err := node.Validate(cat); err != nil {
		problems = append(problems, err.Error())
	}
	spec := gpusliceapi.SpecFromTopology(node)
	spec.Allocations = in.Allocations
	spec.AllocationsFingerprint = Fingerprint(in.Allocations)
	if in.AllocationsErr != nil {
		problems = append(problems, fmt.Sprintf("kubelet PodResources: %v", in.AllocationsErr))
	}
	spec.Summary = Summarize(node, in.Allocations)
	pending := false
	if in.Snapshot != nil {
		for _, g := range in.Snapshot.GPUs {
			pending = pending || g.MIGPending != g.MIGEnabled
		}
	}
	switch {
	case in.MIGConfigState == migConfigFailed:
		// Not reconfiguring: the MIG manager gave up and will not retry
		// until the label changes. The layout may be half-applied.
		spec.State = gpusliceapi.StateDegraded
		spec.Message = fmt.Sprintf("MIG reconfiguration failed (%s=failed, %s=%q); the MIG manager does not retry: read its logs (a MIG instance still in use makes the change fail), free the GPUs, then change %s (setting the same value again does nothing) to retry",
			MIGConfigStateLabel, MIGConfigLabel, in.MIGConfig, MIGConfigLabel)
	case in.MIGConfigState != "" && in.MIGConfigState != "success":
		spec.State = gpusliceapi.StateReconfiguring
		spec.Message = fmt.Sprintf("MIG manager: nvidia.com/mig.config.state=%s", in.MIGConfigState)
	case pending:
		spec.State = gpusliceapi.StateReconfiguring
		spec.Message = "MIG mode change pending (GPU reset required)"
	case len(problems) > 0:
		spec.State = gpusliceapi.StateDegraded
		spec.Message = strings.Join(problems, "; ")
	default:
		spec.State = gpusliceapi.StateReady
	}
	// One line: errors from YAML parsers, NVML or gRPC may span several,
	// and the message is shown in kubectl and in the scheduler's reasons.
	spec.Message = strings.Join(strings.Fields(spec.Message), " ")
	return spec
}

// convertGPUs maps NVML's view onto the model, naming MIG instances by the
// catalog's profile of their NVML profile ID.
func convertGPUs(cat *topology.Catalog, snap *nvml.Snapshot, unhealthy map[string]string) ([]topology.GPU, []string) {
	var problems []string
	gpus := make([]topology.GPU, 0, len(snap.GPUs))
	for _, g := range snap.GPUs {
		tg := topology.GPU{
			UUID: g.UUID, Index: g.Index, Product: g.Name, MemoryMiB: g.MemoryMiB,
			Healthy: true, MIGEnabled: g.MIGEnabled,
		}
		if reason, bad := unhealthy[g.UUID]; bad {
			tg.Healthy, tg.UnhealthyReason = false, reason
		}
		if g.Err != "" {
			tg.Healthy = false
			tg.UnhealthyReason = "NVML: " + g.Err
		}
		if g.MIGEnabled {
			model, ok := cat.Lookup(g.Name)
			if !ok {
				problems = append(problems, fmt.Sprintf("gpu %d: MIG enabled on %q, which has no MIG catalog entry", g.Index, g.Name))
			}
			for _, in := range g.Instances {
				name := fmt.Sprintf("profile-id-%d", in.ProfileID)
				if model != nil {
					if p := profileByID(model, in.ProfileID); p != nil {
						name = p.Name
					} else {
						problems = append(problems, fmt.Sprintf("gpu %d: unknown MIG profile ID %d for %s", g.Index, in.ProfileID, model.Name))
					}
				}
				tg.Instances = append(tg.Instances, topology.GPUInstance{Profile: name, Start: in.Start, Size: in.Size, DeviceID: in.DeviceUUID})
			}
			sort.Slice(tg.Instances, func(i, j int) bool { return tg.Instances[i].Start < tg.Instances[j].Start })
		}
		gpus = append(gpus, tg)
	}
	sort.Slice(gpus, func(i, j int) bool { return gpus[i].Index < gpus[j].Index })
	return gpus, problems
}

func profileByID(m *topology.Model, id int) *topology.Profile {
	for i := range m.Profiles {
		if m.Profiles[i].ID == id {
			return &m.Profiles[i]
		}
	}
	return nil
}

// Summarize counts a node's advertised and allocated devices for the
// GPUNode's printer columns (gpusliceapi.Summarize).
func Summarize(node *topology.Node, allocs []gpusliceapi.PodAllocation) gpusliceapi.Summary {
	return gpusliceapi.Summarize(node, allocs)
}
