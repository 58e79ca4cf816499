package agent

import (
	"errors"
	"strings"
	"testing"

	gpusliceapi "github.com/gpuslice/gpuslice/pkg/apis/gpuslice/v1alpha1"
	"github.com/gpuslice/gpuslice/pkg/exporter/dpconfig"
	"github.com/gpuslice/gpuslice/pkg/exporter/nvml"
	"github.com/gpuslice/gpuslice/pkg/topology"
)

func a100Snapshot() *nvml.Snapshot {
	gpu := func(i int) nvml.GPU {
		return nvml.GPU{
			UUID: "GPU-" + string(rune('a'+i)), Index: i, Name: "NVIDIA A100-SXM4-40GB", MemoryMiB: 40960,
			MIGEnabled: true, MIGPending: true,
			Instances: []nvml.Instance{
				{ProfileID: 14, Start: 0, Size: 2, DeviceUUID: "MIG-2g-" + string(rune('a'+i))},
				{ProfileID: 19, Start: 2, Size: 1, DeviceUUID: "MIG-1g0-" + string(rune('a'+i))},
				{ProfileID: 19, Start: 3, Size: 1, DeviceUUID: "MIG-1g1-" + string(rune('a'+i))},
				{ProfileID: 9, Start: 4, Size: 4, DeviceUUID: "MIG-3g-" + string(rune('a'+i))},
			},
		}
	}
	return &nvml.Snapshot{GPUs: []nvml.GPU{gpu(1), gpu(0)}}
}

func mixed() *dpconfig.Config {
	c := dpconfig.Defaults()
	c.MIGStrategy = topology.MIGStrategyMixed
	return c
}

func TestDesiredReadyMIGNode(t *testing.T) {
	cat := topology.NewCatalog()
	spec := Desired(cat, Inputs{NodeName: "n", Snapshot: a100Snapshot(), Config: mixed()})
	if spec.State != gpusliceapi.StateReady || spec.Message != "" {
		t.Fatalf("state %s %q", spec.State, spec.Message)
	}
	if len(spec.GPUs) != 2 || spec.GPUs[0].Index != 0 || spec.GPUs[0].UUID != "GPU-a" {
		t.Fatalf("GPUs not in index order: %+v", spec.GPUs)
	}
	names := []string{}
	for _, in := range spec.GPUs[0].Instances {
		names = append(names, in.Profile)
	}
	if strings.Join(names, ",") != "2g.10gb,1g.5gb,1g.5gb,3g.20gb" {
		t.Fatalf("profiles by placement: %v", names)
	}
	if spec.Summary.GPUs != 2 || spec.Summary.Slices != "8/8" {
		t.Fatalf("summary %+v", spec.Summary)
	}
	if err := spec.Topology().Validate(cat); err != nil {
		t.Fatalf("published topology invalid: %v", err)
	}
}

