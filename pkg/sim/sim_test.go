package sim

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	schedconfig "k8s.io/kubernetes/pkg/scheduler/apis/config"

	"github.com/gpuslice/gpuslice/pkg/topology"
	"github.com/gpuslice/gpuslice/pkg/topology/fixtures"
)

func TestNumFeasibleNodesToFind(t *testing.T) {
	p := func(v int32) *int32 { return &v }
	for _, tc := range []struct {
		percent *int32
		all     int
		want    int
	}{
		{nil, 50, 50},
		{nil, 1213, 497}, // adaptive: 50 - 1213/125 = 41 %
		{nil, 5000, 500},
		{nil, 10000, 500},
		{p(100), 5000, 5000},
		{p(1), 5000, 100},
	} {
		if got := numFeasibleNodesToFind(tc.percent, tc.all); got != tc.want {
			t.Errorf("numFeasibleNodesToFind(%v, %d) = %d, want %d", tc.percent, tc.all, got, tc.want)
		}
	}
}

func node(t testing.TB, spec fixtures.Spec) Node {
	t.Helper()
	topo := fixtures.MustBuild(topology.NewCatalog(), spec)
	capacity, err := topo.Capacity()
	if err != nil {
		t.Fatal(err)
	}
	alloc := v1.ResourceList{
		v1.ResourceCPU:    resource.MustParse("64"),
		v1.ResourceMemory: resource.MustParse("256Gi"),
		v1.ResourcePods:   resource.MustParse("110"),
	}
	for r, n := range capacity {
		alloc[v1.ResourceName(r)] = *resource.NewQuantity(n, resource.DecimalSI)
	}
	return Node{Topology: topo, Node: &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: spec.Name, Labels: map[string]string{v1.LabelHostname: spec.Name}},
		Status:     v1.NodeStatus{Capacity: alloc, Allocatable: alloc},
	}}
}

func pod(name string, res string, n int64) *v1.Pod {
	q := v1.ResourceList{v1.ResourceName(res): *resource.NewQuantity(n, resource.DecimalSI)}
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID(name)},
		Spec:       v1.PodSpec{Containers: []v1.Container{{Name: "main", Resources: v1.ResourceRequirements{Requests: q, Limits: q}}}},
	}
}

