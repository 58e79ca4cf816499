package dpconfig

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/gpuslice/gpuslice/pkg/topology"
)

func ts(renameByDefault, failGT1 bool, rs ...topology.SharedResource) *topology.TimeSlicing {
	return &topology.TimeSlicing{RenameByDefault: renameByDefault, FailRequestsGreaterThanOne: failGT1, Resources: rs}
}

func withTS(t *topology.TimeSlicing) *Config {
	c := Defaults()
	c.TimeSlicing = t
	return c
}

// kinds of error a case expects.
const (
	ok          = ""
	invalid     = "invalid"
	unsupported = "unsupported"
)

func TestLoadFiles(t *testing.T) {
	cases := []struct {
		file string
		opts []Option
		want *Config
		// errKind is ok, invalid or unsupported; errHas are substrings of the message.
		errKind string
		errHas  []string
	}{
		{file: "helm-defaults.yaml", want: Defaults()},
		{
			file: "time-slicing-4-rename-by-default.yaml",
			want: withTS(ts(true, false, topology.SharedResource{Name: "nvidia.com/gpu", Replicas: 4})),
		},
		{
			file:    "time-slicing-rename.yaml",
			errKind: unsupported,
			errHas: []string{
				"sharing.timeSlicing.resources[0].rename: custom name nvidia.com/gpu-quarter is ignored by the stock device plugin, which advertises nvidia.com/gpu",
			},
		},
		{
			file: "time-slicing-rename.yaml",
			opts: []Option{WithCustomRename()},
			want: withTS(ts(false, false, topology.SharedResource{Name: "nvidia.com/gpu", Rename: "nvidia.com/gpu-quarter", Replicas: 4})),
		},
		{
			file: "time-slicing-rename-default-name.yaml",
			want: withTS(ts(true, false, topology.SharedResource{Name: "nvidia.com/gpu", Replicas: 2})),
		},
		{
			file: "mig-mixed.yaml",
			want: &Config{
				MIGStrategy:      topology.MIGStrategyMixed,
				DeviceIDStrategy: topology.DeviceIDIndex,
				AllocationPolicy: topology.PolicyPacked,
				TimeSlicing: ts(false, false,
					topology.SharedResource{Name: "nvidia.com/mig-1g.10gb", Replicas: 7},
					topology.SharedResource{Name: "nvidia.com/mig-3g.40gb", Replicas: 2}),
			},
		},
		{
			file: "fail-requests-greater-than-one.yaml",
			want: withTS(ts(false, true, topology.SharedResource{Name: "nvidia.com/gpu", Replicas: 10})),
		},
		{
			file: "config.json",
			want: &Config{
				MIGStrategy:      topology.MIGStrategySingle,
				DeviceIDStrategy: topology.DeviceIDUUID,
				AllocationPolicy: topology.PolicyDistributed,
				TimeSlicing:      ts(false, false, topology.SharedResource{Name: "nvidia.com/gpu", Replicas: 3}),
			},
		},
		{file: "broken.yaml", errKind: invalid, errHas: []string{"broken.yaml", "not valid YAML", "line 7"}},
		{
			file:    "replicas-zero.yaml",
			errKind: invalid,
			errHas:  []string{"sharing.timeSlicing.resources[1].replicas: must be >= 2, got 0"},
		},
		{file: "unknown-version.yaml", errKind: invalid, errHas: []string{`version: unknown version "v2"`}},
		{
			file:    "devices-subset.yaml",
			errKind: unsupported,
			errHas:  []string{"sharing.timeSlicing.resources[0].devices: sharing a subset of devices (a list of 2) is not supported"},
		},
		{file: "mps.yaml", errKind: unsupported, errHas: []string{"sharing.mps: MPS sharing is not supported"}},
	}
	for _, tc := range cases {
		name := tc.file
		if len(tc.opts) > 0 {
			name += "+opts"
		}
		t.Run(name, func(t *testing.T) {
			path := filepath.Join("testdata", tc.file)
			got, err := Load(path, tc.opts...)
			checkResult(t, got, err, tc.want, tc.errKind, tc.errHas)
		})
	}
}

