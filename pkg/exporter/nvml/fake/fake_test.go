package fake_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/gpuslice/gpuslice/pkg/exporter/nvml/fake"
	"github.com/gpuslice/gpuslice/pkg/topology"
	"github.com/gpuslice/gpuslice/pkg/topology/fixtures"
)

func device(t *testing.T, f *fake.Fake, i int) nvml.Device {
	t.Helper()
	d, ret := f.Interface().DeviceGetHandleByIndex(i)
	if ret != nvml.SUCCESS {
		t.Fatalf("DeviceGetHandleByIndex(%d): %v", i, ret)
	}
	return d
}

func profileInfo(t *testing.T, d nvml.Device, idx int) nvml.GpuInstanceProfileInfo {
	t.Helper()
	info, ret := d.GetGpuInstanceProfileInfo(idx)
	if ret != nvml.SUCCESS {
		t.Fatalf("GetGpuInstanceProfileInfo(%d): %v", idx, ret)
	}
	return info
}

func create(d nvml.Device, info nvml.GpuInstanceProfileInfo, start int) (nvml.GpuInstance, nvml.Return) {
	return d.CreateGpuInstanceWithPlacement(&info, &nvml.GpuInstancePlacement{Start: uint32(start), Size: 0})
}

// TestPlacementRules creates instances through the nvml API on an A100-40GB
// and expects the catalog's rules, where go-nvml's dgxa100 mock accepts all.
func TestPlacementRules(t *testing.T) {
	f, err := fake.New("n1", []fake.GPUSpec{{Product: fake.ProductA100_40GB}})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.SetMIGMode(0, true); err != nil {
		t.Fatal(err)
	}
	d := device(t, f, 0)
	three := profileInfo(t, d, nvml.GPU_INSTANCE_PROFILE_3_SLICE)
	if n, _ := d.GetGpuInstanceRemainingCapacity(&three); n != 2 {
		t.Errorf("remaining 3g capacity on an empty GPU %d, want 2", n)
	}
	if _, ret := create(d, three, 4); ret != nvml.SUCCESS {
		t.Fatalf("3g@4: %v", ret)
	}
	two := profileInfo(t, d, nvml.GPU_INSTANCE_PROFILE_2_SLICE)
	one := profileInfo(t, d, nvml.GPU_INSTANCE_PROFILE_1_SLICE)
	oneME := profileInfo(t, d, nvml.GPU_INSTANCE_PROFILE_1_SLICE_REV1)
	if three.Id != 9 || two.Id != 14 || one.Id != 19 || oneME.Id != 20 {
		t.Fatalf("profile IDs %d %d %d %d", three.Id, two.Id, one.Id, oneME.Id)
	}
	if n, _ := d.GetGpuInstanceRemainingCapacity(&three); n != 1 {
		t.Errorf("remaining 3g capacity %d, want 1", n)
	}
	steps := []struct {
		what  string
		info  nvml.GpuInstanceProfileInfo
		start int
		want  nvml.Return
	}{
		{"3g over the existing 3g@4", three, 4, nvml.ERROR_INSUFFICIENT_RESOURCES},
		{"3g at a start it does not allow", three, 2, nvml.ERROR_INVALID_ARGUMENT},
		{"2g overlapping 3g@4", two, 4, nvml.ERROR_INSUFFICIENT_RESOURCES},
		{"2g at an odd start", two, 1, nvml.ERROR_INVALID_ARGUMENT},
		{"1g at memory slice 7", one, 7, nvml.ERROR_INVALID_ARGUMENT},
		{"1g+me at 0", oneME, 0, nvml.SUCCESS},
		{"a second +me", oneME, 1, nvml.ERROR_INSUFFICIENT_RESOURCES},
		{"1g over the +me", one, 0, nvml.ERROR_INSUFFICIENT_RESOURCES},
		{"2g at 2", two, 2, nvml.SUCCESS},
		{"1g at 1", one, 1, nvml.SUCCESS},
	}
	for _, s := range steps {
		if _, ret := create(d, s.info, s.start); ret != s.want {
			t.Errorf("%s: %v, want %v", s.what, ret, s.want)
		}
	}
	// Full: nothing fits, with or without a placement.
	for _, info := range []nvml.GpuInstanceProfileInfo{one, two, three} {
		if _, ret := d.CreateGpuInstance(&info); ret != nvml.ERROR_INSUFFICIENT_RESOURCES {
			t.Errorf("profile %d on a full GPU: %v", info.Id, ret)
		}
	}
	// Free the 3g@4: two 2g fit again but no third 3g ever does.
	gis, ret := d.GetGpuInstances(&three)
	if ret != nvml.SUCCESS || len(gis) != 1 {
		t.Fatalf("3g instances: %v %v", gis, ret)
	}
	if ret := gis[0].Destroy(); ret != nvml.SUCCESS {
		t.Fatal(ret)
	}
	if ret := gis[0].Destroy(); ret != nvml.ERROR_INVALID_ARGUMENT {
		t.Errorf("double destroy: %v", ret)
	}
	if _, ret := gis[0].GetInfo(); ret != nvml.ERROR_INVALID_ARGUMENT {
		t.Errorf("info of a destroyed instance: %v", ret)
	}
	if _, ret := create(d, three, 4); ret != nvml.SUCCESS {
		t.Fatalf("3g@4 again: %v", ret)
	}
	if _, ret := d.CreateGpuInstance(&three); ret != nvml.ERROR_INSUFFICIENT_RESOURCES {
		t.Errorf("another 3g: %v", ret)
	}
	// A size that is not the profile's is invalid.
	if _, ret := d.CreateGpuInstanceWithPlacement(&one, &nvml.GpuInstancePlacement{Start: 2, Size: 2}); ret != nvml.ERROR_INVALID_ARGUMENT {
		t.Errorf("wrong size: %v", ret)
	}
}

