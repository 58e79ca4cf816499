package main

import (
	"archive/tar"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// TestImages checks the archives make images wrote (GPUSLICE_IMAGES, the
// directory; make test-images sets it): each carries the tag the manifests
// deploy, its layers unpack, and its entrypoint runs from the image's own
// filesystem (in a chroot, as its user) and prints its version. A missing
// file, library or loader in an image fails here.
func TestImages(t *testing.T) {
	dir := os.Getenv("GPUSLICE_IMAGES")
	if dir == "" {
		t.Skip("GPUSLICE_IMAGES is not set: run make test-images")
	}
	refs := manifestImages(t)
	images := []struct {
		image   string
		static  bool
		version *regexp.Regexp
	}{
		// kube-scheduler's --version: "Kubernetes <version>".
		{image: "gpuslice-scheduler", static: true, version: regexp.MustCompile(`^Kubernetes v\S+\n$`)},
		{image: "gpuslice-exporter", version: regexp.MustCompile(`^gpuslice-exporter (\S+)\n$`)},
		{image: "gpuslice-repartitioner", static: true, version: regexp.MustCompile(`^gpuslice-repartitioner (\S+)\n$`)},
	}
	for image := range refs {
		found := false
		for _, tc := range images {
			found = found || tc.image == image
		}
		if !found {
			t.Errorf("manifests deploy %s, which make images does not build", refs[image])
		}
	}
	for _, tc := range images {
		t.Run(tc.image, func(t *testing.T) {
			path := filepath.Join(dir, tc.image+".tar")
			m, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(path) })
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			if len(m) != 1 {
				t.Fatalf("%s holds %d images, want 1", path, len(m))
			}
			ref, ok := refs[tc.image]
			if !ok {
				t.Fatalf("no manifest deploys %s", tc.image)
			}
			if len(m[0].RepoTags) != 1 || m[0].RepoTags[0] != ref {
				t.Fatalf("%s is tagged %q; the manifests deploy %q", path, m[0].RepoTags, ref)
			}
			img, err := tarball.ImageFromPath(path, nil)
			if err != nil {
				t.Fatal(err)
			}
			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if cf.OS != "linux" || len(cf.Config.Entrypoint) != 1 {
				t.Fatalf("config: os %q, entrypoint %q", cf.OS, cf.Config.Entrypoint)
			}
			uid, gid := user(t, cf.Config.User)
			if uid == 0 {
				t.Errorf("%s runs as root by default (user %q)", tc.image, cf.Config.User)
			}
			root := t.TempDir()
			rc := mutate.Extract(img)
			defer rc.Close()
			if err := unpack(rc, root); err != nil {
				t.Fatalf("unpacking %s: %v", path, err)
			}
			entry := cf.Config.Entrypoint[0]
			bin := filepath.Join(root, entry)
			interp := interpreter(t, bin)
			if tc.static != (interp == "") {
				t.Fatalf("%s: interpreter %q, static %v", entry, interp, tc.static)
			}
			out, how := runInImage(t, root, entry, interp, uid, gid)
			got := tc.version.FindStringSubmatch(out)
			if got == nil {
				t.Fatalf("%s --version (%s) printed %q, want %s", entry, how, out, tc.version)
			}
			if len(got) > 1 && got[1] != cf.Config.Labels["org.opencontainers.image.version"] {
				t.Errorf("%s --version says %s, the image's label %s", entry, got[1], cf.Config.Labels["org.opencontainers.image.version"])
			}
			t.Logf("%s: %s --version (%s): %s", ref, entry, how, strings.TrimSpace(out))
		})
	}
}