func checkResult(t *testing.T, got *Config, err error, want *Config, errKind string, errHas []string) {
	t.Helper()
	if errKind == ok {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("config\n got %+v (ts %+v)\nwant %+v (ts %+v)", got, got.TimeSlicing, want, want.TimeSlicing)
		}
		return
	}
	if err == nil {
		t.Fatalf("no error, config %+v", got)
	}
	if got != nil {
		t.Errorf("config %+v returned with an error", got)
	}
	for _, s := range errHas {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not contain %q", err, s)
		}
	}
	switch errKind {
	case invalid:
		if !errors.Is(err, ErrInvalid) || errors.Is(err, ErrUnsupported) {
			t.Errorf("error %q: want ErrInvalid only (Is invalid %v, unsupported %v)", err, errors.Is(err, ErrInvalid), errors.Is(err, ErrUnsupported))
		}
	case unsupported:
		if !errors.Is(err, ErrUnsupported) || errors.Is(err, ErrInvalid) {
			t.Errorf("error %q: want ErrUnsupported only (Is invalid %v, unsupported %v)", err, errors.Is(err, ErrInvalid), errors.Is(err, ErrUnsupported))
		}
	}
	var pe *Error
	if !errors.As(err, &pe) || len(pe.Fields) == 0 {
		t.Errorf("error %T is not a *dpconfig.Error with fields", err)
	}
}

func TestLoadMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config", "nvidia-plugin.yaml")
	cfg, err := Load(path)
	if err == nil || cfg != nil {
		t.Fatalf("Load(missing) = %v, %v", cfg, err)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("error %q does not wrap fs.ErrNotExist", err)
	}
	for _, s := range []string{"missing", path} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not contain %q", err, s)
		}
	}
}

func TestLoadTooLarge(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big.yaml")
	data := []byte("version: v1\n# " + strings.Repeat("x", MaxFileSize) + "\n")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("Load(big) error = %v", err)
	}
}

