package dpconfig

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gpuslice/gpuslice/pkg/topology"
)

// FuzzParse checks that Parse never panics, returns a config or an *Error
// (never both), and that every config it accepts is one the topology model
// accepts.
func FuzzParse(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "*"))
	if err != nil {
		f.Fatal(err)
	}
	for _, p := range files {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range []string{
		"",
		"~",
		"[]",
		"version: v1\nsharing: {timeSlicing: {resources: [{name: gpu, replicas: 2, rename: gpu.shared}]}}",
		"sharing: {timeSlicing: {renameByDefault: true, resources: [null, {}, {name: 1}, {name: gpu, replicas: 9999999999999999999999}]}}",
		"flags: {plugin: {deviceListStrategy: [1, null]}}",
		"sharing: {timeSlicing: {resources: [{name: nvidia.com/mig-1g.5gb, replicas: 3, devices: [\"0:0\", 7]}]}}",
		"{\"version\": \"v1\", \"sharing\": {\"mps\": {}}}",
		"&a [*a]",
		"a: &a {b: *a}",
		"version: !!binary dmVyc2lvbg==",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, opts := range [][]Option{nil, {WithCustomRename()}} {
			cfg, err := Parse(data, opts...)
			if (cfg == nil) == (err == nil) {
				t.Fatalf("Parse returned config %v and error %v", cfg, err)
			}
			if err != nil {
				var pe *Error
				if !errors.As(err, &pe) || len(pe.Fields) == 0 {
					t.Fatalf("error %T %q is not a *dpconfig.Error with fields", err, err)
				}
				if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrUnsupported) {
					t.Fatalf("error %q is neither invalid nor unsupported", err)
				}
				if strings.TrimSpace(err.Error()) == "" {
					t.Fatal("empty error message")
				}
				continue
			}
			checkAccepted(t, cfg)
		}
	})
}

func checkAccepted(t *testing.T, cfg *Config) {
	t.Helper()
	n := topology.Node{Name: "fuzz"}
	cfg.ApplyTo(&n)
	if err := n.Validate(nil); err != nil {
		t.Fatalf("accepted config %+v fails topology validation: %v", cfg, err)
	}
	if ts := cfg.TimeSlicing; ts != nil {
		if len(ts.Resources) == 0 {
			t.Fatal("time-slicing without resources accepted")
		}
		for _, r := range ts.Resources {
			if r.Replicas < 2 || r.Replicas > MaxReplicas {
				t.Fatalf("accepted %d replicas", r.Replicas)
			}
		}
	}
}
