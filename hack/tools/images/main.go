// Command images builds gpuslice's container images without a container
// engine, with go-containerregistry, and writes each as an image archive
// (the format `docker save` writes: `docker load`, `kind load
// image-archive` and `crane push` take it) named after the image under
// -out:
//
//   - gpuslice-scheduler and gpuslice-repartitioner: the static binaries on
//     a minimal base (passwd, group, nsswitch.conf, /tmp), running as
//     nonroot (65532);
//   - gpuslice-exporter: the exporter binary (cgo: go-nvml dlopens
//     libnvidia-ml, which the NVIDIA container runtime mounts in) on the
//     same base plus the C library from Debian packages (-deb: libc6,
//     libgcc-s1, unpacked with dpkg-deb), nonroot by default (the
//     DaemonSet runs it as root for the kubelet's socket).
//
// Layers and configs are reproducible: files sorted, owned by root unless
// stated, timestamps at -epoch.
//
// It is a module of its own (hack/tools/images) so that
// go-containerregistry does not enter the product's go.mod. make images
// runs it; images_test.go checks what it wrote.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// nonroot is the user the images run as by default (distroless' nonroot).
const nonroot = 65532

type options struct {
	out, version, repository, arch string
	scheduler, exporter            string
	repartitioner                  string
	debs                           []string
	epoch                          time.Time
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "images:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	var o options
	var debs listFlag
	var epoch int64
	fs := flag.NewFlagSet("images", flag.ContinueOnError)
	fs.StringVar(&o.out, "out", "bin/images", "directory for the image archives")
	fs.StringVar(&o.version, "version", "", "image tag, e.g. v0.1.0 (required)")
	fs.StringVar(&o.repository, "repository", "gpuslice", "repository prefix of the image names")
	fs.StringVar(&o.arch, "arch", "amd64", "architecture of the binaries")
	fs.StringVar(&o.scheduler, "scheduler", "", "static gpuslice-scheduler binary (required)")
	fs.StringVar(&o.exporter, "exporter", "", "gpuslice-exporter binary (required)")
	fs.StringVar(&o.repartitioner, "repartitioner", "", "static gpuslice-repartitioner binary (required)")
	fs.Var(&debs, "deb", "Debian package whose files form the exporter's C library layer (repeat; at least libc6)")
	fs.Int64Var(&epoch, "epoch", 0, "Unix time of every file and of the images' creation (SOURCE_DATE_EPOCH)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	o.debs, o.epoch = debs, time.Unix(epoch, 0).UTC()
	switch {
	case o.version == "":
		return fmt.Errorf("-version is required")
	case o.scheduler == "" || o.exporter == "" || o.repartitioner == "":
		return fmt.Errorf("-scheduler, -exporter and -repartitioner are required")
	case len(o.debs) == 0:
		return fmt.Errorf("-deb is required (libc6 for the exporter)")
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	start := time.Now()
	base, err := baseLayer(o.epoch)
	if err != nil {
		return err
	}
	for _, s := range []struct{ image, binary, description string }{
		{"gpuslice-scheduler", o.scheduler, "kube-scheduler with the GPUSlice plugin"},
		{"gpuslice-repartitioner", o.repartitioner, "gpuslice's MIG repartition controller (through NVIDIA's MIG manager)"},
	} {
		bin, err := binaryLayer(s.binary, "/usr/local/bin/"+s.image, o.epoch)
		if err != nil {
			return err
		}
		if err := write(o, s.image, s.description, nil, []v1.Layer{base, bin}); err != nil {
			return err
		}
	}
	libc, pkgs, err := debLayer(o.debs, o.epoch)
	if err != nil {
		return err
	}
	exp, err := binaryLayer(o.exporter, "/usr/local/bin/gpuslice-exporter", o.epoch)
	if err != nil {
		return err
	}
	labels := map[string]string{"io.gpuslice.debian-packages": strings.Join(pkgs, " ")}
	if err := write(o, "gpuslice-exporter", "gpuslice's per-node GPU topology exporter", labels,
		[]v1.Layer{base, libc, exp}); err != nil {
		return err
	}
	fmt.Printf("images: built in %s\n", time.Since(start).Round(time.Millisecond))
	return nil
}

// write assembles an image from layers and writes its archive to
// <out>/<image>.tar, tagged <repository>/<image>:<version>.
func write(o options, image, description string, labels map[string]string, layers []v1.Layer) error {
	tag, err := name.NewTag(o.repository + "/" + image + ":" + o.version)
	if err != nil {
		return err
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err = mutate.AppendLayers(img, layers...)
	if err != nil {
		return err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", o.arch
	cf.Created = v1.Time{Time: o.epoch}
	all := map[string]string{
		"org.opencontainers.image.title":       image,
		"org.opencontainers.image.description": description,
		"org.opencontainers.image.version":     o.version,
		"org.opencontainers.image.source":      "https://github.com/gpuslice/gpuslice",
		"org.opencontainers.image.licenses":    "Apache-2.0",
	}
	for k, v := range labels {
		all[k] = v
	}
	cf.Config = v1.Config{
		Entrypoint: []string{"/usr/local/bin/" + image},
		User:       fmt.Sprintf("%d:%d", nonroot, nonroot),
		WorkingDir: "/",
		Env:        []string{"PATH=/usr/local/bin:/usr/bin:/bin"},
		Labels:     all,
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return err
	}
	path := filepath.Join(o.out, image+".tar")
	tmp := path + ".tmp"
	if err := tarball.WriteToFile(tmp, tag, img); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	fmt.Printf("images: %s -> %s (%.1f MiB, %s)\n", tag, path, float64(st.Size())/(1<<20), digest)
	return nil
}