func TestParse(t *testing.T) {
	gpu := func(n int) topology.SharedResource {
		return topology.SharedResource{Name: topology.ResourceGPU, Replicas: n}
	}
	cases := []struct {
		name    string
		in      string
		opts    []Option
		want    *Config
		errKind string
		errHas  []string
	}{
		{name: "empty file", in: "", want: Defaults()},
		{name: "comments only", in: "# nothing\n", want: Defaults()},
		{name: "no version", in: "flags: {migStrategy: single}\n", want: &Config{MIGStrategy: "single", DeviceIDStrategy: "uuid", AllocationPolicy: "distributed"}},
		{name: "empty version", in: "version: ''\n", want: Defaults()},
		{name: "null sections", in: "version: v1\nflags:\nsharing:\n", want: Defaults()},
		{
			name: "keys of plain sections match case-insensitively",
			in:   "Version: v1\nFLAGS:\n  MigStrategy: mixed\n  Plugin:\n    DeviceIdStrategy: index\n",
			want: &Config{MIGStrategy: "mixed", DeviceIDStrategy: "index", AllocationPolicy: "distributed"},
		},
		{
			name: "name without the nvidia.com prefix",
			in:   "sharing:\n  timeSlicing:\n    resources:\n    - {name: gpu, replicas: 2}\n",
			want: withTS(ts(false, false, gpu(2))),
		},
		{
			name: "devices all",
			in:   "sharing:\n  timeSlicing:\n    resources:\n    - {name: nvidia.com/gpu, replicas: 2, devices: all}\n",
			want: withTS(ts(false, false, gpu(2))),
		},
		{
			name: "policy from config",
			in:   "flags:\n  plugin:\n    sharedDevicesAllocationPolicy: spread\n",
			want: &Config{MIGStrategy: "none", DeviceIDStrategy: "uuid", AllocationPolicy: "spread"},
		},
		{
			name: "overrides win over the file",
			in:   "flags:\n  migStrategy: none\n  plugin:\n    sharedDevicesAllocationPolicy: distributed\n",
			opts: []Option{WithOverrides(Overrides{MIGStrategy: "mixed", AllocationPolicy: "packed", DeviceIDStrategy: "index"})},
			want: &Config{MIGStrategy: "mixed", DeviceIDStrategy: "index", AllocationPolicy: "packed"},
		},
		{
			name: "an overridden bad value is not an error",
			in:   "flags: {migStrategy: all, plugin: {sharedDevicesAllocationPolicy: tight}}\n",
			opts: []Option{WithOverrides(Overrides{MIGStrategy: "single", AllocationPolicy: "packed"})},
			want: &Config{MIGStrategy: "single", DeviceIDStrategy: "uuid", AllocationPolicy: "packed"},
		},
		{
			name:    "bad override",
			in:      "",
			opts:    []Option{WithOverrides(Overrides{AllocationPolicy: "tight"})},
			errKind: invalid,
			errHas:  []string{`--shared-devices-allocation-policy (SHARED_DEVICES_ALLOCATION_POLICY): unknown allocation policy "tight"`},
		},
		{name: "unknown MIG strategy", in: "flags: {migStrategy: all}\n", errKind: invalid, errHas: []string{`flags.migStrategy: unknown MIG strategy "all"`}},
		{name: "MIG strategy not a string", in: "flags: {migStrategy: [mixed]}\n", errKind: invalid, errHas: []string{"flags.migStrategy: must be a string, got a list"}},
		{name: "unknown device ID strategy", in: "flags: {plugin: {deviceIDStrategy: serial}}\n", errKind: invalid, errHas: []string{`flags.plugin.deviceIDStrategy: unknown device ID strategy "serial"`}},
		{name: "unknown policy", in: "flags: {plugin: {sharedDevicesAllocationPolicy: tight}}\n", errKind: invalid, errHas: []string{`flags.plugin.sharedDevicesAllocationPolicy: unknown allocation policy "tight"`}},
		{name: "bad device list strategy", in: "flags: {plugin: {deviceListStrategy: [envvar, floppy]}}\n", errKind: invalid, errHas: []string{`flags.plugin.deviceListStrategy: unknown device list strategy "floppy"`}},
		{name: "bool flag of the wrong type", in: "flags: {failOnInitError: 'yes please'}\n", errKind: invalid, errHas: []string{"flags.failOnInitError: must be a boolean"}},
		{name: "version not a string", in: "version: 1\n", errKind: invalid, errHas: []string{"version: must be a string"}},
		{name: "top level is a list", in: "- version: v1\n", errKind: invalid, errHas: []string{"must be a mapping, got a list"}},
		{name: "timeSlicing without resources", in: "sharing:\n  timeSlicing:\n    renameByDefault: true\n", errKind: invalid, errHas: []string{"sharing.timeSlicing: no resources specified"}},
		{name: "timeSlicing null", in: "sharing:\n  timeSlicing:\n", errKind: invalid, errHas: []string{"sharing.timeSlicing: no resources specified"}},
		{name: "empty resources", in: "sharing: {timeSlicing: {resources: []}}\n", errKind: invalid, errHas: []string{"sharing.timeSlicing.resources: no resources specified"}},
		{name: "resource without replicas", in: "sharing: {timeSlicing: {resources: [{name: nvidia.com/gpu}]}}\n", errKind: invalid, errHas: []string{"sharing.timeSlicing.resources[0]: no replicas specified"}},
		{name: "resource without name", in: "sharing: {timeSlicing: {resources: [{replicas: 2}]}}\n", errKind: invalid, errHas: []string{"sharing.timeSlicing.resources[0]: no resource name specified"}},
		{name: "replicas 1", in: "sharing: {timeSlicing: {resources: [{name: nvidia.com/gpu, replicas: 1}]}}\n", errKind: invalid, errHas: []string{"sharing.timeSlicing.resources[0].replicas: must be >= 2, got 1"}},
		{name: "replicas as a string", in: "sharing: {timeSlicing: {resources: [{name: nvidia.com/gpu, replicas: '4'}]}}\n", errKind: invalid, errHas: []string{`resources[0].replicas: must be an integer, got a string ("4")`}},
		{name: "replicas fractional", in: "sharing: {timeSlicing: {resources: [{name: nvidia.com/gpu, replicas: 2.5}]}}\n", errKind: invalid, errHas: []string{"resources[0].replicas: must be an integer, got 2.5"}},
		{name: "too many replicas", in: "sharing: {timeSlicing: {resources: [{name: nvidia.com/gpu, replicas: 100000}]}}\n", errKind: unsupported, errHas: []string{"resources[0].replicas: 100000 replicas is more than gpuslice supports"}},
		{name: "devices count", in: "sharing: {timeSlicing: {resources: [{name: nvidia.com/gpu, replicas: 2, devices: 2}]}}\n", errKind: unsupported, errHas: []string{"resources[0].devices: sharing a subset of devices (count 2)"}},
		{name: "devices bad string", in: "sharing: {timeSlicing: {resources: [{name: nvidia.com/gpu, replicas: 2, devices: some}]}}\n", errKind: invalid, errHas: []string{`resources[0].devices: devices set as "some"`}},
		{name: "devices bad ref", in: "sharing: {timeSlicing: {resources: [{name: nvidia.com/gpu, replicas: 2, devices: [GPU-x]}]}}\n", errKind: invalid, errHas: []string{"resources[0].devices[0]: unsupported device reference GPU-x"}},
		{
			name: "devices MIG refs",
			in:   "sharing: {timeSlicing: {resources: [{name: nvidia.com/gpu, replicas: 2, devices: ['0:1', MIG-GPU-8a6fb1fe-1c4e-2a73-3a2b-6c1f4c5d9e01/1/0]}]}}\n", errKind: unsupported,
			errHas: []string{"resources[0].devices: sharing a subset of devices (a list of 2)"},
		},
		{name: "sharing something else", in: "sharing: {timeSlicing: {resources: [{name: nvidia.com/foo, replicas: 2}]}}\n", errKind: unsupported, errHas: []string{"resources[0].name: cannot time-slice nvidia.com/foo"}},
		{name: "bad resource name", in: "sharing: {timeSlicing: {resources: [{name: 'nvidia.com/GPU_X', replicas: 2}]}}\n", errKind: invalid, errHas: []string{`resources[0].name: incorrect format for resource name "nvidia.com/GPU_X"`}},
		{name: "foreign domain", in: "sharing: {timeSlicing: {resources: [{name: example.com/gpu, replicas: 2}]}}\n", errKind: invalid, errHas: []string{"resources[0].name: incorrect format"}},
		{name: "null rename", in: "sharing: {timeSlicing: {resources: [{name: nvidia.com/gpu, replicas: 2, rename: null}]}}\n", errKind: invalid, errHas: []string{"resources[0].rename: incorrect format"}},
		{name: "listed twice", in: "sharing: {timeSlicing: {resources: [{name: gpu, replicas: 2}, {name: nvidia.com/gpu, replicas: 4}]}}\n", errKind: unsupported, errHas: []string{"resources[1].name: nvidia.com/gpu is already shared by sharing.timeSlicing.resources[0]"}},
		{
			name:    "custom rename with renameByDefault",
			in:      "sharing: {timeSlicing: {renameByDefault: true, resources: [{name: nvidia.com/gpu, rename: nvidia.com/gpu-ts, replicas: 2}]}}\n",
			errKind: unsupported,
			errHas:  []string{"custom name nvidia.com/gpu-ts is ignored by the stock device plugin, which advertises nvidia.com/gpu.shared"},
		},
		{
			name: "custom rename with renameByDefault, honoured",
			in:   "sharing: {timeSlicing: {renameByDefault: true, resources: [{name: nvidia.com/gpu, rename: nvidia.com/gpu-ts, replicas: 2}]}}\n",
			opts: []Option{WithCustomRename()},
			want: withTS(ts(true, false, topology.SharedResource{Name: "nvidia.com/gpu", Rename: "nvidia.com/gpu-ts", Replicas: 2})),
		},
		{
			name:    "mis-cased key in timeSlicing",
			in:      "sharing: {timeSlicing: {RenameByDefault: true, resources: [{name: nvidia.com/gpu, replicas: 2}]}}\n",
			errKind: unsupported,
			errHas:  []string{"sharing.timeSlicing.RenameByDefault: unknown field, which the device plugin ignores (the key is case-sensitive: did you mean renameByDefault?)"},
		},
		{name: "unknown key in a resource", in: "sharing: {timeSlicing: {resources: [{name: nvidia.com/gpu, replicas: 2, memoryGB: 8}]}}\n", errKind: unsupported, errHas: []string{"resources[0].memoryGB: unknown field"}},
		{name: "unknown sharing mode", in: "sharing: {vgpu: {}}\n", errKind: unsupported, errHas: []string{"sharing.vgpu: unknown sharing mode"}},
		{name: "mps null is off", in: "sharing: {mps: null}\n", want: Defaults()},
		{name: "resources section", in: "resources:\n  gpus:\n  - pattern: '*A100*'\n    name: a100\n", errKind: unsupported, errHas: []string{"resources.gpus: custom resource naming"}},
		{name: "unknown flags are ignored", in: "flags: {gdsEnabled: true, mofedEnabled: false, someFutureFlag: 3, gfd: {oneshot: true}}\nimex: {channelIDs: [0]}\n", want: Defaults()},
		{
			name:    "every problem reported",
			in:      "flags: {migStrategy: all}\nsharing:\n  timeSlicing:\n    resources:\n    - {name: nvidia.com/gpu, replicas: 0}\n    - {name: nvidia.com/mig-1g.5gb, replicas: 2, devices: [0]}\n",
			errKind: "both",
			errHas:  []string{"flags.migStrategy", "resources[0].replicas: must be >= 2, got 0", "resources[1].devices"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse([]byte(tc.in), tc.opts...)
			checkResult(t, got, err, tc.want, tc.errKind, tc.errHas)
		})
	}
}