func TestThirdThreeGFails(t *testing.T) {
	f, err := fake.New("n1", []fake.GPUSpec{{Product: fake.ProductH100_80GB, MIG: []string{"3g.40gb", "3g.40gb"}}})
	if err != nil {
		t.Fatal(err)
	}
	d := device(t, f, 0)
	three := profileInfo(t, d, nvml.GPU_INSTANCE_PROFILE_3_SLICE)
	for _, start := range []int{0, 4} {
		if _, ret := create(d, three, start); ret != nvml.ERROR_INSUFFICIENT_RESOURCES {
			t.Errorf("third 3g.40gb at %d: %v", start, ret)
		}
	}
	if _, ret := d.CreateGpuInstance(&three); ret != nvml.ERROR_INSUFFICIENT_RESOURCES {
		t.Errorf("third 3g.40gb without placement: %v", ret)
	}
}

// TestPossiblePlacementsAreTheCatalogs checks every profile of every fixture
// model: NVML profile index -> ID, and placements, straight from the catalog.
func TestPossiblePlacementsAreTheCatalogs(t *testing.T) {
	cat := topology.NewCatalog()
	for _, fx := range fake.Fixtures() {
		model, _ := cat.Lookup(fx.Product)
		f, err := fx.New("n1")
		if err != nil {
			t.Fatal(err)
		}
		d := device(t, f, 0)
		seen := map[int]bool{}
		for idx := 0; idx < nvml.GPU_INSTANCE_PROFILE_COUNT; idx++ {
			info, ret := d.GetGpuInstanceProfileInfo(idx)
			if ret == nvml.ERROR_NOT_SUPPORTED {
				continue
			}
			if ret != nvml.SUCCESS {
				t.Fatalf("%s: profile index %d: %v", fx.Name, idx, ret)
			}
			var p *topology.Profile
			for i := range model.Profiles {
				if model.Profiles[i].ID == int(info.Id) {
					p = &model.Profiles[i]
				}
			}
			if p == nil || seen[p.ID] {
				t.Fatalf("%s: profile index %d gives ID %d", fx.Name, idx, info.Id)
			}
			seen[p.ID] = true
			if int(info.SliceCount) != p.ComputeSlices || int(info.InstanceCount) != p.MaxInstances || int64(info.MemorySizeMB) != p.MemoryMiB {
				t.Errorf("%s %s: info %+v", fx.Name, p.Name, info)
			}
			pls, ret := d.GetGpuInstancePossiblePlacements(&info)
			if ret != nvml.SUCCESS {
				t.Fatal(ret)
			}
			var starts []int
			for _, pl := range pls {
				starts = append(starts, int(pl.Start))
				if int(pl.Size) != p.MemorySlices {
					t.Errorf("%s %s: size %d", fx.Name, p.Name, pl.Size)
				}
			}
			if !reflect.DeepEqual(starts, p.Placements) {
				t.Errorf("%s %s: placements %v, catalog %v", fx.Name, p.Name, starts, p.Placements)
			}
		}
		if len(seen) != len(model.Profiles) {
			t.Errorf("%s: %d of %d profiles reachable", fx.Name, len(seen), len(model.Profiles))
		}
	}
}

