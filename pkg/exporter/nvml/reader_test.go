package nvml_test

import (
	"context"
	"errors"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/dl"
	gonvml "github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"

	"github.com/gpuslice/gpuslice/pkg/exporter/nvml"
	"github.com/gpuslice/gpuslice/pkg/exporter/nvml/fake"
	"github.com/gpuslice/gpuslice/pkg/topology"
	"github.com/gpuslice/gpuslice/pkg/topology/fixtures"
)

func newFixture(t *testing.T, name, node string) (*fake.Fake, nvml.Reader) {
	t.Helper()
	fx, ok := fake.FixtureByName(name)
	if !ok {
		t.Fatalf("no fixture %q", name)
	}
	f, err := fx.New(node)
	if err != nil {
		t.Fatal(err)
	}
	r := nvml.NewReader(f.Interface())
	t.Cleanup(func() { _ = r.Close() })
	return f, r
}

func snapshot(t *testing.T, r nvml.Reader) *nvml.Snapshot {
	t.Helper()
	s, err := r.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	for _, g := range s.GPUs {
		if g.Err != "" {
			t.Fatalf("gpu %d: %s", g.Index, g.Err)
		}
	}
	return s
}

// instancesOf converts a catalog layout to what Snapshot reports.
func instancesOf(t *testing.T, m *topology.Model, layout []topology.GPUInstance) []nvml.Instance {
	t.Helper()
	out := make([]nvml.Instance, 0, len(layout))
	for _, in := range layout {
		p, ok := m.Profile(in.Profile)
		if !ok {
			t.Fatalf("profile %s not in %s", in.Profile, m.Name)
		}
		out = append(out, nvml.Instance{ProfileID: p.ID, Start: in.Start, Size: in.Size, DeviceUUID: in.DeviceID})
	}
	return out
}

// TestSnapshotFixtures checks every fixture against the topology the
// pkg/topology/fixtures package builds for the same node: UUIDs, names,
// memory, MIG mode, and instances placed by (*Model).Pack.
func TestSnapshotFixtures(t *testing.T) {
	cat := topology.NewCatalog()
	for _, fx := range fake.Fixtures() {
		t.Run(fx.Name, func(t *testing.T) {
			node := "node-" + fx.Name
			_, r := newFixture(t, fx.Name, node)
			snap := snapshot(t, r)
			if snap.DriverVersion != fake.DriverVersion {
				t.Errorf("driver version %q, want %q", snap.DriverVersion, fake.DriverVersion)
			}
			want := fixtures.MustBuild(cat, fixtures.Spec{Name: node, Product: fx.Product, GPUs: fx.GPUs, MIG: fx.MIG})
			model, ok := cat.Lookup(fx.Product)
			if !ok {
				t.Fatalf("%s not in catalog", fx.Product)
			}
			packed, err := model.Pack(fx.MIG)
			if err != nil {
				t.Fatal(err)
			}
			if len(snap.GPUs) != fx.GPUs {
				t.Fatalf("%d GPUs, want %d", len(snap.GPUs), fx.GPUs)
			}
			for i, g := range snap.GPUs {
				w := want.GPUs[i]
				exp := nvml.GPU{
					UUID: w.UUID, Index: i, Name: fx.Product, MemoryMiB: w.MemoryMiB,
					MIGEnabled: len(fx.MIG) > 0, MIGPending: len(fx.MIG) > 0,
				}
				if len(fx.MIG) > 0 {
					exp.Instances = instancesOf(t, model, w.Instances)
				}
				if !reflect.DeepEqual(g, exp) {
					t.Errorf("gpu %d:\n got %+v\nwant %+v", i, g, exp)
				}
				// Placements and profile IDs straight from Pack.
				fromPack := instancesOf(t, model, packed)
				if len(g.Instances) != len(fromPack) {
					t.Fatalf("gpu %d: %d instances, Pack gives %d", i, len(g.Instances), len(fromPack))
				}
				for j, in := range g.Instances {
					p := fromPack[j]
					if in.ProfileID != p.ProfileID || in.Start != p.Start || in.Size != p.Size {
						t.Errorf("gpu %d instance %d: %+v, Pack gives %+v", i, j, in, p)
					}
					if !strings.HasPrefix(in.DeviceUUID, "MIG-") {
						t.Errorf("gpu %d instance %d: device UUID %q", i, j, in.DeviceUUID)
					}
				}
			}
		})
	}
}

