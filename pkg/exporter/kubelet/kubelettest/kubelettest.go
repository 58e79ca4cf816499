// Package kubelettest serves the kubelet's PodResources API on a unix
// socket with the real gRPC server, for tests of its clients. Only tests
// import it: the exporter's binary links no gRPC.
package kubelettest

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/grpc"
	podresourcesv1 "k8s.io/kubelet/pkg/apis/podresources/v1"
)

// SocketPath is a short socket path in a fresh directory (unix socket paths
// are limited to 108 bytes).
func SocketPath(t testing.TB) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "kubelet.sock")
	if len(p) < 100 {
		return p
	}
	dir, err := os.MkdirTemp("", "kubelet")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "kubelet.sock")
}

// Serve serves srv on a fresh socket until the test ends and returns the
// socket's path.
func Serve(t testing.TB, srv podresourcesv1.PodResourcesListerServer) string {
	t.Helper()
	sock := SocketPath(t)
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	podresourcesv1.RegisterPodResourcesListerServer(g, srv)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = g.Serve(lis)
	}()
	t.Cleanup(func() {
		g.Stop()
		<-done
	})
	return sock
}