func TestProfileIndexes(t *testing.T) {
	want := map[string]map[int]uint32{
		fake.ProductA100_40GB: {
			nvml.GPU_INSTANCE_PROFILE_1_SLICE: 19, nvml.GPU_INSTANCE_PROFILE_1_SLICE_REV1: 20,
			nvml.GPU_INSTANCE_PROFILE_1_SLICE_REV2: 15, nvml.GPU_INSTANCE_PROFILE_2_SLICE: 14,
			nvml.GPU_INSTANCE_PROFILE_3_SLICE: 9, nvml.GPU_INSTANCE_PROFILE_4_SLICE: 5,
			nvml.GPU_INSTANCE_PROFILE_7_SLICE: 0,
		},
		fake.ProductA30: {
			nvml.GPU_INSTANCE_PROFILE_1_SLICE: 14, nvml.GPU_INSTANCE_PROFILE_1_SLICE_REV1: 21,
			nvml.GPU_INSTANCE_PROFILE_2_SLICE: 5, nvml.GPU_INSTANCE_PROFILE_2_SLICE_REV1: 6,
			nvml.GPU_INSTANCE_PROFILE_4_SLICE: 0,
		},
	}
	for product, ids := range want {
		f, err := fake.New("n1", []fake.GPUSpec{{Product: product}})
		if err != nil {
			t.Fatal(err)
		}
		d := device(t, f, 0)
		for idx, id := range ids {
			if info := profileInfo(t, d, idx); info.Id != id {
				t.Errorf("%s index %d: ID %d, want %d", product, idx, info.Id, id)
			}
		}
		if _, ret := d.GetGpuInstanceProfileInfo(nvml.GPU_INSTANCE_PROFILE_COUNT); ret != nvml.ERROR_INVALID_ARGUMENT {
			t.Errorf("index out of range: %v", ret)
		}
	}
}

// TestEveryCatalogProfileHasAnIndex: for every model of the catalog, each
// profile is reachable through exactly one NVML profile index.
func TestEveryCatalogProfileHasAnIndex(t *testing.T) {
	for _, m := range topology.NewCatalog().Models() {
		f, err := fake.New("n1", []fake.GPUSpec{{Product: m.NVMLNames[0]}})
		if err != nil {
			t.Fatal(err)
		}
		d := device(t, f, 0)
		ids := map[uint32]int{}
		for idx := 0; idx < nvml.GPU_INSTANCE_PROFILE_COUNT; idx++ {
			if info, ret := d.GetGpuInstanceProfileInfo(idx); ret == nvml.SUCCESS {
				ids[info.Id]++
			}
		}
		for _, p := range m.Profiles {
			if ids[uint32(p.ID)] != 1 {
				t.Errorf("%s %s (ID %d): %d profile indexes", m.Name, p.Name, p.ID, ids[uint32(p.ID)])
			}
		}
		if len(ids) != len(m.Profiles) {
			t.Errorf("%s: %d IDs for %d profiles", m.Name, len(ids), len(m.Profiles))
		}
	}
}

