package topology_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/gpuslice/gpuslice/pkg/topology"
)

// shapes names a model's profiles by geometry, so one table serves every
// model of a geometry class.
type shapes struct {
	one, oneME, oneDouble, two, twoME, three, four, seven string
}

func shapesOf(t *testing.T, m *topology.Model) shapes {
	t.Helper()
	find := func(compute, mem int, me bool) string {
		for _, p := range m.Profiles {
			if p.ComputeSlices == compute && p.MemorySlices == mem && p.MediaExtensions == me {
				return p.Name
			}
		}
		return ""
	}
	return shapes{
		one:       find(1, 1, false),
		oneME:     find(1, 1, true),
		oneDouble: find(1, 2, false),
		two:       find(2, 2, false),
		twoME:     find(2, 2, true),
		three:     find(3, 4, false),
		four:      find(4, 4, false),
		seven:     find(7, 8, false),
	}
}

// at is an instance with its profile's size (1 for unknown profiles).
func at(m *topology.Model, profile string, start int) topology.GPUInstance {
	size := 1
	if p, ok := m.Profile(profile); ok {
		size = p.MemorySlices
	}
	return topology.GPUInstance{Profile: profile, Start: start, Size: size, DeviceID: fmt.Sprintf("MIG-%s@%d", profile, start)}
}

type layoutCase struct {
	name      string
	instances []topology.GPUInstance
	// wantErr are substrings the error must contain; none means valid.
	wantErr []string
	// notErr are substrings the error must not contain.
	notErr []string
}

