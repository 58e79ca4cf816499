package main

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// layerFiles collects a layer's entries and writes them as one tar, parent
// directories first, in a stable order.
type layerFiles struct {
	epoch   time.Time
	entries map[string]*entry
}

type entry struct {
	hdr  tar.Header
	data []byte
}

func newLayerFiles(epoch time.Time) *layerFiles {
	return &layerFiles{epoch: epoch, entries: map[string]*entry{}}
}

// dir adds a directory (and its parents, 0755 root).
func (l *layerFiles) dir(p string, mode int64, uid int) {
	p = clean(p)
	if p == "" {
		return
	}
	l.parents(p)
	if e, ok := l.entries[p]; ok && e.hdr.Typeflag == tar.TypeDir && mode == 0o755 && uid == 0 {
		return // an implicit parent already there
	}
	l.entries[p] = &entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: p + "/", Mode: mode, Uid: uid, Gid: uid, ModTime: l.epoch}}
}

func (l *layerFiles) parents(p string) {
	for d := path.Dir(p); d != "." && d != "/"; d = path.Dir(d) {
		if _, ok := l.entries[d]; !ok {
			l.entries[d] = &entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, ModTime: l.epoch}}
		}
	}
}

// file adds a regular file.
func (l *layerFiles) file(p string, mode int64, data []byte) error {
	p = clean(p)
	if e, ok := l.entries[p]; ok {
		return fmt.Errorf("%s added twice (as %c)", p, e.hdr.Typeflag)
	}
	l.parents(p)
	l.entries[p] = &entry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: p, Mode: mode, Size: int64(len(data)), ModTime: l.epoch}, data: data}
	return nil
}

// symlink adds a symbolic link.
func (l *layerFiles) symlink(p, target string) error {
	p = clean(p)
	if e, ok := l.entries[p]; ok {
		return fmt.Errorf("%s added twice (as %c)", p, e.hdr.Typeflag)
	}
	l.parents(p)
	l.entries[p] = &entry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: p, Linkname: target, Mode: 0o777, ModTime: l.epoch}}
	return nil
}

// clean makes p relative to the root ("usr/lib", not "./usr/lib/").
func clean(p string) string {
	p = strings.TrimPrefix(path.Clean("/"+p), "/")
	return p
}

// layer writes the entries, sorted, as an OCI layer.
func (l *layerFiles) layer() (v1.Layer, error) {
	names := make([]string, 0, len(l.entries))
	for n := range l.entries {
		names = append(names, n)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		e := l.entries[n]
		h := e.hdr
		h.Format = tar.FormatPAX
		if err := tw.WriteHeader(&h); err != nil {
			return nil, fmt.Errorf("%s: %w", n, err)
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, fmt.Errorf("%s: %w", n, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	}, tarball.WithMediaType(types.OCILayer))
}

// baseLayer is what both images share: the users (root and nonroot), name
// resolution from files then DNS, and a world-writable /tmp.
func baseLayer(epoch time.Time) (v1.Layer, error) {
	l := newLayerFiles(epoch)
	files := map[string]string{
		"etc/passwd":        fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", nonroot, nonroot),
		"etc/group":         fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", nonroot),
		"etc/nsswitch.conf": "hosts: files dns\n",
	}
	for p, s := range files {
		if err := l.file(p, 0o644, []byte(s)); err != nil {
			return nil, err
		}
	}
	l.dir("tmp", 0o1777, 0)
	l.dir("root", 0o700, 0)
	l.dir("home/nonroot", 0o700, nonroot)
	l.dir("usr/local/bin", 0o755, 0)
	return l.layer()
}

// binaryLayer holds one executable at dest.
func binaryLayer(src, dest string, epoch time.Time) (v1.Layer, error) {
	data, err := os.ReadFile(src)
	if err != nil {
		return nil, err
	}
	l := newLayerFiles(epoch)
	if err := l.file(dest, 0o755, data); err != nil {
		return nil, err
	}
	return l.layer()
}

// debSkip are the parts of the packages an image needs not: documentation,
// lintian overrides and iconv's conversion modules (nothing here converts
// character sets).
var debSkip = []string{"usr/share/doc", "usr/share/lintian", "usr/share/man", "usr/share/info", "usr/lib/x86_64-linux-gnu/gconv", "usr/lib/aarch64-linux-gnu/gconv"}

// debLayer unpacks Debian packages (their data archive, through dpkg-deb)
// into one layer, and returns "package=version" for each.
func debLayer(debs []string, epoch time.Time) (v1.Layer, []string, error) {
	l := newLayerFiles(epoch)
	var pkgs []string
	for _, deb := range debs {
		info, err := exec.Command("dpkg-deb", "--showformat=${Package}=${Version}", "--show", deb).Output()
		if err != nil {
			return nil, nil, fmt.Errorf("dpkg-deb --show %s: %w", deb, exitErr(err))
		}
		pkgs = append(pkgs, strings.TrimSpace(string(info)))
		data, err := exec.Command("dpkg-deb", "--fsys-tarfile", deb).Output()
		if err != nil {
			return nil, nil, fmt.Errorf("dpkg-deb --fsys-tarfile %s: %w", deb, exitErr(err))
		}
		if err := l.addTar(bytes.NewReader(data)); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", deb, err)
		}
	}
	layer, err := l.layer()
	return layer, pkgs, err
}

func exitErr(err error) error {
	if ee, ok := err.(*exec.ExitError); ok && len(ee.Stderr) > 0 {
		return fmt.Errorf("%w: %s", err, strings.TrimSpace(string(ee.Stderr)))
	}
	return err
}

// addTar adds a package's files (directories, regular files, symbolic
// links), all owned by root.
func (l *layerFiles) addTar(r io.Reader) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		p := clean(h.Name)
		if p == "" || skipped(p) {
			continue
		}
		switch h.Typeflag {
		case tar.TypeDir:
			l.dir(p, h.Mode&0o7777, 0)
		case tar.TypeReg:
			data, err := io.ReadAll(tr)
			if err != nil {
				return err
			}
			if err := l.file(p, h.Mode&0o7777, data); err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := l.symlink(p, h.Linkname); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: unsupported entry type %c", p, h.Typeflag)
		}
	}
}

func skipped(p string) bool {
	for _, s := range debSkip {
		if p == s || strings.HasPrefix(p, s+"/") {
			return true
		}
	}
	return false
}