func TestSnapshotA100AllBalanced(t *testing.T) {
	_, r := newFixture(t, "a100-40gb-mig", "n1")
	for _, g := range snapshot(t, r).GPUs {
		got := make([]nvml.Instance, len(g.Instances))
		for i, in := range g.Instances {
			got[i] = nvml.Instance{ProfileID: in.ProfileID, Start: in.Start, Size: in.Size}
		}
		want := []nvml.Instance{
			{ProfileID: 14, Start: 0, Size: 2}, // 2g.10gb
			{ProfileID: 19, Start: 2, Size: 1}, // 1g.5gb
			{ProfileID: 19, Start: 3, Size: 1}, // 1g.5gb
			{ProfileID: 9, Start: 4, Size: 4},  // 3g.20gb
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("gpu %d: %+v, want %+v", g.Index, got, want)
		}
	}
}

// TestSnapshotH100FollowsCatalog reconfigures an H100 through several
// layouts: every placement must be the catalog's (Pack), not go-nvml's mock's.
func TestSnapshotH100FollowsCatalog(t *testing.T) {
	f, r := newFixture(t, "h100-80gb-mig", "h100")
	model, _ := topology.NewCatalog().Lookup(fake.ProductH100_80GB)
	layouts := [][]string{
		{"1g.10gb", "1g.10gb", "2g.20gb", "3g.40gb"},
		{"1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb"},
		{"1g.20gb", "1g.20gb", "1g.20gb", "1g.20gb"},
		{"3g.40gb", "3g.40gb"},
		{"4g.40gb", "3g.40gb"},
		{"2g.20gb", "2g.20gb", "2g.20gb", "1g.10gb+me"},
		{"7g.80gb"},
	}
	for _, l := range layouts {
		if err := f.SetLayout(3, l); err != nil {
			t.Fatalf("SetLayout %v: %v", l, err)
		}
		packed, err := model.Pack(l)
		if err != nil {
			t.Fatal(err)
		}
		want := instancesOf(t, model, packed)
		g := snapshot(t, r).GPUs[3]
		if len(g.Instances) != len(want) {
			t.Fatalf("%v: %+v, want %+v", l, g.Instances, want)
		}
		for i, in := range g.Instances {
			if in.ProfileID != want[i].ProfileID || in.Start != want[i].Start || in.Size != want[i].Size {
				t.Errorf("%v: instance %d %+v, want %+v", l, i, in, want[i])
			}
		}
	}
	// Spot checks from real `nvidia-smi mig -lgipp` on H100: 1g.20gb (ID 15)
	// at 0,2,4,6 with size 2; 3g.40gb at 0 and 4.
	if err := f.SetLayout(3, []string{"1g.20gb", "1g.20gb", "1g.20gb", "1g.20gb"}); err != nil {
		t.Fatal(err)
	}
	for i, in := range snapshot(t, r).GPUs[3].Instances {
		if in.ProfileID != 15 || in.Start != 2*i || in.Size != 2 {
			t.Errorf("1g.20gb instance %d: %+v", i, in)
		}
	}
}