func layoutCases(t *testing.T, m *topology.Model) []layoutCase {
	t.Helper()
	s := shapesOf(t, m)
	in := func(p string, start int) topology.GPUInstance { return at(m, p, start) }
	sized := func(p string, start, size int) topology.GPUInstance {
		i := at(m, p, start)
		i.Size = size
		return i
	}
	switch {
	case m.ComputeSlices == 7 && m.MemorySlices == 8:
		for _, n := range []string{s.one, s.oneME, s.oneDouble, s.two, s.three, s.four, s.seven} {
			if n == "" {
				t.Fatalf("%s: 8-slice model lacks a standard profile shape: %+v", m.Name, s)
			}
		}
		return []layoutCase{
			{name: "empty"},
			{name: "all-balanced", instances: []topology.GPUInstance{in(s.three, 4), in(s.two, 0), in(s.one, 2), in(s.one, 3)}},
			{name: "all-balanced unordered", instances: []topology.GPUInstance{in(s.one, 3), in(s.three, 4), in(s.one, 2), in(s.two, 0)}},
			{name: "7g", instances: []topology.GPUInstance{in(s.seven, 0)}},
			{name: "7x1g", instances: []topology.GPUInstance{in(s.one, 0), in(s.one, 1), in(s.one, 2), in(s.one, 3), in(s.one, 4), in(s.one, 5), in(s.one, 6)}},
			{name: "4g+3g", instances: []topology.GPUInstance{in(s.four, 0), in(s.three, 4)}},
			{name: "2x3g", instances: []topology.GPUInstance{in(s.three, 0), in(s.three, 4)}},
			{name: "4x1g double memory", instances: []topology.GPUInstance{in(s.oneDouble, 0), in(s.oneDouble, 2), in(s.oneDouble, 4), in(s.oneDouble, 6)}},
			{name: "3x2g+1g", instances: []topology.GPUInstance{in(s.two, 0), in(s.two, 2), in(s.two, 4), in(s.one, 6)}},
			{name: "4g+2g+1g", instances: []topology.GPUInstance{in(s.four, 0), in(s.two, 4), in(s.one, 6)}},
			{name: "1g+me with six 1g", instances: []topology.GPUInstance{in(s.oneME, 0), in(s.one, 1), in(s.one, 2), in(s.one, 3), in(s.one, 4), in(s.one, 5), in(s.one, 6)}},
			{name: "double-memory 1g uses slice 7", instances: []topology.GPUInstance{in(s.three, 0), in(s.two, 4), in(s.oneDouble, 6)}},
			{name: "size unspecified", instances: []topology.GPUInstance{sized(s.three, 0, 0), sized(s.three, 4, 0)}},

			{name: "overlap 3g@0 4g@0", instances: []topology.GPUInstance{in(s.three, 0), in(s.four, 0)},
				wantErr: []string{"instance 1 (" + s.four + "@0) overlaps instance 0 (" + s.three + "@0) at memory slice 0"},
				notErr:  []string{"compute slices", "not allowed"}},
			{name: "partial overlap", instances: []topology.GPUInstance{in(s.three, 0), in(s.two, 2)},
				wantErr: []string{"overlaps instance 0", "at memory slice 2"}},
			{name: "start not allowed 3g@2", instances: []topology.GPUInstance{in(s.three, 2)},
				wantErr: []string{"instance 0 (" + s.three + "): start 2 not allowed (allowed: [0 4])"},
				notErr:  []string{"outside"}},
			{name: "1g@7 not allowed", instances: []topology.GPUInstance{in(s.one, 7)},
				wantErr: []string{"start 7 not allowed (allowed: [0 1 2 3 4 5 6])"},
				notErr:  []string{"outside", "overlaps"}},
			{name: "1g+me@7 not allowed", instances: []topology.GPUInstance{in(s.oneME, 7)},
				wantErr: []string{"start 7 not allowed"}},
			{name: "1g@7 next to 3g@0 2g@4 1g@6", instances: []topology.GPUInstance{in(s.three, 0), in(s.two, 4), in(s.one, 6), in(s.one, 7)},
				wantErr: []string{"instance 3 (" + s.one + "): start 7 not allowed"}},
			{name: "double-memory 1g@7 runs off the GPU", instances: []topology.GPUInstance{in(s.oneDouble, 7)},
				wantErr: []string{"start 7 not allowed", "memory slices [7,9) outside the GPU's 8"}},
			{name: "7g@1", instances: []topology.GPUInstance{in(s.seven, 1)},
				wantErr: []string{"start 1 not allowed", "outside the GPU's 8"}},
			{name: "negative start", instances: []topology.GPUInstance{in(s.one, -1)},
				wantErr: []string{"start -1 not allowed", "[-1,0) outside"}},
			{name: "unknown profile", instances: []topology.GPUInstance{in("9g.999gb", 0)},
				wantErr: []string{`instance 0: unknown MIG profile "9g.999gb" for ` + m.Name + " (known: " + strings.Join(m.ProfileNames(), ", ") + ")"}},
			{name: "A30 profile", instances: []topology.GPUInstance{in(s.seven, 0), in("1g.6gb", 0)},
				wantErr: []string{`instance 1: unknown MIG profile "1g.6gb"`}, notErr: []string{"overlaps"}},
			{name: "profile without prefix", instances: []topology.GPUInstance{in(topology.MIGResourceName(s.one), 0)},
				wantErr: []string{"unknown MIG profile"}},
			{name: "wrong size", instances: []topology.GPUInstance{sized(s.three, 0, 2)},
				wantErr: []string{"instance 0 (" + s.three + "): placement size 2, profile occupies 4 memory slices"}},
			{name: "negative size", instances: []topology.GPUInstance{sized(s.one, 0, -1)},
				wantErr: []string{"placement size -1"}},
			{name: "over compute budget", instances: []topology.GPUInstance{in(s.four, 0), in(s.three, 4), in(s.one, 0)},
				wantErr: []string{"instances use 8 compute slices, " + m.Name + " has 7", "overlaps"}},
			{name: "over compute budget 7g+1g", instances: []topology.GPUInstance{in(s.seven, 0), in(s.one, 6)},
				wantErr: []string{"instances use 8 compute slices", "at memory slice 6"}},
			{name: "three 3g", instances: []topology.GPUInstance{in(s.three, 0), in(s.three, 4), in(s.three, 0)},
				wantErr: []string{"more than 2 instances of " + s.three, "instances use 9 compute slices"}},
			{name: "eight 1g", instances: []topology.GPUInstance{in(s.one, 0), in(s.one, 1), in(s.one, 2), in(s.one, 3), in(s.one, 4), in(s.one, 5), in(s.one, 6), in(s.one, 6)},
				wantErr: []string{"more than 7 instances of " + s.one}},
			{name: "two +me", instances: []topology.GPUInstance{in(s.oneME, 0), in(s.oneME, 1)},
				wantErr: []string{"more than one +me instance", "more than 1 instances of " + s.oneME},
				notErr:  []string{"overlaps"}},
			{name: "every problem at once", instances: []topology.GPUInstance{in("bogus", 0), in(s.three, 2), in(s.four, 0), sized(s.one, 6, 2)},
				wantErr: []string{`unknown MIG profile "bogus"`, "start 2 not allowed", "overlaps", "placement size 2, profile occupies 1"}},
		}
	case m.ComputeSlices == 4 && m.MemorySlices == 4:
		for _, n := range []string{s.one, s.oneME, s.two, s.twoME, s.four} {
			if n == "" {
				t.Fatalf("%s: 4-slice model lacks a standard profile shape: %+v", m.Name, s)
			}
		}
		return []layoutCase{
			{name: "empty"},
			{name: "all-balanced", instances: []topology.GPUInstance{in(s.one, 0), in(s.one, 1), in(s.two, 2)}},
			{name: "all-balanced 2g first", instances: []topology.GPUInstance{in(s.two, 0), in(s.one, 2), in(s.one, 3)}},
			{name: "4g", instances: []topology.GPUInstance{in(s.four, 0)}},
			{name: "4x1g", instances: []topology.GPUInstance{in(s.one, 0), in(s.one, 1), in(s.one, 2), in(s.one, 3)}},
			{name: "2x2g", instances: []topology.GPUInstance{in(s.two, 0), in(s.two, 2)}},
			{name: "2g+me with 2g", instances: []topology.GPUInstance{in(s.twoME, 2), in(s.two, 0)}},
			{name: "1g+me with three 1g", instances: []topology.GPUInstance{in(s.one, 0), in(s.oneME, 3), in(s.one, 1), in(s.one, 2)}},

			{name: "overlap", instances: []topology.GPUInstance{in(s.two, 0), in(s.one, 1)},
				wantErr: []string{"instance 1 (" + s.one + "@1) overlaps instance 0 (" + s.two + "@0) at memory slice 1"}},
			{name: "start not allowed 2g@1", instances: []topology.GPUInstance{in(s.two, 1)},
				wantErr: []string{"start 1 not allowed (allowed: [0 2])"}, notErr: []string{"outside"}},
			{name: "4g@2", instances: []topology.GPUInstance{in(s.four, 2)},
				wantErr: []string{"start 2 not allowed", "[2,6) outside the GPU's 4"}},
			{name: "1g@4", instances: []topology.GPUInstance{in(s.one, 4)},
				wantErr: []string{"start 4 not allowed", "outside the GPU's 4"}},
			{name: "unknown profile", instances: []topology.GPUInstance{in("1g.5gb", 0)},
				wantErr: []string{`unknown MIG profile "1g.5gb" for ` + m.Name}},
			{name: "wrong size", instances: []topology.GPUInstance{sized(s.two, 0, 1)},
				wantErr: []string{"placement size 1, profile occupies 2 memory slices"}},
			{name: "over compute budget", instances: []topology.GPUInstance{in(s.four, 0), in(s.one, 0)},
				wantErr: []string{"instances use 5 compute slices, " + m.Name + " has 4", "overlaps"}},
			{name: "three 2g", instances: []topology.GPUInstance{in(s.two, 0), in(s.two, 2), in(s.two, 0)},
				wantErr: []string{"more than 2 instances of " + s.two}},
			{name: "two +me of different profiles", instances: []topology.GPUInstance{in(s.oneME, 0), in(s.twoME, 2)},
				wantErr: []string{"more than one +me instance"},
				notErr:  []string{"instances of", "overlaps", "compute"}},
			{name: "two 2g+me", instances: []topology.GPUInstance{in(s.twoME, 0), in(s.twoME, 2)},
				wantErr: []string{"more than one +me instance", "more than 1 instances of " + s.twoME}},
		}
	default:
		t.Fatalf("%s: no layout table for a %d-compute/%d-memory-slice model; add one", m.Name, m.ComputeSlices, m.MemorySlices)
		return nil
	}
}

