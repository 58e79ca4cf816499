// Package framework ties a real control plane (pkg/localcluster/controlplane:
// etcd and kube-apiserver from bin/) to a test: it starts in the test's
// temporary directory and stops when the test ends.
package framework

import (
	"errors"
	"os"
	"testing"
	"time"

	"github.com/gpuslice/gpuslice/pkg/localcluster/controlplane"
)

const logLines = 50 // log lines shown on failure

// StartControlPlane starts a control plane in a temporary directory of t and
// stops it when t ends (t.Cleanup), also when the test fails or panics; on
// failure it logs the last lines of the etcd and kube-apiserver logs.
//
// When the binaries are missing it skips t, or fails t where the environment
// variable CI is "true", telling to run `hack/control-plane.sh build`.
func StartControlPlane(t testing.TB, opts controlplane.Options) *controlplane.ControlPlane {
	t.Helper()
	began := time.Now()
	cp, err := controlplane.Start(t.Context(), t.TempDir(), opts)
	if err != nil {
		if errors.Is(err, controlplane.ErrBinariesMissing) && os.Getenv("CI") != "true" {
			t.Skip(err.Error())
		}
		t.Fatalf("starting the control plane: %v", err)
	}
	if w := cp.Warning(); w != "" {
		t.Log("warning: " + w)
	}
	t.Cleanup(func() {
		if msg := cp.UnexpectedExits(); msg != "" {
			t.Errorf("%s", msg)
		}
		if t.Failed() {
			t.Log(cp.LogTails(logLines))
		}
		cp.Stop()
	})
	t.Logf("control plane up in %v: %s (etcd %s, logs in %s)",
		time.Since(began).Round(time.Millisecond), cp.Host(), cp.EtcdURL(), cp.Dir())
	return cp
}
