// Package demo runs gpuslice on a local cluster: a real etcd and
// kube-apiserver, simulated GPU nodes (fake NVML and kubelet, real exporter
// code), gpuslice-scheduler in-process, and the sample workload — once with
// the default kube-scheduler and once with gpuslice — and prints where every
// slice went; then, on top of gpuslice's placement, a pod that asks for a MIG
// profile no layout offers, served by gpuslice-repartitioner and a simulated
// MIG manager rebuilding an idle GPU of one node.
package demo

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	versioned "github.com/gpuslice/gpuslice/pkg/generated/clientset/versioned"
	"github.com/gpuslice/gpuslice/pkg/localcluster"
	"github.com/gpuslice/gpuslice/pkg/localcluster/controlplane"
	"github.com/gpuslice/gpuslice/pkg/topology"
	"github.com/gpuslice/gpuslice/pkg/topology/fixtures"
)

// Options configure the demo.
type Options struct {
	// Keep leaves the cluster running (with its kubeconfig) until ctx ends.
	Keep bool
	// Copies of each sample pod.
	Copies map[string]int
	Out    io.Writer
}

var balanced = []string{"1g.5gb", "1g.5gb", "2g.10gb", "3g.20gb"}

// Nodes are the demo's simulated GPU nodes.
func Nodes() []fixtures.Spec {
	return []fixtures.Spec{
		{Name: "a100-40gb-a", Product: "NVIDIA A100-SXM4-40GB", GPUs: 4, MIG: balanced},
		{Name: "a100-40gb-b", Product: "NVIDIA A100-SXM4-40GB", GPUs: 4, MIG: balanced},
		{Name: "a100-80gb", Product: "NVIDIA A100-SXM4-80GB", GPUs: 4, MIG: []string{"1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb"}},
		{Name: "h100-ts", Product: "NVIDIA H100 80GB HBM3", GPUs: 4, Replicas: 4, Policy: topology.PolicyPacked},
		{Name: "h200", Product: "NVIDIA H200", GPUs: 4},
		{Name: "a30", Product: "NVIDIA A30", GPUs: 4, MIG: []string{"1g.6gb", "1g.6gb", "2g.12gb"}},
	}
}

// DefaultCopies is how many of each sample the demo runs.
var DefaultCopies = map[string]int{"mig-inference.yaml": 8, "mig-multi-profile.yaml": 3, "time-sliced.yaml": 8, "whole-gpus.yaml": 2}