func TestValidateLayout(t *testing.T) {
	cat := topology.NewCatalog()
	for _, m := range cat.Models() {
		t.Run(m.Name, func(t *testing.T) {
			cases := layoutCases(t, m)
			valid := 0
			for _, tc := range cases {
				if len(tc.wantErr) == 0 && len(tc.instances) > 0 {
					valid++
				}
			}
			if valid == 0 {
				t.Fatalf("no valid non-empty layout for %s", m.Name)
			}
			for _, tc := range cases {
				err := m.ValidateLayout(tc.instances)
				if len(tc.wantErr) == 0 {
					if err != nil {
						t.Errorf("%s: valid layout %v rejected: %v", tc.name, tc.instances, err)
					}
					continue
				}
				if err == nil {
					t.Errorf("%s: invalid layout %v accepted", tc.name, tc.instances)
					continue
				}
				msg := err.Error()
				if !strings.HasPrefix(msg, "invalid MIG layout on "+m.Name+": ") {
					t.Errorf("%s: error %q lacks the model prefix", tc.name, msg)
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(msg, w) {
						t.Errorf("%s: error %q does not contain %q", tc.name, msg, w)
					}
				}
				for _, w := range tc.notErr {
					if strings.Contains(msg, w) {
						t.Errorf("%s: error %q unexpectedly contains %q", tc.name, msg, w)
					}
				}
			}
		})
	}
}

// TestValidateLayoutDoesNotModifyInput guards the caller's slice.
func TestValidateLayoutDoesNotModifyInput(t *testing.T) {
	m, _ := topology.NewCatalog().ModelByName("A100-40GB")
	in := []topology.GPUInstance{at(m, "3g.20gb", 0), at(m, "4g.20gb", 0), at(m, "bogus", 9)}
	orig := slices.Clone(in)
	_ = m.ValidateLayout(in)
	if !slices.Equal(in, orig) {
		t.Errorf("ValidateLayout modified its input: %v -> %v", orig, in)
	}
}

// ---- Node ----

const a100 = "NVIDIA A100-SXM4-40GB"

