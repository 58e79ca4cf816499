// Package chart tests the Helm chart charts/gpuslice with Helm's Go SDK,
// run from the hack/tools/chart module (Helm stays out of the product's
// go.mod): lint; every rendered object decoded strictly; the rendered
// scheduler configuration accepted by gpuslice-scheduler's config scheme;
// the default rendering identical to manifests/; install and upgrade into a
// real kube-apiserver; and the scheduler, run in-process with the chart's
// rendered configuration, schedules a GPU pod.
package chart

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	schedconfig "k8s.io/kubernetes/pkg/scheduler/apis/config"
	schedscheme "k8s.io/kubernetes/pkg/scheduler/apis/config/scheme"
	schedvalidation "k8s.io/kubernetes/pkg/scheduler/apis/config/validation"
	"sigs.k8s.io/yaml"

	gpusliceconfig "github.com/gpuslice/gpuslice/pkg/apis/config"
	_ "github.com/gpuslice/gpuslice/pkg/apis/config/scheme" // registers GPUSliceArgs
	"github.com/gpuslice/gpuslice/pkg/apis/config/validation"
	gpusliceapi "github.com/gpuslice/gpuslice/pkg/apis/gpuslice/v1alpha1"
	versioned "github.com/gpuslice/gpuslice/pkg/generated/clientset/versioned"
	"github.com/gpuslice/gpuslice/pkg/localcluster"
	"github.com/gpuslice/gpuslice/pkg/localcluster/controlplane"
	"github.com/gpuslice/gpuslice/pkg/topology"
	"github.com/gpuslice/gpuslice/pkg/topology/fixtures"
	"github.com/gpuslice/gpuslice/test/framework"
)

const chartDir = "../../charts/gpuslice"