// Run runs the demo.
func Run(ctx context.Context, o Options) error {
	if o.Out == nil {
		o.Out = os.Stdout
	}
	if o.Copies == nil {
		o.Copies = DefaultCopies
	}
	say := func(f string, a ...any) { fmt.Fprintf(o.Out, f+"\n", a...) }
	start := time.Now()
	say("▶ starting etcd and kube-apiserver on 127.0.0.1 ...")
	cp, err := controlplane.Start(ctx, "")
	if err != nil {
		return err
	}
	defer cp.Stop()
	kube := cp.Client()
	gpu, err := versioned.NewForConfig(cp.Config())
	if err != nil {
		return err
	}
	if err := localcluster.InstallCRDs(ctx, cp.Config()); err != nil {
		return err
	}
	for _, ns := range []string{localcluster.LeaseNamespace, "demo"} {
		if err := localcluster.EnsureNamespace(ctx, kube, ns); err != nil {
			return err
		}
	}
	say("▶ simulated GPU nodes (fake NVML + fake kubelet, real exporter):")
	nodes := map[string]*localcluster.SimNode{}
	for i, spec := range Nodes() {
		sn, err := localcluster.StartSimNode(ctx, kube, gpu, spec, localcluster.SimOptions{HeartbeatInterval: 2 * time.Second, PollInterval: 250 * time.Millisecond, Resync: 10 * time.Second, Seed: int64(i)})
		if err != nil {
			return err
		}
		nodes[spec.Name] = sn
		say("   %-12s %d × %s %s", spec.Name, spec.GPUs, spec.Product, describe(spec))
	}
	dir, err := os.MkdirTemp("", "gpuslice-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	sched, err := localcluster.StartScheduler(ctx, dir, schedulerConfig(cp.KubeconfigPath()))
	if err != nil {
		return err
	}
	defer sched.Stop()
	say("▶ gpuslice-scheduler running (profiles gpuslice-binpack, gpuslice-spread, and the stock default-scheduler)")
	waitPublished(ctx, gpu, len(nodes))

	pods, err := samplePods(o.Copies)
	if err != nil {
		return err
	}
	say("▶ workload: %d pods from manifests/samples/ (%s)", len(pods), copiesText(o.Copies))

	var results []roundResult
	for _, r := range []struct{ title, scheduler string }{
		{"default kube-scheduler", "default-scheduler"},
		{"gpuslice (binpack)", "gpuslice-binpack"},
	} {
		res, err := runRound(ctx, kube, nodes, pods, r.scheduler)
		if err != nil {
			return err
		}
		res.title = r.title
		results = append(results, res)
		if r.scheduler != "default-scheduler" {
			say("")
			say("═══ where every slice went under %s ═══", r.title)
			res.print(o.Out)
		}
		if r.scheduler == "default-scheduler" {
			if err := deleteAll(ctx, kube); err != nil {
				return err
			}
		}
	}
	say("")
	say("═══ same workload, two schedulers ═══")
	say("%-24s %10s %12s %12s %14s %18s", "scheduler", "pods bound", "GPUs in use", "empty GPUs", "empty nodes", "GPUs short of ask")
	for _, r := range results {
		say("%-24s %10d %12d %12d %14s %18d", r.title, r.bound, r.gpusUsed, r.gpusTotal-r.gpusUsed, fmt.Sprintf("%d of %d", r.nodesTotal-r.nodesUsed, r.nodesTotal), r.shortGPUs)
	}
	say("")
	say("(GPUs short of ask: replicas a container got on a physical GPU it already had one of; a training job asking for 2 GPUs then runs on 1)")
	say("")
	say("═══ MIG layouts that follow demand ═══")
	rep, err := runRepartition(ctx, o.Out, kube, gpu, nodes)
	if err != nil {
		return err
	}
	rep.print(o.Out)
	say("done in %s. gpuslice leaves whole GPUs and nodes empty for large jobs or scale-down.", time.Since(start).Round(time.Second))
	if o.Keep {
		kc := filepath.Join(os.TempDir(), "gpuslice-demo.kubeconfig")
		data, err := os.ReadFile(cp.KubeconfigPath())
		if err == nil {
			err = os.WriteFile(kc, data, 0o600)
		}
		if err != nil {
			return err
		}
		// The kubeconfig names a cluster that is gone after teardown.
		defer os.Remove(kc)
		say("cluster kept running. In another shell:\n  export KUBECONFIG=%s\n  %s get gpunodes\n  %s get pods -n demo -o wide\nCtrl-C tears everything down (and removes %[1]s).", kc, cp.KubectlPath(), cp.KubectlPath())
		<-ctx.Done()
	}
	return nil
}

func describe(s fixtures.Spec) string {
	switch {
	case len(s.MIG) > 0:
		return "MIG mixed [" + strings.Join(s.MIG, " ") + "] per GPU"
	case s.Replicas > 1:
		return fmt.Sprintf("time-sliced ×%d (%s)", s.Replicas, s.Policy)
	}
	return "whole GPUs"
}

func copiesText(c map[string]int) string {
	var parts []string
	for k, v := range c {
		parts = append(parts, fmt.Sprintf("%d× %s", v, strings.TrimSuffix(k, ".yaml")))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

func schedulerConfig(kubeconfig string) string {
	return localcluster.SchedulerConfig(kubeconfig, 20*time.Second) + `- schedulerName: default-scheduler
`
}

// samplePods reads manifests/samples and makes the requested copies.
func samplePods(copies map[string]int) ([]*corev1.Pod, error) {
	root, err := controlplane.RepoRoot()
	if err != nil {
		return nil, err
	}
	var out []*corev1.Pod
	names := make([]string, 0, len(copies))
	for k := range copies {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, f := range names {
		data, err := os.ReadFile(filepath.Join(root, "manifests", "samples", f))
		if err != nil {
			return nil, err
		}
		var p corev1.Pod
		if err := yaml.UnmarshalStrict(data, &p); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		for i := 0; i < copies[f]; i++ {
			c := p.DeepCopy()
			c.Name = fmt.Sprintf("%s-%d", p.Name, i)
			c.Namespace = "demo"
			out = append(out, c)
		}
	}
	return out, nil
}

func waitPublished(ctx context.Context, gpu versioned.Interface, n int) {
	_ = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		l, err := gpu.GpusliceV1alpha1().GPUNodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		ready := 0
		for _, gn := range l.Items {
			if gn.Spec.State == "Ready" {
				ready++
			}
		}
		return ready == n, nil
	})
}

func deleteAll(ctx context.Context, kube kubernetes.Interface) error {
	if err := kube.CoreV1().Pods("demo").DeleteCollection(ctx, *metav1.NewDeleteOptions(0), metav1.ListOptions{}); err != nil {
		return err
	}
	return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		l, err := kube.CoreV1().Pods("demo").List(ctx, metav1.ListOptions{})
		return err == nil && len(l.Items) == 0, nil
	})
}
