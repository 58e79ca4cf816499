package controlplane

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestTailLines(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"", 3, ""},
		{"a\nb\nc\n", 0, ""},
		{"a\nb\nc\n", 2, "b\nc"},
		{"a\nb\nc", 2, "b\nc"},
		{"a\nb\nc\n", 3, "a\nb\nc"},
		{"a\nb\nc\n", 50, "a\nb\nc"},
		{"only", 1, "only"},
		{"\n\nx\n", 2, "\nx"},
	} {
		if got := tailLines([]byte(tc.in), tc.n); got != tc.want {
			t.Errorf("tailLines(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}

func TestMergeFlags(t *testing.T) {
	got := mergeFlags(
		[]string{"--a=1", "--disable-admission-plugins=ServiceAccount", "--b"},
		[]string{"--disable-admission-plugins=ServiceAccount,NamespaceLifecycle", "--feature-gates=X=true", "-b=false"},
	)
	want := []string{"--a=1", "--disable-admission-plugins=ServiceAccount,NamespaceLifecycle", "--feature-gates=X=true", "-b=false"}
	if !slices.Equal(got, want) {
		t.Errorf("mergeFlags = %q, want %q", got, want)
	}
}

func TestFindRepoRoot(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "pkg", "localcluster", "controlplane", "controlplane.go")); err != nil {
		t.Errorf("RepoRoot() = %s, which does not hold this package: %v", root, err)
	}
	if _, err := findRepoRoot(t.TempDir()); err == nil {
		t.Error("findRepoRoot of a directory outside any module succeeded")
	}
}

func TestFindBinariesMissing(t *testing.T) {
	_, _, err := findBinaries(t.TempDir())
	if !errors.Is(err, ErrBinariesMissing) {
		t.Fatalf("findBinaries(empty dir) = %v, want ErrBinariesMissing", err)
	}
}

func TestPKI(t *testing.T) {
	k, err := newPKI()
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(k.servingCertPEM, k.servingKeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(k.caPEM) {
		t.Fatal("CA PEM does not parse")
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"127.0.0.1", "localhost", "kubernetes.default.svc"} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: roots}); err != nil {
			t.Errorf("serving certificate does not verify for %s: %v", name, err)
		}
	}
	if len(k.saKeyPEM) == 0 || len(k.saPubPEM) == 0 {
		t.Error("no service-account keys")
	}
}
