package app

import (
	"strings"
	"testing"
	"time"
)

func TestOptions(t *testing.T) {
	var f Flags
	if err := NewFlagSet(&f).Parse(nil); err != nil {
		t.Fatal(err)
	}
	o, err := f.Options()
	if err != nil {
		t.Fatal(err)
	}
	if o.ConfigMapNamespace != "gpu-operator" || o.ConfigMapName != "custom-mig-parted-config" || o.Nodes.String() != "gpuslice.io/repartition=enabled" || len(o.SchedulerNames) != 2 {
		t.Fatalf("defaults: %+v", o)
	}
	// Drains are off unless asked for.
	if p := o.Planner; p.MaxDrainingGPUs != 0 || p.DrainAfter != 5*time.Minute || p.MaxDrainTime != time.Hour || p.DrainMinGain != 0.1 {
		t.Fatalf("drain defaults: %+v", p)
	}
	f = Flags{}
	if err := NewFlagSet(&f).Parse([]string{"--max-draining-gpus=2", "--drain-after=2m", "--max-drain-time=30m", "--drain-min-gain=0.25"}); err != nil {
		t.Fatal(err)
	}
	if o, err = f.Options(); err != nil {
		t.Fatal(err)
	}
	if p := o.Planner; p.MaxDrainingGPUs != 2 || p.DrainAfter != 2*time.Minute || p.MaxDrainTime != 30*time.Minute || p.DrainMinGain != 0.25 {
		t.Fatalf("drain flags: %+v", p)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--mig-parted-configmap=nons"}, "want namespace/name"},
		{[]string{"--node-selector="}, "must select"},
		{[]string{"--node-selector=a in (b"}, "--node-selector"},
		{[]string{"--max-nodes-in-flight=0"}, "at least 1"},
		{[]string{"--sync-interval=0s"}, "sync-interval"},
		{[]string{"--max-draining-gpus=-1"}, "max draining GPUs must not be negative"},
		{[]string{"--max-draining-gpus=1", "--max-drain-time=0s"}, "drains need a max drain time"},
		{[]string{"--drain-after=-1s"}, "must not be negative"},
		{[]string{"--drain-min-gain=-0.5"}, "drain min gain must not be negative"},
	} {
		var f Flags
		if err := NewFlagSet(&f).Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		if _, err := f.Options(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err %v, want %q", tc.args, err, tc.want)
		}
	}
}

func TestVersionFlag(t *testing.T) {
	var f Flags
	if err := NewFlagSet(&f).Parse([]string{"--version"}); err != nil || !f.Version {
		t.Fatalf("--version: %v, %+v", err, f)
	}
}