func TestSetLayoutChangesSnapshot(t *testing.T) {
	f, r := newFixture(t, "a100-40gb-mig", "n1")
	before := snapshot(t, r)
	if err := f.SetLayout(2, []string{"7g.40gb"}); err != nil {
		t.Fatal(err)
	}
	after := snapshot(t, r)
	g := after.GPUs[2]
	if len(g.Instances) != 1 || g.Instances[0].ProfileID != 0 || g.Instances[0].Start != 0 || g.Instances[0].Size != 8 {
		t.Fatalf("after SetLayout: %+v", g.Instances)
	}
	old := map[string]bool{}
	for _, in := range before.GPUs[2].Instances {
		old[in.DeviceUUID] = true
	}
	if old[g.Instances[0].DeviceUUID] || !strings.HasPrefix(g.Instances[0].DeviceUUID, "MIG-") {
		t.Errorf("new MIG device UUID %q reuses an old one or is malformed", g.Instances[0].DeviceUUID)
	}
	for _, i := range []int{0, 1, 3, 7} {
		if !reflect.DeepEqual(before.GPUs[i], after.GPUs[i]) {
			t.Errorf("gpu %d changed", i)
		}
	}
	// An impossible layout fails and changes nothing.
	if err := f.SetLayout(2, []string{"3g.20gb", "3g.20gb", "3g.20gb"}); err == nil {
		t.Fatal("three 3g.20gb accepted")
	}
	if !reflect.DeepEqual(snapshot(t, r).GPUs[2], g) {
		t.Error("failed SetLayout changed the GPU")
	}
	// Back to all-balanced: the catalog's placements again.
	if err := f.SetLayout(2, []string{"3g.20gb", "1g.5gb", "2g.10gb", "1g.5gb"}); err != nil {
		t.Fatal(err)
	}
	var starts []int
	for _, in := range snapshot(t, r).GPUs[2].Instances {
		starts = append(starts, in.Start)
	}
	if !reflect.DeepEqual(starts, []int{0, 2, 3, 4}) {
		t.Errorf("starts %v", starts)
	}
}

func TestMIGMode(t *testing.T) {
	f, r := newFixture(t, "a100-40gb", "n1")
	if g := snapshot(t, r).GPUs[0]; g.MIGEnabled || g.MIGPending || g.Instances != nil {
		t.Fatalf("non-MIG fixture: %+v", g)
	}
	if err := f.SetLayout(0, []string{"7g.40gb"}); err == nil {
		t.Fatal("SetLayout with MIG disabled succeeded")
	}
	if err := f.SetMIGMode(0, true); err != nil {
		t.Fatal(err)
	}
	if err := f.SetMIGPending(1, true); err != nil {
		t.Fatal(err)
	}
	snap := snapshot(t, r)
	if g := snap.GPUs[0]; !g.MIGEnabled || !g.MIGPending || len(g.Instances) != 0 {
		t.Fatalf("MIG enabled: %+v", g)
	}
	if g := snap.GPUs[1]; g.MIGEnabled || !g.MIGPending {
		t.Fatalf("MIG pending: %+v", g)
	}
	if err := f.SetLayout(0, []string{"4g.20gb", "3g.20gb"}); err != nil {
		t.Fatal(err)
	}
	if n := len(snapshot(t, r).GPUs[0].Instances); n != 2 {
		t.Fatalf("%d instances, want 2", n)
	}
	if err := f.SetMIGMode(0, false); err != nil {
		t.Fatal(err)
	}
	if g := snapshot(t, r).GPUs[0]; g.MIGEnabled || g.Instances != nil {
		t.Fatalf("MIG disabled again: %+v", g)
	}
}

func TestSnapshotGPUWithoutMIG(t *testing.T) {
	f, err := fake.New("n1", []fake.GPUSpec{{Product: "Tesla T4", MemoryMiB: 15360}, {Product: fake.ProductA30, MIG: []string{"4g.24gb"}}})
	if err != nil {
		t.Fatal(err)
	}
	snap := snapshot(t, nvml.NewReader(f.Interface()))
	if g := snap.GPUs[0]; g.Name != "Tesla T4" || g.MemoryMiB != 15360 || g.MIGEnabled || g.MIGPending {
		t.Errorf("T4: %+v", g)
	}
	if g := snap.GPUs[1]; len(g.Instances) != 1 || g.Instances[0] != (nvml.Instance{ProfileID: 0, Start: 0, Size: 4, DeviceUUID: g.Instances[0].DeviceUUID}) {
		t.Errorf("A30: %+v", g)
	}
}