var tool string // the hack/tools/chart binary, built by TestMain

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gpuslice-chart-tool-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	tool = filepath.Join(dir, "chart")
	build := exec.Command(goBinary(), "build", "-o", tool, ".")
	build.Dir = "../../hack/tools/chart"
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building hack/tools/chart: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func goBinary() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// helm runs the tool; values are YAML documents written to files.
func helm(t *testing.T, args []string, values ...string) (string, error) {
	t.Helper()
	for i, v := range values {
		f := filepath.Join(t.TempDir(), fmt.Sprintf("values-%d.yaml", i))
		if err := os.WriteFile(f, []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, "-f", f)
	}
	cmd := exec.Command(tool, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("%v: %s", err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

func render(t *testing.T, values ...string) [][]byte {
	t.Helper()
	out, err := helm(t, []string{"template", chartDir}, values...)
	if err != nil {
		t.Fatalf("helm template: %v", err)
	}
	return split(t, []byte(out))
}

func split(t *testing.T, stream []byte) [][]byte {
	t.Helper()
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(stream)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := yaml.Unmarshal(doc, &m); err != nil {
			t.Fatalf("%v\n%s", err, doc)
		}
		if len(m) > 0 {
			docs = append(docs, doc)
		}
	}
}

// allOn enables every optional part.
const allOn = `
metrics:
  podMonitor:
    enabled: true
    schedulerToken: {secretName: prometheus-token}
dashboard:
  configMap: {enabled: true}
exporter:
  devicePluginConfig: {existingConfigMap: gpu-operator-device-plugin-config}
`

func TestLint(t *testing.T) {
	for name, values := range map[string][]string{"defaults": nil, "everything on": {allOn}} {
		if out, err := helm(t, []string{"lint", chartDir}, values...); err != nil {
			t.Errorf("%s: %v\n%s", name, err, out)
		}
	}
}

func decoder() kruntime.Decoder {
	scheme := kruntime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(apiextensionsv1.AddToScheme(scheme))
	utilruntime.Must(gpusliceapi.AddToScheme(scheme))
	return serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
}

// TestRenderedObjectsDecodeStrictly: every object of every rendering is a
// valid object of its kind (unknown fields fail), and the scheduler's
// configuration is one gpuslice-scheduler accepts.
func TestRenderedObjectsDecodeStrictly(t *testing.T) {
	dec := decoder()
	for name, values := range map[string][]string{"defaults": nil, "everything on": {allOn}} {
		kinds := map[string]int{}
		for _, doc := range render(t, values...) {
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal(doc, &tm); err != nil {
				t.Fatal(err)
			}
			kinds[tm.Kind]++
			if tm.APIVersion == "monitoring.coreos.com/v1" {
				continue // the Prometheus Operator's kind; not in our scheme
			}
			obj, _, err := dec.Decode(doc, nil, nil)
			if err != nil {
				t.Errorf("%s: %v\n%s", name, err, doc)
				continue
			}
			if cm, ok := obj.(*corev1.ConfigMap); ok && cm.Name == "gpuslice-scheduler-config" {
				checkSchedulerConfig(t, name, cm.Data["config.yaml"], []string{"gpuslice-binpack", "gpuslice-fragmentation-aware", "gpuslice-spread"})
			}
		}
		want := map[string]int{"CustomResourceDefinition": 1, "Deployment": 1, "DaemonSet": 1, "ValidatingAdmissionPolicy": 1}
		if name == "everything on" {
			want["PodMonitor"] = 1
		}
		for k, n := range want {
			if kinds[k] != n {
				t.Errorf("%s: %d %s, want %d (rendered %v)", name, kinds[k], k, n, kinds)
			}
		}
	}
}

// checkSchedulerConfig decodes a KubeSchedulerConfiguration as
// kube-scheduler does (defaults included), validates it and GPUSlice's args,
// and checks its profiles.
func checkSchedulerConfig(t *testing.T, where, data string, profiles []string) *schedconfig.KubeSchedulerConfiguration {
	t.Helper()
	obj, _, err := schedscheme.Codecs.UniversalDecoder().Decode([]byte(data), nil, nil)
	if err != nil {
		t.Fatalf("%s: scheduler config: %v\n%s", where, err, data)
	}
	cfg, ok := obj.(*schedconfig.KubeSchedulerConfiguration)
	if !ok {
		t.Fatalf("%s: decoded %T", where, obj)
	}
	if err := schedvalidation.ValidateKubeSchedulerConfiguration(cfg); err != nil {
		t.Errorf("%s: %v", where, err)
	}
	var got []string
	for _, p := range cfg.Profiles {
		got = append(got, p.SchedulerName)
		found := false
		for _, pc := range p.PluginConfig {
			if args, ok := pc.Args.(*gpusliceconfig.GPUSliceArgs); ok {
				found = true
				if err := validation.ValidateGPUSliceArgs(nil, args); err != nil {
					t.Errorf("%s profile %s: %v", where, p.SchedulerName, err)
				}
			}
		}
		if !found {
			t.Errorf("%s profile %s: no GPUSlice args", where, p.SchedulerName)
		}
	}
	if !reflect.DeepEqual(got, profiles) {
		t.Errorf("%s: profiles %v, want %v", where, got, profiles)
	}
	return cfg
}

// TestValuesShapeTheSchedulerConfig: profiles on and off, scoring weights,
// timeouts reach the configuration; no profile at all is refused.
func TestValuesShapeTheSchedulerConfig(t *testing.T) {
	docs := render(t, `
scheduler:
  heartbeatTimeout: 1m
  profiles:
    binpack: {gpuWeight: 5, nodeWeight: 3}
    fragmentationAware: {enabled: false}
`)
	var cfg *schedconfig.KubeSchedulerConfiguration
	dec := decoder()
	for _, doc := range docs {
		obj, _, err := dec.Decode(doc, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if cm, ok := obj.(*corev1.ConfigMap); ok && cm.Name == "gpuslice-scheduler-config" {
			cfg = checkSchedulerConfig(t, "custom", cm.Data["config.yaml"], []string{"gpuslice-binpack", "gpuslice-spread"})
		}
	}
	if cfg == nil {
		t.Fatal("no scheduler config rendered")
	}
	for _, pc := range cfg.Profiles[0].PluginConfig {
		if args, ok := pc.Args.(*gpusliceconfig.GPUSliceArgs); ok {
			if args.ScoringStrategy.GPUWeight != 5 || args.ScoringStrategy.NodeWeight != 3 || args.HeartbeatTimeout.Duration != time.Minute ||
				args.LeaseNamespace != "gpuslice-system" {
				t.Errorf("binpack args %+v", args)
			}
		}
	}
	// taintUnusableNodes, one setting for the process, lands in the first
	// enabled profile.
	for _, doc := range render(t, "scheduler:\n  taintUnusableNodes: true\n  profiles:\n    binpack: {enabled: false}\n") {
		obj, _, err := dec.Decode(doc, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		cm, ok := obj.(*corev1.ConfigMap)
		if !ok || cm.Name != "gpuslice-scheduler-config" {
			continue
		}
		c := checkSchedulerConfig(t, "taints", cm.Data["config.yaml"], []string{"gpuslice-fragmentation-aware", "gpuslice-spread"})
		var taints []bool
		for _, p := range c.Profiles {
			for _, pc := range p.PluginConfig {
				if args, ok := pc.Args.(*gpusliceconfig.GPUSliceArgs); ok {
					taints = append(taints, args.TaintUnusableNodes)
				}
			}
		}
		if !reflect.DeepEqual(taints, []bool{true, false}) {
			t.Errorf("taintUnusableNodes per profile: %v, want [true false]", taints)
		}
	}
	_, err := helm(t, []string{"template", chartDir}, `
scheduler:
  profiles:
    binpack: {enabled: false}
    fragmentationAware: {enabled: false}
    spread: {enabled: false}
`)
	if err == nil || !strings.Contains(err.Error(), "enable at least one profile") {
		t.Errorf("no profile: %v", err)
	}
}

// key names an object.
func key(m map[string]any) string {
	md, _ := m["metadata"].(map[string]any)
	return fmt.Sprintf("%v/%v/%v", m["kind"], md["namespace"], md["name"])
}

// helmLabels are the labels the chart adds to the manifests' objects.
var helmLabels = []string{"app.kubernetes.io/part-of", "app.kubernetes.io/instance", "app.kubernetes.io/version", "app.kubernetes.io/managed-by", "helm.sh/chart"}

// normalise removes what the chart adds on purpose (release labels, the
// configuration hash that rolls the scheduler) and parses embedded YAML
// (the scheduler's and the device plugin's configurations), so that the
// chart and the manifests compare as objects.
func normalise(t *testing.T, m map[string]any) {
	t.Helper()
	md := m["metadata"].(map[string]any)
	if labels, ok := md["labels"].(map[string]any); ok {
		for _, l := range helmLabels {
			delete(labels, l)
		}
		if len(labels) == 0 {
			delete(md, "labels")
		}
	}
	if spec, ok := m["spec"].(map[string]any); ok {
		if tmpl, ok := spec["template"].(map[string]any); ok {
			tmd := tmpl["metadata"].(map[string]any)
			if a, ok := tmd["annotations"].(map[string]any); ok {
				delete(a, "gpuslice.io/config-hash")
				if len(a) == 0 {
					delete(tmd, "annotations")
				}
			}
		}
	}
	if data, ok := m["data"].(map[string]any); ok && m["kind"] == "ConfigMap" {
		for k, v := range data {
			var parsed any
			if s, ok := v.(string); ok && strings.HasSuffix(k, ".yaml") {
				if err := yaml.Unmarshal([]byte(s), &parsed); err != nil {
					t.Fatalf("%s %s: %v", key(m), k, err)
				}
				data[k] = parsed
			}
		}
	}
}

func objects(t *testing.T, docs [][]byte) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	for _, doc := range docs {
		var m map[string]any
		if err := yaml.Unmarshal(doc, &m); err != nil {
			t.Fatal(err)
		}
		normalise(t, m)
		out[key(m)] = m
	}
	return out
}

// TestChartMatchesManifests: rendered with its defaults in gpuslice-system,
// the chart gives exactly the objects of manifests/ (crds, scheduler,
// exporter; the Namespace is helm install --create-namespace's), and its
// copies of the CRD and the dashboard are the repository's.
func TestChartMatchesManifests(t *testing.T) {
	rendered := objects(t, render(t))
	var docs [][]byte
	for _, dir := range []string{"crds", "scheduler", "exporter"} {
		files, err := filepath.Glob(filepath.Join("../../manifests", dir, "*.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			docs = append(docs, split(t, b)...)
		}
	}
	manifests := objects(t, docs)
	delete(manifests, "Namespace/<nil>/gpuslice-system")
	for k, want := range manifests {
		got, ok := rendered[k]
		if !ok {
			t.Errorf("%s is in manifests/, not in the chart", k)
			continue
		}
		// The chart names every object's component in its labels; the
		// manifests label only the workloads.
		if _, ok := want["metadata"].(map[string]any)["labels"]; !ok {
			delete(got["metadata"].(map[string]any), "labels")
		}
		if !reflect.DeepEqual(got, want) {
			g, _ := yaml.Marshal(got)
			w, _ := yaml.Marshal(want)
			t.Errorf("%s differs:\nchart:\n%s\nmanifests:\n%s", k, g, w)
		}
	}
	for k := range rendered {
		if _, ok := manifests[k]; !ok {
			t.Errorf("%s is in the chart, not in manifests/", k)
		}
	}
	for chart, repo := range map[string]string{
		"crds/gpuslice.io_gpunodes.yaml": "../../manifests/crds/gpuslice.io_gpunodes.yaml",
		"dashboards/gpuslice.json":       "../../manifests/dashboards/gpuslice.json",
	} {
		a, err1 := os.ReadFile(filepath.Join(chartDir, chart))
		b, err2 := os.ReadFile(repo)
		if err1 != nil || err2 != nil || !bytes.Equal(a, b) {
			t.Errorf("charts/gpuslice/%s is not a copy of %s (%v, %v): cp %s charts/gpuslice/%s", chart, repo, err1, err2, repo, chart)
		}
	}
}

// TestInstallUpgradeAndSchedule installs the chart into a real
// kube-apiserver, runs gpuslice-scheduler in-process with the configuration
// the chart rendered, schedules a GPU pod with it, and upgrades the release.
func TestInstallUpgradeAndSchedule(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane")
	}
	cp := framework.StartControlPlane(t, controlplane.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	kube := cp.Client()
	const ns = "gpuslice-system"
	if err := localcluster.EnsureNamespace(ctx, kube, ns); err != nil {
		t.Fatal(err)
	}
	out, err := helm(t, []string{"install", chartDir, "-kubeconfig", cp.KubeconfigPath()})
	if err != nil {
		t.Fatalf("helm install: %v\n%s", err, out)
	}
	t.Log(strings.TrimSpace(out))
	cm, err := kube.CoreV1().ConfigMaps(ns).Get(ctx, "gpuslice-scheduler-config", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"gpuslice-scheduler"} {
		if _, err := kube.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := kube.AppsV1().DaemonSets(ns).Get(ctx, "gpuslice-exporter", metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kube.AdmissionregistrationV1().ValidatingAdmissionPolicies().Get(ctx, "gpuslice-exporter-own-node", metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	}

	// A GPU node as its exporter would publish it.
	gpu, err := versioned.NewForConfig(cp.Config())
	if err != nil {
		t.Fatal(err)
	}
	node := fixtures.MustBuild(topology.NewCatalog(), fixtures.Spec{Name: "h100", Product: "NVIDIA H100 80GB HBM3", GPUs: 2, Replicas: 4, Policy: topology.PolicyPacked})
	if err := localcluster.CreateGPUNode(ctx, kube, gpu, node, gpusliceapi.StateReady); err != nil {
		t.Fatal(err)
	}
	go localcluster.KeepAlive(ctx, kube, 2*time.Second, node.Name)

	// The chart's configuration, connected to this control plane, without
	// leader election (kube-scheduler exits the process when a leader
	// stops).
	config := strings.Replace(cm.Data["config.yaml"], "kind: KubeSchedulerConfiguration\n",
		"kind: KubeSchedulerConfiguration\nclientConnection:\n  kubeconfig: "+cp.KubeconfigPath()+"\n", 1)
	if !strings.Contains(config, "leaderElect: true") {
		t.Fatalf("the chart's configuration has no leader election:\n%s", config)
	}
	config = strings.Replace(config, "leaderElect: true", "leaderElect: false", 1)
	sched, err := localcluster.StartScheduler(ctx, t.TempDir(), config)
	if err != nil {
		t.Fatal(err)
	}
	defer sched.Stop()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "gpu-pod", Namespace: "default"},
		Spec: corev1.PodSpec{SchedulerName: "gpuslice-binpack", Containers: []corev1.Container{{
			Name: "main", Image: "cuda",
			Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{"nvidia.com/gpu": resource.MustParse("1")}},
		}}},
	}
	if _, err := kube.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		p, err := kube.CoreV1().Pods("default").Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		pod = p
		return p.Spec.NodeName != "", nil
	})
	if err != nil {
		t.Fatalf("pod not bound by the chart-configured scheduler: %v (%s)", err, localcluster.Unschedulable(pod))
	}
	if pod.Spec.NodeName != node.Name || pod.Annotations["gpuslice.io/assignment"] == "" {
		t.Fatalf("pod bound to %q with annotations %v", pod.Spec.NodeName, pod.Annotations)
	}

	// Upgrade: one replica, spread profile off.
	out, err = helm(t, []string{"upgrade", chartDir, "-kubeconfig", cp.KubeconfigPath()}, `
scheduler:
  replicas: 1
  profiles:
    spread: {enabled: false}
`)
	if err != nil {
		t.Fatalf("helm upgrade: %v\n%s", err, out)
	}
	if !strings.Contains(out, "revision 2") {
		t.Errorf("upgrade: %s", out)
	}
	d, err := kube.AppsV1().Deployments(ns).Get(ctx, "gpuslice-scheduler", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *d.Spec.Replicas != 1 {
		t.Errorf("replicas after upgrade: %d", *d.Spec.Replicas)
	}
	cm, err = kube.CoreV1().ConfigMaps(ns).Get(ctx, "gpuslice-scheduler-config", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkSchedulerConfig(t, "upgraded", cm.Data["config.yaml"], []string{"gpuslice-binpack", "gpuslice-fragmentation-aware"})
}