// manifestImages returns the image references of gpuslice's own images in
// manifests/, by image name.
func manifestImages(t *testing.T) map[string]string {
	t.Helper()
	re := regexp.MustCompile(`(?m)^\s*image:\s*"?(\S*/(gpuslice-[a-z]+):[^"\s]+)"?\s*$`)
	out := map[string]string{}
	root := filepath.Join("..", "..", "..", "manifests")
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".yaml") {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, m := range re.FindAllStringSubmatch(string(b), -1) {
			if prev, ok := out[m[2]]; ok && prev != m[1] {
				return fmt.Errorf("manifests deploy %s as %s and %s", m[2], prev, m[1])
			}
			out[m[2]] = m[1]
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// user parses a config's "uid[:gid]" (numeric: the images have no tools to
// resolve names).
func user(t *testing.T, s string) (uint32, uint32) {
	t.Helper()
	u, g, _ := strings.Cut(s, ":")
	uid, err := strconv.ParseUint(u, 10, 32)
	if err != nil {
		t.Fatalf("user %q: %v", s, err)
	}
	gid := uid
	if g != "" {
		if gid, err = strconv.ParseUint(g, 10, 32); err != nil {
			t.Fatalf("user %q: %v", s, err)
		}
	}
	return uint32(uid), uint32(gid)
}

// unpack writes a flattened image filesystem into root.
func unpack(r io.Reader, root string) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		p := filepath.Join(root, filepath.Clean("/"+h.Name))
		if !strings.HasPrefix(p, root+string(filepath.Separator)) {
			continue // the root itself
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
			if err := os.Chmod(p, os.FileMode(h.Mode&0o777)|modeBits(h.Mode)); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode&0o777))
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			if err := os.Symlink(h.Linkname, p); err != nil {
				return err
			}
		case tar.TypeLink:
			if err := os.Link(filepath.Join(root, filepath.Clean("/"+h.Linkname)), p); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: unexpected entry type %c", h.Name, h.Typeflag)
		}
		if err := os.Lchown(p, h.Uid, h.Gid); err != nil && !errors.Is(err, syscall.EPERM) {
			return err
		}
	}
}

func modeBits(m int64) os.FileMode {
	var out os.FileMode
	if m&0o1000 != 0 {
		out |= os.ModeSticky
	}
	return out
}

// interpreter is the ELF program interpreter of bin ("" when static).
func interpreter(t *testing.T, bin string) string {
	t.Helper()
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatalf("%s: %v", bin, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b, err := io.ReadAll(p.Open())
			if err != nil {
				t.Fatal(err)
			}
			return strings.TrimRight(string(b), "\x00")
		}
	}
	return ""
}

// runInImage runs entry --version with root as its filesystem: in a chroot
// as uid:gid where this process may (root), otherwise through the image's
// own dynamic loader and libraries (a static binary needs none).
func runInImage(t *testing.T, root, entry, interp string, uid, gid uint32) (string, string) {
	t.Helper()
	cmd := exec.Command(entry, "--version")
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root, Credential: &syscall.Credential{Uid: uid, Gid: gid}}
	out, err := cmd.CombinedOutput()
	if err == nil {
		return string(out), fmt.Sprintf("chroot, uid %d", uid)
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		t.Fatalf("%s --version in the image's chroot: %v\n%s", entry, err, out)
	}
	if !errors.Is(err, syscall.EPERM) {
		t.Fatalf("%s --version in a chroot: %v", entry, err)
	}
	t.Logf("chroot not permitted (%v): running through the image's loader", err)
	args := []string{filepath.Join(root, entry), "--version"}
	how := "image loader"
	if interp != "" {
		loader := resolveIn(t, root, interp)
		libs := []string{}
		for _, d := range []string{"lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib/aarch64-linux-gnu", "usr/lib/aarch64-linux-gnu", "lib", "usr/lib"} {
			libs = append(libs, filepath.Join(root, d))
		}
		args = append([]string{loader, "--inhibit-cache", "--library-path", strings.Join(libs, ":")}, args...)
	} else {
		how = "static, from the image"
	}
	cmd = exec.Command(args[0], args[1:]...)
	cmd.Env = []string{}
	out, err = cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %v\n%s", args, err, out)
	}
	return string(out), how
}

// resolveIn follows p's symbolic links inside root (absolute targets are
// relative to root, not to this machine).
func resolveIn(t *testing.T, root, p string) string {
	t.Helper()
	for range 16 {
		full := filepath.Join(root, filepath.Clean("/"+p))
		target, err := os.Readlink(full)
		if err != nil {
			if _, serr := os.Stat(full); serr != nil {
				t.Fatalf("%s not in the image: %v", p, serr)
			}
			return full
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(p), target)
		}
		p = target
	}
	t.Fatalf("%s: too many links", p)
	return ""
}
