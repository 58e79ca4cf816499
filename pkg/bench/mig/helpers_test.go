package mig

import (
	"os"
	"path/filepath"
	"testing"
)

// schedulerConfig is the shipped scheduler ConfigMap, relative to this
// package's directory.
const schedulerConfig = "../../../manifests/scheduler/config.yaml"

// sharedDataFile finds shared/data/<name> next to the repository by
// walking up from the package directory; the test is skipped when the file
// is absent.
func sharedDataFile(t *testing.T, name string) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatalf("getwd: %v", err)
	}
	for dir := wd; ; {
		p := filepath.Join(dir, "shared", "data", name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	t.Skipf("shared/data/%s not found above %s", name, wd)
	return ""
}