func shipped(t testing.TB, name string) Options {
	t.Helper()
	cfg, err := LoadConfigMapFile(filepath.Join("..", "..", "manifests", "scheduler", "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	prof, err := Profile(cfg, name)
	if err != nil {
		t.Fatal(err)
	}
	return Options{Profile: prof, Rand: rand.New(rand.NewPCG(1, 2)), DefaultPolicy: topology.PolicyDistributed}
}

// stock returns options for kube-scheduler's stock default-scheduler profile.
func stock(t testing.TB) Options {
	t.Helper()
	cfg, err := StockConfig("")
	if err != nil {
		t.Fatal(err)
	}
	prof, err := Profile(cfg, "default-scheduler")
	if err != nil {
		t.Fatal(err)
	}
	return Options{Profile: prof, Rand: rand.New(rand.NewPCG(1, 2)), DefaultPolicy: topology.PolicyDistributed}
}

// TestGPUSliceBinpacksMIG runs the shipped gpuslice-binpack profile on
// three A100 nodes: small MIG pods fill one node before touching another,
// the device plugin's picks are the ones GPUSlice reserved, and a pod
// nothing can hold is unschedulable with a reason naming the resource.
func TestGPUSliceBinpacksMIG(t *testing.T) {
	ctx := context.Background()
	opts := shipped(t, "gpuslice-binpack")
	for i := 0; i < 3; i++ {
		opts.Nodes = append(opts.Nodes, node(t, fixtures.Spec{Name: fmt.Sprintf("a100-%d", i), Product: "NVIDIA A100-SXM4-40GB", GPUs: 2, MIG: []string{"1g.5gb", "1g.5gb", "2g.10gb", "3g.20gb"}}))
	}
	s, err := New(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	for i := 0; i < 4; i++ {
		p := pod(fmt.Sprintf("p%d", i), "nvidia.com/mig-1g.5gb", 1)
		d, err := s.Schedule(ctx, p)
		if err != nil || d.Node == "" {
			t.Fatalf("pod %d: %v %q", i, err, d.Reason)
		}
		if _, err := s.Admit(ctx, p, d); err != nil {
			t.Fatal(err)
		}
		used[d.Node] = true
	}
	if len(used) != 1 {
		t.Errorf("4 mig-1g.5gb pods spread over %d nodes, want 1 (each node has 4)", len(used))
	}
	d, err := s.Schedule(ctx, pod("big", "nvidia.com/mig-7g.40gb", 1))
	if err != nil || d.Node != "" || !strings.Contains(d.Reason, "nvidia.com/mig-7g.40gb") {
		t.Errorf("7g.40gb pod: %v node %q reason %q", err, d.Node, d.Reason)
	}
	if st := s.Stats(); st.Mispredicted != 0 || st.Scheduled != 4 || st.Unschedulable != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestStockSchedulerMeetsKubeletRejection: the stock scheduler counts
// replicas only, so it binds a share no single GPU can hold on a
// one-GPU-per-request node; the simulated kubelet refuses it.
func TestStockSchedulerMeetsKubeletRejection(t *testing.T) {
	ctx := context.Background()
	opts := stock(t)
	opts.DefaultPolicy = topology.PolicyPacked
	opts.Nodes = []Node{node(t, fixtures.Spec{Name: "share", Product: "Tesla T4", MemoryMiB: 16384, GPUs: 2, Replicas: 1000, OneGPUPerRequest: true})}
	s, err := New(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range []int64{600, 600} {
		p := pod(fmt.Sprint("ok", i), "nvidia.com/gpu", n)
		d, err := s.Schedule(ctx, p)
		if err != nil || d.Node == "" {
			t.Fatalf("share %d: %v %q", i, err, d.Reason)
		}
		if _, err := s.Admit(ctx, p, d); err != nil {
			t.Fatal(err)
		}
	}
	p := pod("split", "nvidia.com/gpu", 700) // 800 free, 400 per GPU
	d, err := s.Schedule(ctx, p)
	if err != nil || d.Node != "share" {
		t.Fatalf("stock scheduler should bind by count: %v %+v", err, d)
	}
	_, err = s.Admit(ctx, p, d)
	var rej *AdmissionError
	if !errors.As(err, &rej) || !strings.Contains(rej.Reason, "no single GPU has 700 free") {
		t.Fatalf("admission: %v", err)
	}
	if st := s.Stats(); st.AdmissionRejected != 1 || st.Scheduled != 2 {
		t.Errorf("stats %+v", st)
	}
}

// TestShippedProfilesFilterWithGPUSliceFirst: every shipped gpuslice
// profile runs GPUSlice's Filter before the default filters (nodes whose
// GPUs are taken are turned away by its memoised check) and binds with
// GPUSlice, as the framework builds them from the shipped configuration.
func TestShippedProfilesFilterWithGPUSliceFirst(t *testing.T) {
	ctx := context.Background()
	for _, name := range []string{"gpuslice-binpack", "gpuslice-fragmentation-aware", "gpuslice-spread"} {
		opts := shipped(t, name)
		opts.Nodes = []Node{node(t, fixtures.Spec{Name: "h100", Product: "NVIDIA H100 80GB HBM3", GPUs: 1})}
		s, err := New(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		plugins := s.fw.ListPlugins()
		if f := plugins.Filter.Enabled; len(f) < 2 || f[0].Name != "GPUSlice" || !slices.ContainsFunc(f, func(p schedconfig.Plugin) bool { return p.Name == "NodeResourcesFit" }) {
			t.Errorf("%s: filter plugins %v, want GPUSlice first, then the defaults", name, f)
		}
		if b := plugins.Bind.Enabled; len(b) == 0 || b[0].Name != "GPUSlice" {
			t.Errorf("%s: bind plugins %v, want GPUSlice first", name, b)
		}
		// GPUSlice's PostFilter records MIG demand; behind DefaultPreemption
		// it would not run when preemption finds no victims.
		if pf := plugins.PostFilter.Enabled; len(pf) < 2 || pf[0].Name != "GPUSlice" || !slices.ContainsFunc(pf, func(p schedconfig.Plugin) bool { return p.Name == "DefaultPreemption" }) {
			t.Errorf("%s: postFilter plugins %v, want GPUSlice first, DefaultPreemption after", name, pf)
		}
	}
}

// TestShippedPackingProfilesSignPods: the packing profiles drop the
// system-default topology spreading, so the framework signs their GPU pods
// and opportunistic batching can reuse a cycle's results for the next pod
// with the same requests. gpuslice-spread keeps the defaults and, like the
// stock profile, signs nothing.
func TestShippedPackingProfilesSignPods(t *testing.T) {
	ctx := context.Background()
	p := pod("p", "nvidia.com/gpu", 1)
	p.Spec.Containers[0].Resources.Requests[v1.ResourceCPU] = resource.MustParse("100m")
	for name, signs := range map[string]bool{"gpuslice-binpack": true, "gpuslice-fragmentation-aware": true, "gpuslice-spread": false} {
		opts := shipped(t, name)
		opts.Nodes = []Node{node(t, fixtures.Spec{Name: "h100", Product: "NVIDIA H100 80GB HBM3", GPUs: 1})}
		s, err := New(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		sig := s.fw.SignPod(ctx, p)
		if got := sig != nil; got != signs {
			t.Errorf("%s: signature %q, want one: %v", name, sig, signs)
		}
		if signs && !strings.Contains(string(sig), "GPURequests") {
			t.Errorf("%s: signature %s carries no GPU request", name, sig)
		}
		// A pod with its own spread constraints is never batched.
		spread := p.DeepCopy()
		spread.Spec.TopologySpreadConstraints = []v1.TopologySpreadConstraint{{MaxSkew: 1, TopologyKey: v1.LabelHostname, WhenUnsatisfiable: v1.ScheduleAnyway, LabelSelector: &metav1.LabelSelector{}}}
		if sig := s.fw.SignPod(ctx, spread); sig != nil {
			t.Errorf("%s: signed a pod with topology spread constraints: %s", name, sig)
		}
	}
	opts := stock(t)
	opts.Nodes = []Node{node(t, fixtures.Spec{Name: "h100", Product: "NVIDIA H100 80GB HBM3", GPUs: 1})}
	s, err := New(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if sig := s.fw.SignPod(ctx, p); sig != nil {
		t.Errorf("stock profile signed %s (system-default spreading makes pods unsignable)", sig)
	}
}