func TestSnapshotPerGPUError(t *testing.T) {
	f, r := newFixture(t, "h200-mig", "n1")
	if err := f.SetDeviceError(3, gonvml.ERROR_GPU_IS_LOST); err != nil {
		t.Fatal(err)
	}
	snap, err := r.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot failed as a whole: %v", err)
	}
	for _, g := range snap.GPUs {
		switch {
		case g.Index == 3 && !strings.Contains(g.Err, "ERROR_GPU_IS_LOST"):
			t.Errorf("lost GPU: Err %q", g.Err)
		case g.Index != 3 && (g.Err != "" || len(g.Instances) != 4):
			t.Errorf("gpu %d: %+v", g.Index, g)
		}
	}
	if err := f.SetDeviceError(3, gonvml.SUCCESS); err != nil {
		t.Fatal(err)
	}
	snapshot(t, r)
}

// TestSnapshotDegradesGracefully runs the Reader on a hand-made mock: calls
// that are not supported leave fields empty without an error, profile
// indexes this driver predates are skipped, empty MIG device slots are
// skipped, and a GPU instance without a compute instance has no device UUID.
func TestSnapshotDegradesGracefully(t *testing.T) {
	gi := func(id, profile, start, size uint32) *mock.GpuInstance {
		return &mock.GpuInstance{GetInfoFunc: func() (gonvml.GpuInstanceInfo, gonvml.Return) {
			return gonvml.GpuInstanceInfo{Id: id, ProfileId: profile, Placement: gonvml.GpuInstancePlacement{Start: start, Size: size}}, gonvml.SUCCESS
		}}
	}
	mig := &mock.Device{
		GetGpuInstanceIdFunc: func() (int, gonvml.Return) { return 2, gonvml.SUCCESS },
		GetUUIDFunc:          func() (string, gonvml.Return) { return "MIG-two", gonvml.SUCCESS },
	}
	dev := &mock.Device{
		GetUUIDFunc:       func() (string, gonvml.Return) { return "GPU-x", gonvml.SUCCESS },
		GetNameFunc:       func() (string, gonvml.Return) { return "NVIDIA A100-SXM4-40GB", gonvml.SUCCESS },
		GetMemoryInfoFunc: func() (gonvml.Memory, gonvml.Return) { return gonvml.Memory{}, gonvml.ERROR_NOT_SUPPORTED },
		GetMigModeFunc:    func() (int, int, gonvml.Return) { return 1, 1, gonvml.SUCCESS },
		GetGpuInstanceProfileInfoFunc: func(idx int) (gonvml.GpuInstanceProfileInfo, gonvml.Return) {
			switch {
			case idx == gonvml.GPU_INSTANCE_PROFILE_1_SLICE:
				return gonvml.GpuInstanceProfileInfo{Id: 19, InstanceCount: 7}, gonvml.SUCCESS
			case idx == gonvml.GPU_INSTANCE_PROFILE_2_SLICE:
				// A profile with no instance slots must not reach GetGpuInstances.
				return gonvml.GpuInstanceProfileInfo{Id: 14}, gonvml.SUCCESS
			case idx > 12:
				return gonvml.GpuInstanceProfileInfo{}, gonvml.ERROR_INVALID_ARGUMENT
			}
			return gonvml.GpuInstanceProfileInfo{}, gonvml.ERROR_NOT_SUPPORTED
		},
		GetGpuInstancesFunc: func(info *gonvml.GpuInstanceProfileInfo) ([]gonvml.GpuInstance, gonvml.Return) {
			if info.Id != 19 {
				t.Errorf("GetGpuInstances for profile %d", info.Id)
			}
			return []gonvml.GpuInstance{gi(1, 19, 0, 1), gi(2, 19, 5, 1)}, gonvml.SUCCESS
		},
		GetMaxMigDeviceCountFunc: func() (int, gonvml.Return) { return 7, gonvml.SUCCESS },
		GetMigDeviceHandleByIndexFunc: func(j int) (gonvml.Device, gonvml.Return) {
			if j == 3 {
				return mig, gonvml.SUCCESS
			}
			return nil, gonvml.ERROR_NOT_FOUND
		},
	}
	lib := &mock.Interface{
		DeviceGetCountFunc:         func() (int, gonvml.Return) { return 2, gonvml.SUCCESS },
		SystemGetDriverVersionFunc: func() (string, gonvml.Return) { return "", gonvml.ERROR_NOT_SUPPORTED },
		DeviceGetHandleByIndexFunc: func(i int) (gonvml.Device, gonvml.Return) {
			if i == 1 {
				return nil, gonvml.ERROR_UNKNOWN
			}
			return dev, gonvml.SUCCESS
		},
	}
	snap, err := nvml.NewReader(lib).Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	want := nvml.GPU{
		UUID: "GPU-x", Name: "NVIDIA A100-SXM4-40GB", MIGEnabled: true, MIGPending: true,
		Instances: []nvml.Instance{{ProfileID: 19, Start: 0, Size: 1}, {ProfileID: 19, Start: 5, Size: 1, DeviceUUID: "MIG-two"}},
	}
	if snap.DriverVersion != "" || len(snap.GPUs) != 2 || !reflect.DeepEqual(snap.GPUs[0], want) {
		t.Fatalf("snapshot %+v", snap)
	}
	if g := snap.GPUs[1]; g.Index != 1 || !strings.Contains(g.Err, "ERROR_UNKNOWN") {
		t.Errorf("unreadable GPU: %+v", g)
	}

	lib.DeviceGetCountFunc = func() (int, gonvml.Return) { return 0, gonvml.ERROR_UNINITIALIZED }
	if _, err := nvml.NewReader(lib).Snapshot(); !errors.Is(err, gonvml.ERROR_UNINITIALIZED) {
		t.Errorf("count failure: %v", err)
	}
}

