package topology_test

import (
	"os"
	"reflect"
	"testing"

	"github.com/gpuslice/gpuslice/pkg/topology"
)

func TestMIGPartedMarshalRoundTrip(t *testing.T) {
	f := &topology.MIGParted{Version: "v1", Configs: map[string][]topology.MIGPartedEntry{
		"gpuslice-a-1": topology.PerGPUConfig(map[int]map[string]int{1: {"3g.40gb": 2}, 0: {"1g.10gb": 7, "2g.20gb": 0}}, []int{2}),
		"filtered":     {{DeviceFilter: []string{"0x233010DE"}, AllDevices: true, MIGEnabled: true, MIGDevices: map[string]int{"7g.80gb": 1}}},
	}}
	data, err := f.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := topology.ParseMIGParted(data)
	if err != nil {
		t.Fatalf("%v\n%s", err, data)
	}
	want := map[string][]topology.MIGPartedEntry{
		"gpuslice-a-1": {
			{Devices: []int{0}, MIGEnabled: true, MIGDevices: map[string]int{"1g.10gb": 7}},
			{Devices: []int{1}, MIGEnabled: true, MIGDevices: map[string]int{"3g.40gb": 2}},
			{Devices: []int{2}},
		},
		"filtered": {{DeviceFilter: []string{"0x233010DE"}, AllDevices: true, MIGEnabled: true, MIGDevices: map[string]int{"7g.80gb": 1}}},
	}
	if !reflect.DeepEqual(back.Configs, want) {
		t.Fatalf("round trip:\n got %+v\nwant %+v\n%s", back.Configs, want, data)
	}
	// NVIDIA's default file survives a round trip.
	raw, err := os.ReadFile(sharedDataFile(t, "mig-parted-config-default.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	def, err := topology.ParseMIGParted(raw)
	if err != nil {
		t.Fatal(err)
	}
	data, err = def.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	again, err := topology.ParseMIGParted(data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(def.Configs, again.Configs) {
		t.Fatal("default config changed in a round trip")
	}
	if _, err := (&topology.MIGParted{Configs: map[string][]topology.MIGPartedEntry{"x": {{MIGEnabled: true}}}}).Marshal(); err == nil {
		t.Fatal("entry without devices written")
	}
}
