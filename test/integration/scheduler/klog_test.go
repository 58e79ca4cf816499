package scheduler

import (
	"flag"
	"os"
	"testing"

	"k8s.io/klog/v2"
)

func TestMain(m *testing.M) {
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	if v := os.Getenv("GPUSLICE_TEST_V"); v != "" {
		_ = fs.Set("v", v)
	}
	os.Exit(m.Run())
}
