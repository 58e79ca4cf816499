package controlplane

import (
	"context"
	"errors"
	"os"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestStartMissingBinaries(t *testing.T) {
	_, err := Start(context.Background(), t.TempDir(), Options{BinDir: t.TempDir()})
	if !errors.Is(err, ErrBinariesMissing) {
		t.Fatalf("err = %v, want ErrBinariesMissing", err)
	}
}

// TestStart starts a control plane the way a program does
// (no testing.TB) and checks that Stop leaves neither processes nor, for a
// directory it created itself, files behind.
func TestStart(t *testing.T) {
	if _, _, err := findBinaries(""); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cp, err := Start(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			cp.Stop()
		}
	}()

	if _, err := cp.Client().CoreV1().Namespaces().Get(ctx, metav1.NamespaceDefault, metav1.GetOptions{}); err != nil {
		t.Errorf("get namespace default: %v", err)
	}
	if _, err := os.Stat(cp.KubeconfigPath()); err != nil {
		t.Errorf("kubeconfig: %v", err)
	}
	pids := []int{cp.etcd.cmd.Process.Pid, cp.apiserver.cmd.Process.Pid}

	cp.Stop()
	cp.Stop() // idempotent
	stopped = true
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("process %d still exists after Stop (kill 0: %v)", pid, err)
		}
	}
	if _, err := os.Stat(cp.Dir()); !os.IsNotExist(err) {
		t.Errorf("Stop left the directory it created: %s (%v)", cp.Dir(), err)
	}
	if msg := cp.UnexpectedExits(); msg != "" {
		t.Errorf("after Stop: %s", msg)
	}
}
