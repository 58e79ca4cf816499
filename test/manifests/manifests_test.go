// Package manifests checks that every file under manifests/ decodes, strictly,
// into the API types of the Kubernetes version gpuslice is built against,
// and that embedded scheduler configurations are valid.
package manifests

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	schedconfig "k8s.io/kubernetes/pkg/scheduler/apis/config"
	schedscheme "k8s.io/kubernetes/pkg/scheduler/apis/config/scheme"
	schedvalidation "k8s.io/kubernetes/pkg/scheduler/apis/config/validation"

	gpusliceconfig "github.com/gpuslice/gpuslice/pkg/apis/config"
	_ "github.com/gpuslice/gpuslice/pkg/apis/config/scheme" // registers GPUSliceArgs
	"github.com/gpuslice/gpuslice/pkg/apis/config/validation"
	gpuslicev1alpha1 "github.com/gpuslice/gpuslice/pkg/apis/gpuslice/v1alpha1"
)

func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found")
		}
		dir = parent
	}
}

func decoder(t *testing.T) runtime.Decoder {
	t.Helper()
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(apiextensionsv1.AddToScheme(scheme))
	utilruntime.Must(gpuslicev1alpha1.AddToScheme(scheme))
	return serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
}

// documents splits a YAML stream.
func documents(t *testing.T, path string) [][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := utilyaml.NewYAMLReader(bufio.NewReader(f))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) > 0 {
			docs = append(docs, doc)
		}
	}
}

func stripComments(doc []byte) []byte {
	var out [][]byte
	for _, line := range bytes.Split(doc, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
			out = append(out, line)
		}
	}
	return bytes.Join(out, []byte("\n"))
}

func TestEveryManifestDecodes(t *testing.T) {
	root := filepath.Join(repoRoot(t), "manifests")
	dec := decoder(t)
	files, objects, schedConfigs := 0, 0, 0
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !(strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
			return err
		}
		files++
		rel, _ := filepath.Rel(root, path)
		for i, doc := range documents(t, path) {
			obj, gvk, err := dec.Decode(doc, nil, nil)
			if err != nil {
				t.Errorf("%s document %d: %v", rel, i, err)
				continue
			}
			objects++
			if cm, ok := obj.(*v1.ConfigMap); ok {
				for key, value := range cm.Data {
					if strings.Contains(value, "kind: KubeSchedulerConfiguration") {
						checkSchedulerConfig(t, rel+":"+key, value)
						schedConfigs++
					}
				}
			}
			if gvk.Kind == "" {
				t.Errorf("%s document %d has no kind", rel, i)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 5 || objects < 10 || schedConfigs < 1 {
		t.Fatalf("decoded %d files, %d objects, %d scheduler configs: manifests missing?", files, objects, schedConfigs)
	}
	t.Logf("decoded %d files, %d objects, %d scheduler configs", files, objects, schedConfigs)
}

// checkSchedulerConfig decodes a KubeSchedulerConfiguration the way
// kube-scheduler does (defaults included) and validates it and our args.
func checkSchedulerConfig(t *testing.T, where, data string) {
	t.Helper()
	obj, _, err := schedscheme.Codecs.UniversalDecoder().Decode([]byte(data), nil, nil)
	if err != nil {
		t.Errorf("%s: %v", where, err)
		return
	}
	cfg, ok := obj.(*schedconfig.KubeSchedulerConfiguration)
	if !ok {
		t.Errorf("%s: decoded %T", where, obj)
		return
	}
	if err := schedvalidation.ValidateKubeSchedulerConfiguration(cfg); err != nil {
		t.Errorf("%s: %v", where, err)
	}
	found := 0
	for _, p := range cfg.Profiles {
		for _, pc := range p.PluginConfig {
			args, ok := pc.Args.(*gpusliceconfig.GPUSliceArgs)
			if !ok {
				continue
			}
			found++
			for _, strategy := range []string{gpusliceconfig.Binpack, gpusliceconfig.Spread} {
				if strings.HasSuffix(p.SchedulerName, "-"+strategy) && args.ScoringStrategy.Type != strategy {
					t.Errorf("%s profile %s scores with %q", where, p.SchedulerName, args.ScoringStrategy.Type)
				}
			}
			if err := validation.ValidateGPUSliceArgs(nil, args); err != nil {
				t.Errorf("%s profile %s: %v", where, p.SchedulerName, err)
			}
		}
	}
	if found == 0 {
		t.Errorf("%s: no GPUSlice args", where)
	}
}