func migGPU(index int, product string, healthy bool, instances ...topology.GPUInstance) topology.GPU {
	uuid := fmt.Sprintf("GPU-%d", index)
	out := make([]topology.GPUInstance, len(instances))
	for i, in := range instances {
		in.DeviceID = fmt.Sprintf("MIG-%d-%s@%d", index, in.Profile, in.Start)
		out[i] = in
	}
	return topology.GPU{UUID: uuid, Index: index, Product: product, MemoryMiB: 40960, Healthy: healthy, MIGEnabled: true, Instances: out}
}

func wholeGPU(index int, product string, healthy bool) topology.GPU {
	return topology.GPU{UUID: fmt.Sprintf("GPU-%d", index), Index: index, Product: product, MemoryMiB: 40960, Healthy: healthy}
}

// balancedA100 is mig-parted's all-balanced on an A100-40GB.
func balancedA100(index int, healthy bool) topology.GPU {
	return migGPU(index, a100, healthy,
		topology.GPUInstance{Profile: "3g.20gb", Start: 4, Size: 4},
		topology.GPUInstance{Profile: "2g.10gb", Start: 0, Size: 2},
		topology.GPUInstance{Profile: "1g.5gb", Start: 2, Size: 1},
		topology.GPUInstance{Profile: "1g.5gb", Start: 3, Size: 1},
	)
}

func sevenA100(index int) topology.GPU {
	var ins []topology.GPUInstance
	for s := range 7 {
		ins = append(ins, topology.GPUInstance{Profile: "1g.5gb", Start: s, Size: 1})
	}
	return migGPU(index, a100, true, ins...)
}