func TestDesiredStates(t *testing.T) {
	cat := topology.NewCatalog()
	tests := []struct {
		name  string
		in    Inputs
		state gpusliceapi.NodeState
		msg   string
	}{
		{"broken config", Inputs{Snapshot: a100Snapshot(), ConfigErr: errors.New("config.yaml: sharing.timeSlicing.resources[0].replicas: must be >= 1")},
			gpusliceapi.StateDegraded, "device-plugin config: config.yaml: sharing.timeSlicing.resources[0].replicas"},
		{"NVML down", Inputs{SnapshotErr: errors.New("ERROR_LIBRARY_NOT_FOUND"), Config: mixed()}, gpusliceapi.StateDegraded, "NVML: ERROR_LIBRARY_NOT_FOUND"},
		{"kubelet down", Inputs{Snapshot: a100Snapshot(), Config: mixed(), AllocationsErr: errors.New("dial unix: no such file")},
			gpusliceapi.StateDegraded, "kubelet PodResources: dial unix"},
		{"MIG manager applying", Inputs{Snapshot: a100Snapshot(), Config: mixed(), MIGConfigState: "pending"},
			gpusliceapi.StateReconfiguring, "nvidia.com/mig.config.state=pending"},
		// A failed run is not a reconfiguration in progress: nothing will
		// change until someone acts, and the message says what to do.
		{"MIG manager failed", Inputs{Snapshot: a100Snapshot(), Config: mixed(), MIGConfigState: "failed"},
			gpusliceapi.StateDegraded, "MIG reconfiguration failed (nvidia.com/mig.config.state=failed"},
		{"MIG manager failed, what to do", Inputs{Snapshot: a100Snapshot(), Config: mixed(), MIGConfigState: "failed", MIGConfig: "all-1g.5gb"},
			gpusliceapi.StateDegraded, `nvidia.com/mig.config="all-1g.5gb"); the MIG manager does not retry: read its logs (a MIG instance still in use makes the change fail), free the GPUs, then change nvidia.com/mig.config`},
		{"multi-line error on one line", Inputs{Snapshot: a100Snapshot(), ConfigErr: errors.New("config.yaml: yaml: line 3:\n\tmapping values are not allowed\n")},
			gpusliceapi.StateDegraded, "device-plugin config: config.yaml: yaml: line 3: mapping values are not allowed"},
		{"unknown product with MIG", Inputs{Snapshot: &nvml.Snapshot{GPUs: []nvml.GPU{{UUID: "GPU-x", Name: "NVIDIA Z9000", MIGEnabled: true, MIGPending: true}}}, Config: mixed()},
			gpusliceapi.StateDegraded, `MIG enabled on "NVIDIA Z9000", which has no MIG catalog entry`},
		{"unknown profile ID", Inputs{Snapshot: &nvml.Snapshot{GPUs: []nvml.GPU{{UUID: "GPU-x", Name: "NVIDIA A100-SXM4-40GB", MIGEnabled: true, MIGPending: true,
			Instances: []nvml.Instance{{ProfileID: 99, Start: 0, Size: 1, DeviceUUID: "MIG-x"}}}}}, Config: mixed()},
			gpusliceapi.StateDegraded, "unknown MIG profile ID 99"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.in.NodeName = "n"
			spec := Desired(cat, tc.in)
			if spec.State != tc.state || !strings.Contains(spec.Message, tc.msg) {
				t.Fatalf("state %s message %q; want %s containing %q", spec.State, spec.Message, tc.state, tc.msg)
			}
			if strings.ContainsAny(spec.Message, "\n\r") {
				t.Fatalf("message on several lines: %q", spec.Message)
			}
		})
	}
}

func TestDesiredUnhealthyAndAllocations(t *testing.T) {
	cat := topology.NewCatalog()
	allocs := []gpusliceapi.PodAllocation{{PodUID: "u1", Namespace: "ns", Name: "p", Containers: []gpusliceapi.ContainerAllocation{{Name: "c",
		Devices: []gpusliceapi.ResourceDevices{{Resource: "nvidia.com/mig-1g.5gb", DeviceIDs: []string{"MIG-1g0-a"}}}}}}}
	spec := Desired(cat, Inputs{NodeName: "n", Snapshot: a100Snapshot(), Config: mixed(), Unhealthy: map[string]string{"GPU-b": "XID 79"}, Allocations: allocs})
	if spec.GPUs[1].Healthy || spec.GPUs[1].UnhealthyReason != "XID 79" || !spec.GPUs[0].Healthy {
		t.Fatalf("health %+v", spec.GPUs)
	}
	if spec.State != gpusliceapi.StateReady {
		t.Fatalf("an unhealthy GPU is not a node problem: %s %s", spec.State, spec.Message)
	}
	if spec.Summary.Slices != "3/4" || spec.AllocationsFingerprint == "" { // the unhealthy GPU advertises nothing
		t.Fatalf("summary %+v fingerprint %q", spec.Summary, spec.AllocationsFingerprint)
	}
	again := Desired(cat, Inputs{NodeName: "n", Snapshot: a100Snapshot(), Config: mixed(), Unhealthy: map[string]string{"GPU-b": "XID 79"}, Allocations: allocs})
	if again.AllocationsFingerprint != spec.AllocationsFingerprint {
		t.Fatal("fingerprint not stable")
	}
}

func TestSortAllocationsCanonical(t *testing.T) {
	a := []gpusliceapi.PodAllocation{
		{Namespace: "b", Name: "x", Containers: []gpusliceapi.ContainerAllocation{{Name: "c", Devices: []gpusliceapi.ResourceDevices{{Resource: "r", DeviceIDs: []string{"2", "1"}}}}}},
		{Namespace: "a", Name: "y", Containers: []gpusliceapi.ContainerAllocation{{Name: "z"}, {Name: "a"}}},
	}
	SortAllocations(a)
	if a[0].Namespace != "a" || a[0].Containers[0].Name != "a" || a[1].Containers[0].Devices[0].DeviceIDs[0] != "1" {
		t.Fatalf("not canonical: %+v", a)
	}
}
