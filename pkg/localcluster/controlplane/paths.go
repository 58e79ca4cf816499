package controlplane

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Names of the control-plane binaries that hack/control-plane.sh builds into
// the repository's bin/.
const (
	etcdBinary      = "etcd"
	apiserverBinary = "kube-apiserver"
	kubectlBinary   = "kubectl"

	// stampFile holds the sha256 of go.sum the binaries were built for.
	stampFile = ".control-plane.stamp"
)

// BuildHint is the command that builds the control-plane binaries.
const BuildHint = "hack/control-plane.sh build"

// ErrBinariesMissing is wrapped by the error Start returns
// when bin/ lacks etcd, kube-apiserver or kubectl.
var ErrBinariesMissing = errors.New("control-plane binaries missing")

// RepoRoot returns the repository root: the nearest directory at or above
// the working directory that holds a go.mod.
func RepoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	return findRepoRoot(wd)
}

func findRepoRoot(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for d := dir; ; {
		if st, err := os.Stat(filepath.Join(d, "go.mod")); err == nil && !st.IsDir() {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("no go.mod found at or above %s", dir)
		}
		d = parent
	}
}

// binaries are the paths of the control-plane binaries.
type binaries struct {
	dir, etcd, apiserver, kubectl string
}

// findBinaries locates the control-plane binaries. binDir overrides the
// repository's bin/ when set. The error wraps ErrBinariesMissing when one of
// them is absent. stale is a warning (empty when none): the binaries in the
// repository's bin/ were built for another go.sum.
func findBinaries(binDir string) (b binaries, stale string, err error) {
	root := ""
	if binDir == "" {
		root, err = RepoRoot()
		if err != nil {
			return b, "", fmt.Errorf("locating the repository root: %w", err)
		}
		binDir = filepath.Join(root, "bin")
	}
	b = binaries{
		dir:       binDir,
		etcd:      filepath.Join(binDir, etcdBinary),
		apiserver: filepath.Join(binDir, apiserverBinary),
		kubectl:   filepath.Join(binDir, kubectlBinary),
	}
	var missing []string
	for _, p := range []string{b.etcd, b.apiserver, b.kubectl} {
		st, err := os.Stat(p)
		if err != nil || st.IsDir() || st.Mode().Perm()&0o111 == 0 {
			missing = append(missing, filepath.Base(p))
		}
	}
	if len(missing) > 0 {
		return b, "", fmt.Errorf("%w: %s not found in %s: run `%s` (make test does)",
			ErrBinariesMissing, strings.Join(missing, ", "), binDir, BuildHint)
	}
	if root != "" {
		stale = staleWarning(root, binDir)
	}
	return b, stale, nil
}

// staleWarning compares bin/.control-plane.stamp with go.sum.
func staleWarning(root, binDir string) string {
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		return ""
	}
	h := sha256.Sum256(sum)
	stamp, err := os.ReadFile(filepath.Join(binDir, stampFile))
	if err == nil && strings.TrimSpace(string(stamp)) == hex.EncodeToString(h[:]) {
		return ""
	}
	return fmt.Sprintf("the control-plane binaries in %s were not built for the current go.sum: run `%s` to rebuild them", binDir, BuildHint)
}
