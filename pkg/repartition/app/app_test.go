package app

import (
	"strings"
	"testing"
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
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--mig-parted-configmap=nons"}, "want namespace/name"},
		{[]string{"--node-selector="}, "must select"},
		{[]string{"--node-selector=a in (b"}, "--node-selector"},
		{[]string{"--max-nodes-in-flight=0"}, "at least 1"},
		{[]string{"--sync-interval=0s"}, "sync-interval"},
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