func TestOverridesFromEnv(t *testing.T) {
	env := map[string]string{EnvMIGStrategy: " mixed ", EnvAllocationPolicy: "packed", EnvDeviceIDStrategy: ""}
	got := OverridesFromEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	want := Overrides{MIGStrategy: "mixed", AllocationPolicy: "packed"}
	if got != want {
		t.Fatalf("OverridesFromEnv = %+v, want %+v", got, want)
	}
}

func TestApplyTo(t *testing.T) {
	cfg, err := Load("testdata/mig-mixed.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var n topology.Node
	cfg.ApplyTo(&n)
	if n.MIGStrategy != topology.MIGStrategyMixed || n.DeviceIDStrategy != topology.DeviceIDIndex || n.AllocationPolicy != topology.PolicyPacked {
		t.Fatalf("ApplyTo: %+v", n)
	}
	n.TimeSlicing.Resources[0].Replicas = 99
	if cfg.TimeSlicing.Resources[0].Replicas != 7 {
		t.Fatal("ApplyTo shares TimeSlicing.Resources with the config")
	}
}

func TestDefaults(t *testing.T) {
	d := Defaults()
	if d.MIGStrategy != topology.MIGStrategyNone || d.DeviceIDStrategy != topology.DeviceIDUUID || d.AllocationPolicy != topology.PolicyDistributed || d.TimeSlicing != nil {
		t.Fatalf("Defaults() = %+v", d)
	}
	d.MIGStrategy = topology.MIGStrategyMixed
	if Defaults().MIGStrategy != topology.MIGStrategyNone {
		t.Fatal("Defaults returns a shared value")
	}
}