func TestNodeValidate(t *testing.T) {
	cat := topology.NewCatalog()
	type tc struct {
		name    string
		node    topology.Node
		wantErr []string
	}
	dupUUID := topology.Node{Name: "n", MIGStrategy: topology.MIGStrategyMixed, GPUs: []topology.GPU{balancedA100(0, true), balancedA100(1, true)}}
	dupUUID.GPUs[1].UUID = "GPU-0"
	dupMIG := topology.Node{Name: "n", MIGStrategy: topology.MIGStrategyMixed, GPUs: []topology.GPU{balancedA100(0, true), balancedA100(1, true)}}
	dupMIG.GPUs[1].Instances[0].DeviceID = dupMIG.GPUs[0].Instances[2].DeviceID
	noMIGID := topology.Node{Name: "n", MIGStrategy: topology.MIGStrategyMixed, GPUs: []topology.GPU{balancedA100(0, true)}}
	noMIGID.GPUs[0].Instances[1].DeviceID = ""
	dupIndex := topology.Node{Name: "n", GPUs: []topology.GPU{wholeGPU(0, "NVIDIA L4", true), wholeGPU(1, "NVIDIA L4", true)}}
	dupIndex.GPUs[1].Index = 0
	emptyUUID := topology.Node{Name: "n", GPUs: []topology.GPU{wholeGPU(0, "NVIDIA L4", true)}}
	emptyUUID.GPUs[0].UUID = ""
	negIndex := topology.Node{Name: "n", GPUs: []topology.GPU{wholeGPU(0, "NVIDIA L4", true)}}
	negIndex.GPUs[0].Index = -1
	migOff := topology.Node{Name: "n", MIGStrategy: topology.MIGStrategyMixed, GPUs: []topology.GPU{balancedA100(0, true)}}
	migOff.GPUs[0].MIGEnabled = false
	badLayout := topology.Node{Name: "n", MIGStrategy: topology.MIGStrategyMixed, GPUs: []topology.GPU{balancedA100(0, true), migGPU(1, a100, true,
		topology.GPUInstance{Profile: "3g.20gb", Start: 0, Size: 4}, topology.GPUInstance{Profile: "4g.20gb", Start: 0, Size: 4})}}

	for _, c := range []tc{
		{name: "valid mixed", node: topology.Node{Name: "n", MIGStrategy: topology.MIGStrategyMixed, GPUs: []topology.GPU{balancedA100(0, true), balancedA100(1, false), wholeGPU(2, "NVIDIA L4", true)}}},
		{name: "valid single", node: topology.Node{Name: "n", MIGStrategy: topology.MIGStrategySingle, GPUs: []topology.GPU{sevenA100(0), sevenA100(1)}}},
		{name: "valid single without MIG", node: topology.Node{Name: "n", MIGStrategy: topology.MIGStrategySingle, GPUs: []topology.GPU{wholeGPU(0, a100, true), wholeGPU(1, a100, true)}}},
		{name: "valid none with MIG", node: topology.Node{Name: "n", MIGStrategy: topology.MIGStrategyNone, GPUs: []topology.GPU{balancedA100(0, true), wholeGPU(1, a100, true)}}},
		{name: "valid empty", node: topology.Node{Name: "n"}},
		{name: "valid time-slicing", node: topology.Node{Name: "n", AllocationPolicy: topology.PolicyPacked, DeviceIDStrategy: topology.DeviceIDIndex,
			TimeSlicing: &topology.TimeSlicing{RenameByDefault: true, Resources: []topology.SharedResource{{Name: topology.ResourceGPU, Replicas: 4}}},
			GPUs:        []topology.GPU{wholeGPU(0, "NVIDIA L4", true), wholeGPU(1, "NVIDIA L4", true)}}},

		{name: "duplicate UUID", node: dupUUID, wantErr: []string{"node n: ", "gpu 1: UUID GPU-0 also used by gpu 0"}},
		{name: "duplicate index", node: dupIndex, wantErr: []string{"gpu 0: index also used by GPU GPU-0"}},
		{name: "empty UUID", node: emptyUUID, wantErr: []string{"gpu 0: empty UUID"}},
		{name: "negative index", node: negIndex, wantErr: []string{"gpu -1: negative index"}},
		{name: "MIG on unknown product", node: topology.Node{Name: "n", MIGStrategy: topology.MIGStrategyMixed, GPUs: []topology.GPU{
			migGPU(0, "NVIDIA GeForce RTX 4090", true, topology.GPUInstance{Profile: "1g.6gb", Start: 0, Size: 1})}},
			wantErr: []string{`gpu 0: MIG enabled on "NVIDIA GeForce RTX 4090", which has no MIG catalog entry`}},
		{name: "instances with MIG disabled", node: migOff, wantErr: []string{"gpu 0: 4 GPU instances but MIG is disabled"}},
		{name: "invalid layout", node: badLayout, wantErr: []string{"gpu 1: invalid MIG layout on A100-40GB", "overlaps"}},
		{name: "MIG device without ID", node: noMIGID, wantErr: []string{"gpu 0: 2g.10gb@0 has no MIG device ID"}},
		{name: "duplicate MIG device ID", node: dupMIG, wantErr: []string{"gpu 1: MIG device MIG-0-1g.5gb@2 also listed on gpu 0"}},
		{name: "single strategy two profiles", node: topology.Node{Name: "n", MIGStrategy: topology.MIGStrategySingle, GPUs: []topology.GPU{balancedA100(0, true)}},
			wantErr: []string{"gpu 0: MIG strategy single needs one profile on every GPU, found 3g.20gb and 2g.10gb"}},
		{name: "single strategy profiles differ across GPUs", node: topology.Node{Name: "n", MIGStrategy: topology.MIGStrategySingle, GPUs: []topology.GPU{sevenA100(0),
			migGPU(1, a100, true, topology.GPUInstance{Profile: "7g.40gb", Start: 0, Size: 8})}},
			wantErr: []string{"gpu 1: MIG strategy single needs one profile on every GPU, found 1g.5gb and 7g.40gb"}},
		{name: "single strategy some GPUs not MIG", node: topology.Node{Name: "n", MIGStrategy: topology.MIGStrategySingle, GPUs: []topology.GPU{sevenA100(0), wholeGPU(1, a100, true)}},
			wantErr: []string{"MIG strategy single needs MIG on all GPUs or none: 1 of 2 have MIG enabled"}},
		{name: "zero replicas", node: topology.Node{Name: "n", TimeSlicing: &topology.TimeSlicing{Resources: []topology.SharedResource{{Name: topology.ResourceGPU, Replicas: 0}}},
			GPUs: []topology.GPU{wholeGPU(0, "NVIDIA L4", true)}},
			wantErr: []string{"timeSlicing.resources[0]: nvidia.com/gpu has 0 replicas, want at least 1"}},
		{name: "negative replicas", node: topology.Node{Name: "n", MIGStrategy: topology.MIGStrategyMixed, TimeSlicing: &topology.TimeSlicing{Resources: []topology.SharedResource{
			{Name: topology.ResourceGPU, Replicas: 2}, {Name: "nvidia.com/mig-1g.5gb", Replicas: -3}}},
			GPUs: []topology.GPU{balancedA100(0, true)}},
			wantErr: []string{"timeSlicing.resources[1]: nvidia.com/mig-1g.5gb has -3 replicas"}},
		{name: "unsharable resource", node: topology.Node{Name: "n", TimeSlicing: &topology.TimeSlicing{Resources: []topology.SharedResource{{Name: "example.com/fpga", Replicas: 2}}}},
			wantErr: []string{`timeSlicing.resources[0]: cannot share "example.com/fpga"`}},
		{name: "resource listed twice", node: topology.Node{Name: "n", TimeSlicing: &topology.TimeSlicing{Resources: []topology.SharedResource{
			{Name: topology.ResourceGPU, Replicas: 2}, {Name: topology.ResourceGPU, Replicas: 3}}}},
			wantErr: []string{"timeSlicing.resources[1]: nvidia.com/gpu listed twice"}},
		{name: "rename collision between shared resources", node: topology.Node{Name: "n", MIGStrategy: topology.MIGStrategyMixed,
			TimeSlicing: &topology.TimeSlicing{Resources: []topology.SharedResource{
				{Name: topology.ResourceGPU, Rename: "nvidia.com/shared", Replicas: 2},
				{Name: "nvidia.com/mig-1g.5gb", Rename: "nvidia.com/shared", Replicas: 2}}},
			GPUs: []topology.GPU{balancedA100(0, true), wholeGPU(1, "NVIDIA L4", true)}},
			wantErr: []string{"node n: resource nvidia.com/shared would advertise both"}},
		{name: "rename onto an unshared resource", node: topology.Node{Name: "n", MIGStrategy: topology.MIGStrategyMixed,
			TimeSlicing: &topology.TimeSlicing{Resources: []topology.SharedResource{
				{Name: "nvidia.com/mig-1g.5gb", Rename: topology.ResourceGPU, Replicas: 2}}},
			GPUs: []topology.GPU{balancedA100(0, true), wholeGPU(1, "NVIDIA L4", true)}},
			wantErr: []string{"resource nvidia.com/gpu would advertise both"}},
		{name: "unknown settings", node: topology.Node{Name: "n", MIGStrategy: "mixd", AllocationPolicy: "random", DeviceIDStrategy: "serial"},
			wantErr: []string{`unknown MIG strategy "mixd"`, `unknown allocation policy "random"`, `unknown device ID strategy "serial"`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.node.Validate(cat)
			if len(c.wantErr) == 0 {
				if err != nil {
					t.Fatalf("valid node rejected: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("invalid node accepted; want %q", c.wantErr)
			}
			if !strings.HasPrefix(err.Error(), "node n: ") {
				t.Errorf("error %q lacks the node prefix", err)
			}
			for _, w := range c.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestNodeCapacity(t *testing.T) {
	l4 := "NVIDIA L4"
	for _, c := range []struct {
		name string
		node topology.Node
		want map[string]int64
	}{
		{name: "mixed all-balanced x3", node: topology.Node{MIGStrategy: topology.MIGStrategyMixed, GPUs: []topology.GPU{balancedA100(0, true), balancedA100(1, true), balancedA100(2, true)}},
			want: map[string]int64{"nvidia.com/mig-1g.5gb": 6, "nvidia.com/mig-2g.10gb": 3, "nvidia.com/mig-3g.20gb": 3}},
		{name: "mixed with a non-MIG GPU", node: topology.Node{MIGStrategy: topology.MIGStrategyMixed, GPUs: []topology.GPU{balancedA100(0, true), wholeGPU(1, a100, true)}},
			want: map[string]int64{"nvidia.com/mig-1g.5gb": 2, "nvidia.com/mig-2g.10gb": 1, "nvidia.com/mig-3g.20gb": 1, "nvidia.com/gpu": 1}},
		{name: "single 7x1g x2", node: topology.Node{MIGStrategy: topology.MIGStrategySingle, GPUs: []topology.GPU{sevenA100(0), sevenA100(1)}},
			want: map[string]int64{"nvidia.com/gpu": 14}},
		{name: "none with MIG enabled", node: topology.Node{MIGStrategy: topology.MIGStrategyNone, GPUs: []topology.GPU{balancedA100(0, true), sevenA100(1)}},
			want: map[string]int64{"nvidia.com/gpu": 2}},
		{name: "empty strategy is none", node: topology.Node{GPUs: []topology.GPU{balancedA100(0, true), sevenA100(1)}},
			want: map[string]int64{"nvidia.com/gpu": 2}},
		{name: "time-slicing renameByDefault", node: topology.Node{
			TimeSlicing: &topology.TimeSlicing{RenameByDefault: true, Resources: []topology.SharedResource{{Name: topology.ResourceGPU, Replicas: 4}}},
			GPUs:        []topology.GPU{wholeGPU(0, l4, true), wholeGPU(1, l4, true), wholeGPU(2, l4, true)}},
			want: map[string]int64{"nvidia.com/gpu.shared": 12}},
		{name: "time-slicing without rename", node: topology.Node{
			TimeSlicing: &topology.TimeSlicing{Resources: []topology.SharedResource{{Name: topology.ResourceGPU, Replicas: 4}}},
			GPUs:        []topology.GPU{wholeGPU(0, l4, true), wholeGPU(1, l4, true)}},
			want: map[string]int64{"nvidia.com/gpu": 8}},
		{name: "explicit rename beats renameByDefault", node: topology.Node{
			TimeSlicing: &topology.TimeSlicing{RenameByDefault: true, Resources: []topology.SharedResource{{Name: topology.ResourceGPU, Rename: "nvidia.com/l4-ts", Replicas: 3}}},
			GPUs:        []topology.GPU{wholeGPU(0, l4, true), wholeGPU(1, l4, true)}},
			want: map[string]int64{"nvidia.com/l4-ts": 6}},
		{name: "time-slicing of another resource leaves gpu alone", node: topology.Node{
			TimeSlicing: &topology.TimeSlicing{RenameByDefault: true, Resources: []topology.SharedResource{{Name: "nvidia.com/mig-1g.5gb", Replicas: 3}}},
			GPUs:        []topology.GPU{wholeGPU(0, l4, true)}},
			want: map[string]int64{"nvidia.com/gpu": 1}},
		{name: "MIG time-sliced", node: topology.Node{MIGStrategy: topology.MIGStrategyMixed,
			TimeSlicing: &topology.TimeSlicing{RenameByDefault: true, Resources: []topology.SharedResource{{Name: "nvidia.com/mig-1g.5gb", Replicas: 3}}},
			GPUs:        []topology.GPU{balancedA100(0, true), balancedA100(1, true)}},
			want: map[string]int64{"nvidia.com/mig-1g.5gb.shared": 12, "nvidia.com/mig-2g.10gb": 2, "nvidia.com/mig-3g.20gb": 2}},
		{name: "single strategy time-sliced", node: topology.Node{MIGStrategy: topology.MIGStrategySingle,
			TimeSlicing: &topology.TimeSlicing{Resources: []topology.SharedResource{{Name: topology.ResourceGPU, Replicas: 2}}},
			GPUs:        []topology.GPU{sevenA100(0)}},
			want: map[string]int64{"nvidia.com/gpu": 14}},
		{name: "unhealthy GPU excluded, key kept", node: topology.Node{MIGStrategy: topology.MIGStrategyMixed, GPUs: []topology.GPU{
			balancedA100(0, true),
			balancedA100(1, false),
			migGPU(2, a100, false, topology.GPUInstance{Profile: "7g.40gb", Start: 0, Size: 8})}},
			want: map[string]int64{"nvidia.com/mig-1g.5gb": 2, "nvidia.com/mig-2g.10gb": 1, "nvidia.com/mig-3g.20gb": 1, "nvidia.com/mig-7g.40gb": 0}},
		{name: "all unhealthy shared", node: topology.Node{
			TimeSlicing: &topology.TimeSlicing{RenameByDefault: true, Resources: []topology.SharedResource{{Name: topology.ResourceGPU, Replicas: 4}}},
			GPUs:        []topology.GPU{wholeGPU(0, l4, false)}},
			want: map[string]int64{"nvidia.com/gpu.shared": 0}},
		{name: "no GPUs", node: topology.Node{}, want: map[string]int64{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := c.node.Validate(topology.NewCatalog()); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			got, err := c.node.Capacity()
			if err != nil {
				t.Fatalf("Capacity: %v", err)
			}
			if !mapsEqual(got, c.want) {
				t.Errorf("Capacity = %v, want %v", got, c.want)
			}
		})
	}
}

func TestNodeUnits(t *testing.T) {
	t.Run("mixed order and fields", func(t *testing.T) {
		// GPUs listed out of index order; instances out of start order.
		n := topology.Node{MIGStrategy: topology.MIGStrategyMixed,
			TimeSlicing: &topology.TimeSlicing{RenameByDefault: true, Resources: []topology.SharedResource{{Name: "nvidia.com/mig-1g.5gb", Replicas: 2}}},
			GPUs:        []topology.GPU{balancedA100(1, false), wholeGPU(0, "NVIDIA L4", true)}}
		units, err := n.Units()
		if err != nil {
			t.Fatal(err)
		}
		want := []topology.Unit{
			{Resource: "nvidia.com/gpu", BaseResource: "nvidia.com/gpu", GPU: 1, Instance: -1, DeviceID: "GPU-0", Replicas: 1, Healthy: true},
			{Resource: "nvidia.com/mig-2g.10gb", BaseResource: "nvidia.com/mig-2g.10gb", GPU: 0, Instance: 1, DeviceID: "MIG-1-2g.10gb@0", Replicas: 1},
			{Resource: "nvidia.com/mig-1g.5gb.shared", BaseResource: "nvidia.com/mig-1g.5gb", GPU: 0, Instance: 2, DeviceID: "MIG-1-1g.5gb@2", Replicas: 2, Shared: true},
			{Resource: "nvidia.com/mig-1g.5gb.shared", BaseResource: "nvidia.com/mig-1g.5gb", GPU: 0, Instance: 3, DeviceID: "MIG-1-1g.5gb@3", Replicas: 2, Shared: true},
			{Resource: "nvidia.com/mig-3g.20gb", BaseResource: "nvidia.com/mig-3g.20gb", GPU: 0, Instance: 0, DeviceID: "MIG-1-3g.20gb@4", Replicas: 1},
		}
		if !slices.Equal(units, want) {
			t.Errorf("Units =\n%v\nwant\n%v", units, want)
		}
	})
	t.Run("none strategy whole GPUs by index", func(t *testing.T) {
		n := topology.Node{MIGStrategy: topology.MIGStrategyNone, DeviceIDStrategy: topology.DeviceIDIndex,
			GPUs: []topology.GPU{balancedA100(3, true), sevenA100(2)}}
		units, err := n.Units()
		if err != nil {
			t.Fatal(err)
		}
		want := []topology.Unit{
			{Resource: "nvidia.com/gpu", BaseResource: "nvidia.com/gpu", GPU: 1, Instance: -1, DeviceID: "2", Replicas: 1, Healthy: true},
			{Resource: "nvidia.com/gpu", BaseResource: "nvidia.com/gpu", GPU: 0, Instance: -1, DeviceID: "3", Replicas: 1, Healthy: true},
		}
		if !slices.Equal(units, want) {
			t.Errorf("Units = %v, want %v", units, want)
		}
	})
	t.Run("single strategy MIG devices keep their MIG UUIDs", func(t *testing.T) {
		n := topology.Node{MIGStrategy: topology.MIGStrategySingle, DeviceIDStrategy: topology.DeviceIDIndex, GPUs: []topology.GPU{sevenA100(0)}}
		units, err := n.Units()
		if err != nil {
			t.Fatal(err)
		}
		if len(units) != 7 {
			t.Fatalf("%d units, want 7", len(units))
		}
		for i, u := range units {
			if u.Resource != topology.ResourceGPU || u.Instance != i || u.DeviceID != fmt.Sprintf("MIG-0-1g.5gb@%d", i) {
				t.Errorf("unit %d = %+v", i, u)
			}
		}
	})
	t.Run("rename collision", func(t *testing.T) {
		n := topology.Node{MIGStrategy: topology.MIGStrategyMixed,
			TimeSlicing: &topology.TimeSlicing{Resources: []topology.SharedResource{{Name: "nvidia.com/mig-1g.5gb", Rename: "nvidia.com/mig-2g.10gb", Replicas: 2}}},
			GPUs:        []topology.GPU{balancedA100(0, true)}}
		if _, err := n.Units(); err == nil || !strings.Contains(err.Error(), "resource nvidia.com/mig-2g.10gb would advertise both") {
			t.Errorf("Units err = %v", err)
		}
		if _, err := n.Capacity(); err == nil {
			t.Error("Capacity succeeded despite the collision")
		}
	})
}

// ---- resource names and replica IDs ----

func TestReplicaIDRoundTrip(t *testing.T) {
	for _, id := range []string{"GPU-8b1c2f3e-0000-1111-2222-333344445555", "MIG-4f1d2c3b-aaaa-bbbb-cccc-ddddeeeeffff", "0", "7"} {
		for _, r := range []int{0, 1, 9, 10, 123} {
			rid := topology.ReplicaID(id, r)
			if want := id + "::" + fmt.Sprint(r); rid != want {
				t.Errorf("ReplicaID(%q, %d) = %q, want %q", id, r, rid, want)
			}
			base, n, ok := topology.SplitReplicaID(rid)
			if !ok || base != id || n != r {
				t.Errorf("SplitReplicaID(%q) = %q, %d, %v", rid, base, n, ok)
			}
		}
		base, n, ok := topology.SplitReplicaID(id)
		if !ok || base != id || n != -1 {
			t.Errorf("SplitReplicaID(%q) = %q, %d, %v; want the ID, -1, true", id, base, n, ok)
		}
	}
	for _, bad := range []string{"", "x::", "::1", "::", "a::-1", "a::b", "a::1::2", "a:: 1", "a::1x", "a::99999999999999999999"} {
		if base, n, ok := topology.SplitReplicaID(bad); ok {
			t.Errorf("SplitReplicaID(%q) = %q, %d, true; want not ok", bad, base, n)
		}
	}
}

func TestProfileFromResource(t *testing.T) {
	for _, m := range topology.NewCatalog().Models() {
		for _, p := range m.ProfileNames() {
			r := topology.MIGResourceName(p)
			if r != "nvidia.com/mig-"+p {
				t.Errorf("MIGResourceName(%q) = %q", p, r)
			}
			got, ok := topology.ProfileFromResource(r)
			if !ok || got != p {
				t.Errorf("ProfileFromResource(%q) = %q, %v; want %q", r, got, ok, p)
			}
		}
	}
	for _, bad := range []string{"", "nvidia.com/gpu", "nvidia.com/mig-", "mig-1g.5gb", "1g.5gb", "NVIDIA.COM/MIG-1g.5gb", "example.com/mig-1g.5gb"} {
		if got, ok := topology.ProfileFromResource(bad); ok {
			t.Errorf("ProfileFromResource(%q) = %q, true; want not ok", bad, got)
		}
	}
}