func TestCriticalXIDs(t *testing.T) {
	for _, x := range []uint64{48, 63, 64, 74, 79, 92, 94, 95, 119, 120} {
		if !nvml.IsCriticalXID(x) {
			t.Errorf("XID %d not critical", x)
		}
	}
	for _, x := range []uint64{13, 31, 43, 45, 68, 109} {
		if nvml.IsCriticalXID(x) {
			t.Errorf("XID %d critical", x)
		}
	}
	if got := nvml.ApplicationXIDs(); !reflect.DeepEqual(got, []uint64{13, 31, 43, 45, 68, 109}) {
		t.Errorf("ApplicationXIDs %v", got)
	}
}

func receive(t *testing.T, ch <-chan nvml.HealthEvent) nvml.HealthEvent {
	t.Helper()
	select {
	case ev := <-ch:
		return ev
	case <-time.After(time.Second):
		t.Fatal("no health event within 1s")
		return nvml.HealthEvent{}
	}
}

func TestWatchHealth(t *testing.T) {
	f, r := newFixture(t, "a100-80gb-mig", "n1")
	snap := snapshot(t, r)
	// Raised before anyone watches: queued for the watcher.
	f.SetUnhealthy(0, 74)

	ctx, cancel := context.WithCancel(context.Background())
	events := make(chan nvml.HealthEvent)
	done := make(chan error, 1)
	go func() { done <- r.WatchHealth(ctx, events) }()

	if ev := receive(t, events); ev.GPUUUID != snap.GPUs[0].UUID || ev.XID != 74 || !ev.Critical {
		t.Errorf("queued event %+v", ev)
	}
	start := time.Now()
	f.SetUnhealthy(5, 79)
	ev := receive(t, events)
	if ev.GPUUUID != snap.GPUs[5].UUID || ev.XID != 79 || !ev.Critical || ev.Time.Before(start) {
		t.Errorf("XID 79: %+v", ev)
	}
	f.SetUnhealthy(2, 31)
	if ev := receive(t, events); ev.GPUUUID != snap.GPUs[2].UUID || ev.XID != 31 || ev.Critical {
		t.Errorf("XID 31: %+v", ev)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("WatchHealth after cancel: %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("WatchHealth did not return after cancel")
	}
}

func TestCloseStopsWatchers(t *testing.T) {
	_, r := newFixture(t, "a30-mig", "n1")
	done := make(chan error, 1)
	go func() { done <- r.WatchHealth(context.Background(), make(chan nvml.HealthEvent)) }()
	time.Sleep(50 * time.Millisecond)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, nvml.ErrClosed) {
			t.Errorf("WatchHealth after Close: %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("WatchHealth did not return after Close")
	}
	if _, err := r.Snapshot(); !errors.Is(err, nvml.ErrClosed) {
		t.Errorf("Snapshot after Close: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestConcurrentUse runs WatchHealth, Snapshots, reconfigurations and XIDs at
// once; run with -race.
func TestConcurrentUse(t *testing.T) {
	f, r := newFixture(t, "h100-80gb-mig", "n1")
	ctx, cancel := context.WithCancel(context.Background())
	events := make(chan nvml.HealthEvent, 1024)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := r.WatchHealth(ctx, events); err != nil {
			t.Errorf("WatchHealth: %v", err)
		}
	}()
	layouts := [][]string{{"7g.80gb"}, {"3g.40gb", "3g.40gb"}, {"1g.10gb", "1g.10gb", "2g.20gb", "3g.40gb"}}
	for w := 0; w < 3; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 30; i++ {
				if err := f.SetLayout((w+i)%8, layouts[(w+i)%len(layouts)]); err != nil {
					t.Errorf("SetLayout: %v", err)
				}
				f.SetUnhealthy(i%8, 79)
				// Reads racing a reconfiguration may report it in
				// GPU.Err; the snapshot itself must not fail.
				if s, err := r.Snapshot(); err != nil || len(s.GPUs) != 8 {
					t.Errorf("Snapshot: %v", err)
					return
				}
			}
		}()
	}
	deadline := time.After(5 * time.Second)
	for n := 0; n < 90; n++ {
		select {
		case <-events:
		case <-deadline:
			t.Fatalf("%d of 90 events", n)
		}
	}
	cancel()
	wg.Wait()
	snapshot(t, r) // settled: no errors
}

// TestOpen uses the real library: without an NVIDIA driver Open must fail
// with an error naming the library; with one it must succeed.
func TestOpen(t *testing.T) {
	lib := dl.New(nvml.LibraryName, dl.RTLD_LAZY|dl.RTLD_GLOBAL)
	libPresent := lib.Open() == nil
	if libPresent {
		_ = lib.Close()
	}
	_, statErr := os.Stat("/proc/driver/nvidia/version")
	driverPresent := libPresent && statErr == nil
	t.Logf("%s loadable: %v; kernel driver: %v", nvml.LibraryName, libPresent, statErr == nil)

	r, err := nvml.Open()
	if !driverPresent {
		if err == nil {
			_ = r.Close()
			t.Fatal("Open succeeded without an NVIDIA driver")
		}
		if !strings.Contains(err.Error(), nvml.LibraryName) {
			t.Errorf("error does not name the library: %v", err)
		}
		if !libPresent && !errors.Is(err, gonvml.ERROR_LIBRARY_NOT_FOUND) {
			t.Errorf("error does not wrap ERROR_LIBRARY_NOT_FOUND: %v", err)
		}
		t.Logf("Open: %v", err)
		return
	}
	if err != nil {
		t.Fatalf("Open with a driver present: %v", err)
	}
	defer func() {
		if err := r.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}()
	snap, err := r.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot on the real driver: %v", err)
	}
	t.Logf("driver %s", snap.DriverVersion)
	for _, g := range snap.GPUs {
		t.Logf("gpu %+v", g)
		if g.Err != "" {
			t.Errorf("gpu %d: %s", g.Index, g.Err)
		}
	}
}