func TestNewRejects(t *testing.T) {
	for name, specs := range map[string][]fake.GPUSpec{
		"three 3g":            {{Product: fake.ProductA100_40GB, MIG: []string{"3g.20gb", "3g.20gb", "3g.20gb"}}},
		"unknown profile":     {{Product: fake.ProductA30, MIG: []string{"3g.20gb"}}},
		"MIG outside catalog": {{Product: "Tesla T4", MemoryMiB: 15360, MIG: []string{"1g.5gb"}}},
		"no memory":           {{Product: "Tesla T4"}},
		"no product":          {{}},
	} {
		if _, err := fake.New("n1", specs); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestUUIDsMatchTopologyFixtures: the fake and pkg/topology/fixtures derive
// the same GPU and MIG device UUIDs for the same node.
func TestUUIDsMatchTopologyFixtures(t *testing.T) {
	cat := topology.NewCatalog()
	for _, fx := range fake.Fixtures() {
		node := "uuid-" + fx.Name
		f, err := fx.New(node)
		if err != nil {
			t.Fatal(err)
		}
		want := fixtures.MustBuild(cat, fixtures.Spec{Name: node, Product: fx.Product, GPUs: fx.GPUs, MIG: fx.MIG})
		for i, wg := range want.GPUs {
			d := device(t, f, i)
			if u, _ := d.GetUUID(); u != wg.UUID {
				t.Errorf("%s gpu %d: UUID %s, fixtures %s", fx.Name, i, u, wg.UUID)
			}
			for j, in := range wg.Instances {
				mig, ret := d.GetMigDeviceHandleByIndex(j)
				if ret != nvml.SUCCESS {
					t.Fatalf("%s gpu %d MIG device %d: %v", fx.Name, i, j, ret)
				}
				if u, _ := mig.GetUUID(); u != in.DeviceID {
					t.Errorf("%s gpu %d MIG device %d: %s, fixtures %s", fx.Name, i, j, u, in.DeviceID)
				}
				byUUID, ret := f.Interface().DeviceGetHandleByUUID(in.DeviceID)
				if ret != nvml.SUCCESS || byUUID != mig {
					t.Errorf("DeviceGetHandleByUUID(%s): %v", in.DeviceID, ret)
				}
				parent, _ := mig.GetDeviceHandleFromMigDeviceHandle()
				if parent != d {
					t.Errorf("parent of %s", in.DeviceID)
				}
			}
		}
	}
}

func TestStaleHandlesAfterSetLayout(t *testing.T) {
	f, err := fake.FixtureByName("a30-mig")
	if !err {
		t.Fatal("no a30-mig")
	}
	fk, e := f.New("n1")
	if e != nil {
		t.Fatal(e)
	}
	d := device(t, fk, 1)
	mig, _ := d.GetMigDeviceHandleByIndex(0)
	old, _ := mig.GetUUID()
	if e := fk.SetLayout(1, []string{"4g.24gb"}); e != nil {
		t.Fatal(e)
	}
	if _, ret := mig.GetUUID(); ret != nvml.ERROR_INVALID_ARGUMENT {
		t.Errorf("stale MIG device: %v", ret)
	}
	mig, ret := d.GetMigDeviceHandleByIndex(0)
	if ret != nvml.SUCCESS {
		t.Fatal(ret)
	}
	if u, _ := mig.GetUUID(); u == old {
		t.Error("MIG UUID reused after reconfiguration")
	}
	if _, ret := d.GetMigDeviceHandleByIndex(1); ret != nvml.ERROR_NOT_FOUND {
		t.Errorf("empty MIG device slot: %v", ret)
	}
	// MIG cannot be turned off through NVML while instances exist.
	if _, ret := d.SetMigMode(nvml.DEVICE_MIG_DISABLE); ret != nvml.ERROR_IN_USE {
		t.Errorf("SetMigMode(disable) with instances: %v", ret)
	}
	if e := fk.SetLayout(1, nil); e != nil {
		t.Fatal(e)
	}
	if _, ret := d.SetMigMode(nvml.DEVICE_MIG_DISABLE); ret != nvml.SUCCESS {
		t.Errorf("SetMigMode(disable): %v", ret)
	}
	four := profileInfo(t, d, nvml.GPU_INSTANCE_PROFILE_4_SLICE)
	if _, ret := d.CreateGpuInstance(&four); ret != nvml.ERROR_NOT_SUPPORTED {
		t.Errorf("create with MIG disabled: %v", ret)
	}
}

func TestEventSet(t *testing.T) {
	f, err := fake.New("n1", []fake.GPUSpec{{Product: fake.ProductA30}, {Product: fake.ProductA30}})
	if err != nil {
		t.Fatal(err)
	}
	lib := f.Interface()
	set, ret := lib.EventSetCreate()
	if ret != nvml.SUCCESS {
		t.Fatal(ret)
	}
	f.SetUnhealthy(1, 48) // before registration: queued
	if _, ret := set.Wait(10); ret != nvml.ERROR_TIMEOUT {
		t.Fatalf("Wait before registration: %v", ret)
	}
	d1 := device(t, f, 1)
	if ret := d1.RegisterEvents(nvml.EventTypeXidCriticalError|nvml.EventTypePState, set); ret != nvml.ERROR_NOT_SUPPORTED {
		t.Errorf("registering unsupported events: %v", ret)
	}
	if ret := d1.RegisterEvents(nvml.EventTypeXidCriticalError, set); ret != nvml.SUCCESS {
		t.Fatal(ret)
	}
	ev, ret := set.Wait(1000)
	if ret != nvml.SUCCESS || ev.EventType != nvml.EventTypeXidCriticalError || ev.EventData != 48 || ev.Device != d1 {
		t.Fatalf("event %+v %v", ev, ret)
	}
	f.SetUnhealthy(0, 79) // GPU 0 is not registered with this set
	if _, ret := set.Wait(10); ret != nvml.ERROR_TIMEOUT {
		t.Errorf("event of an unregistered GPU delivered: %v", ret)
	}
	if ret := set.Free(); ret != nvml.SUCCESS {
		t.Fatal(ret)
	}
	if _, ret := set.Wait(10); ret == nvml.SUCCESS || ret == nvml.ERROR_TIMEOUT {
		t.Errorf("Wait on a freed set: %v", ret)
	}
}

func TestDeviceError(t *testing.T) {
	f, err := fake.New("n1", []fake.GPUSpec{{Product: fake.ProductH200, MIG: []string{"7g.141gb"}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.SetDeviceError(0, nvml.ERROR_GPU_IS_LOST); err != nil {
		t.Fatal(err)
	}
	d := device(t, f, 0)
	if _, ret := d.GetUUID(); ret != nvml.ERROR_GPU_IS_LOST {
		t.Errorf("GetUUID: %v", ret)
	}
	if _, _, ret := d.GetMigMode(); ret != nvml.ERROR_GPU_IS_LOST {
		t.Errorf("GetMigMode: %v", ret)
	}
	if err := f.SetDeviceError(5, nvml.ERROR_GPU_IS_LOST); err == nil || !strings.Contains(err.Error(), "gpu 5") {
		t.Errorf("out of range: %v", err)
	}
}
