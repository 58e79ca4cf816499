package gpuslice

import (
	"context"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"

	gpusliceapi "github.com/gpuslice/gpuslice/pkg/apis/gpuslice/v1alpha1"
	"github.com/gpuslice/gpuslice/pkg/cache"
	gpufake "github.com/gpuslice/gpuslice/pkg/generated/clientset/versioned/fake"
	"github.com/gpuslice/gpuslice/pkg/podrequest"
	"github.com/gpuslice/gpuslice/pkg/topology"
	"github.com/gpuslice/gpuslice/pkg/topology/fixtures"
)

// TestWokenPodSeesTheEventThatWokeIt: the queueing hints run on the
// framework's informers, the plugin's cache is fed by its own, and nothing
// orders the two. A pod the hint queues must be retried against a cache
// that has seen the event that woke it, not fail against the old one and
// wait for an unrelated event (or the 5-minute flush).
func TestWokenPodSeesTheEventThatWokeIt(t *testing.T) {
	logger := klog.Background()
	published := func(state gpusliceapi.NodeState, rv string) *gpusliceapi.GPUNode {
		gn := &gpusliceapi.GPUNode{ObjectMeta: metav1.ObjectMeta{Name: a100.Name, ResourceVersion: rv}, Spec: gpusliceapi.SpecFromTopology(fixtures.MustBuild(topology.NewCatalog(), a100))}
		gn.Spec.State = state
		if state != gpusliceapi.StateReady {
			gn.Spec.Message = "NVML: not found"
		}
		return gn
	}
	setup := func(t *testing.T) (*Plugin, *cache.Cache) {
		args := testArgs("binpack")
		c := newCache(t)
		c.SetTopology(a100.Name, TopologyOf(published(gpusliceapi.StateDegraded, "10")))
		c.SetHeartbeat(a100.Name, now)
		return newPlugin(t, testShared(c, args), args, nil), c
	}
	pending := gpuPod("pending", map[string]int64{"nvidia.com/mig-1g.5gb": 1})
	filter := func(pl *Plugin) *fwk.Status {
		return pl.Filter(context.Background(), cycle(t, pl, pending), pending, nodeInfo(a100.Name))
	}
	queued := func(t *testing.T, hint fwk.QueueingHint, err error) {
		t.Helper()
		if err != nil || hint != fwk.Queue {
			t.Fatalf("hint %v, %v; want Queue", hint, err)
		}
	}

	t.Run("GPUNode turned Ready", func(t *testing.T) {
		pl, c := setup(t)
		if st := filter(pl); st.IsSuccess() || !strings.Contains(st.Message(), "degraded") {
			t.Fatalf("before the event: %v", st)
		}
		// The framework's informer delivers version 11 (Ready); the
		// plugin's own informer has not yet.
		hint, err := pl.hintGPUNode(logger, pending, unstructuredOf(t, published(gpusliceapi.StateDegraded, "10")), unstructuredOf(t, published(gpusliceapi.StateReady, "11")))
		queued(t, hint, err)
		if st := filter(pl); !st.IsSuccess() {
			t.Fatalf("retried after the hint: %v", st)
		}
		// The plugin's informer catches up with an older version, then
		// the same: neither rolls the cache back.
		pl.shared.onGPUNode(published(gpusliceapi.StateDegraded, "10"))
		pl.shared.onGPUNode(published(gpusliceapi.StateReady, "11"))
		if st := filter(pl); !st.IsSuccess() {
			t.Fatalf("after the plugin's informer delivered older versions: %v", st)
		}
		// A newer version does apply.
		pl.shared.onGPUNode(published(gpusliceapi.StateDegraded, "12"))
		if v := c.View(a100.Name); v.Freshness.Usable {
			t.Fatal("version 12 (Degraded) not applied")
		}
	})

	t.Run("exporter heartbeat came back", func(t *testing.T) {
		pl, c := setup(t)
		c.SetTopology(a100.Name, TopologyOf(published(gpusliceapi.StateReady, "11")))
		c.RemoveHeartbeat(a100.Name)
		c.SetHeartbeat(a100.Name, now.Add(-5*time.Minute))
		if st := filter(pl); st.IsSuccess() || !strings.Contains(st.Message(), "stale") {
			t.Fatalf("before the event: %v", st)
		}
		lease := func(renew time.Time) *coordinationv1.Lease {
			rt := metav1.NewMicroTime(renew)
			return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: a100.Name, Namespace: "gpuslice-system"}, Spec: coordinationv1.LeaseSpec{RenewTime: &rt}}
		}
		hint, err := pl.hintLease(logger, pending, lease(now.Add(-5*time.Minute)), lease(now))
		queued(t, hint, err)
		if st := filter(pl); !st.IsSuccess() {
			t.Fatalf("retried after the hint: %v", st)
		}
		pl.shared.onLease(lease(now.Add(-5 * time.Minute))) // the plugin's informer, late
		if st := filter(pl); !st.IsSuccess() {
			t.Fatalf("after the plugin's informer delivered the older renewal: %v", st)
		}
	})

	t.Run("pod holding the slices deleted", func(t *testing.T) {
		pl, c := setup(t)
		c.SetTopology(a100.Name, TopologyOf(published(gpusliceapi.StateReady, "11")))
		holder := gpuPod("holder", map[string]int64{"nvidia.com/mig-1g.5gb": 2})
		holder.Spec.NodeName = a100.Name
		req, err := podrequest.Parse(holder, podrequest.Options{Catalog: topology.NewCatalog()})
		if err != nil {
			t.Fatal(err)
		}
		c.UpsertPod(cache.PodUpdate{UID: holder.UID, Namespace: holder.Namespace, Name: holder.Name, Node: a100.Name, Request: req})
		if st := filter(pl); st.IsSuccess() || !strings.Contains(st.Message(), "no free nvidia.com/mig-1g.5gb") {
			t.Fatalf("before the event: %v", st)
		}
		hint, err := pl.hintPodDeleted(logger, pending, holder, nil)
		queued(t, hint, err)
		if st := filter(pl); !st.IsSuccess() {
			t.Fatalf("retried after the hint: %v", st)
		}
	})

	t.Run("GPUNode watch lags the Lease", func(t *testing.T) {
		// After an API server restart the GPUNode watch may sit in
		// client-go's retry backoff for up to a minute while Leases flow:
		// the cache holds version 11, whose kubelet read-back still lists
		// a pod that has left holding both 1g.5gb slices; version 12 (the
		// slices free) is in the API. The exporter's Lease names 12.
		pl, c := setup(t)
		units, err := fixtures.MustBuild(topology.NewCatalog(), a100).Units()
		if err != nil {
			t.Fatal(err)
		}
		var ones []string
		for _, u := range units {
			if u.Resource == "nvidia.com/mig-1g.5gb" {
				ones = append(ones, u.DeviceID)
			}
		}
		held := published(gpusliceapi.StateReady, "11")
		held.Spec.Allocations = []gpusliceapi.PodAllocation{{PodUID: "gone-uid", Namespace: "default", Name: "gone", Containers: []gpusliceapi.ContainerAllocation{{Name: "main",
			Devices: []gpusliceapi.ResourceDevices{{Resource: "nvidia.com/mig-1g.5gb", DeviceIDs: ones}}}}}}
		c.SetTopology(a100.Name, TopologyOf(held))
		if st := filter(pl); st.IsSuccess() || !strings.Contains(st.Message(), "no free nvidia.com/mig-1g.5gb") {
			t.Fatalf("before the event: %v", st)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		clock := now
		cu := newCatchUp(gpufake.NewSimpleClientset(published(gpusliceapi.StateReady, "12")), pl.shared)
		pl.shared.catchUps = cu
		pl.shared.unannounced = unannounced{window: 40 * time.Second, now: func() time.Time { return clock }}
		go cu.run(ctx)
		lease := func(renew time.Time, version string) *coordinationv1.Lease {
			rt := metav1.NewMicroTime(renew)
			return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: a100.Name, Namespace: "gpuslice-system",
				Annotations: map[string]string{gpusliceapi.LeaseGPUNodeVersionAnnotation: version}}, Spec: coordinationv1.LeaseSpec{RenewTime: &rt}}
		}
		cachedVersion := func(want string) {
			t.Helper()
			if err := wait.PollUntilContextTimeout(ctx, 5*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
				return c.TopologyVersion(a100.Name) == want, nil
			}); err != nil {
				t.Fatalf("cache holds GPUNode version %q, want %s", c.TopologyVersion(a100.Name), want)
			}
		}
		// A renewal naming the version the cache holds reads nothing and
		// wakes nobody.
		if hint, err := pl.hintLease(logger, pending, lease(now.Add(-time.Second), "11"), lease(now, "11")); err != nil || hint != fwk.QueueSkip {
			t.Fatalf("renewal naming the cached version: hint %v, %v; want QueueSkip", hint, err)
		}
		// A renewal naming 12: the GPUNode is read off the handler; the
		// next renewal wakes the pod, which then fits.
		if _, err := pl.hintLease(logger, pending, lease(now.Add(-time.Second), "11"), lease(now, "12")); err != nil {
			t.Fatal(err)
		}
		cachedVersion("12")
		hint, err := pl.hintLease(logger, pending, lease(now, "12"), lease(now.Add(time.Second), "12"))
		queued(t, hint, err)
		if st := filter(pl); !st.IsSuccess() {
			t.Fatalf("retried after the hint: %v", st)
		}
		// Once the window (the heartbeat timeout) has passed, renewals
		// wake nobody again.
		clock = now.Add(41 * time.Second)
		if hint, err := pl.hintLease(logger, pending, lease(now, "12"), lease(now.Add(2*time.Second), "12")); err != nil || hint != fwk.QueueSkip {
			t.Fatalf("renewal after the window: hint %v, %v; want QueueSkip", hint, err)
		}
		// The plugin's own Lease informer heals the cache too, with no pod
		// waiting.
		cu.client = gpufake.NewSimpleClientset(published(gpusliceapi.StateDegraded, "13"))
		pl.shared.onLease(lease(now, "13"))
		cachedVersion("13")
	})

	t.Run("plugin's informer ahead of the framework's", func(t *testing.T) {
		// After an API server restart each watch recovers on its own
		// backoff: the plugin's informer may deliver the GPUNode that frees
		// the slices while the framework's, whose event would wake the pod,
		// still waits. The node's Lease renewals wake it meanwhile, until a
		// GPUNode hint has seen the version or the window has passed.
		pl, c := setup(t)
		clock := now
		pl.shared.unannounced = unannounced{window: 40 * time.Second, now: func() time.Time { return clock }}
		holder := gpuPod("holder", map[string]int64{"nvidia.com/mig-1g.5gb": 2})
		holder.Spec.NodeName = a100.Name
		req, err := podrequest.Parse(holder, podrequest.Options{Catalog: topology.NewCatalog()})
		if err != nil {
			t.Fatal(err)
		}
		pl.shared.onGPUNode(published(gpusliceapi.StateReady, "11"))
		c.UpsertPod(cache.PodUpdate{UID: holder.UID, Namespace: holder.Namespace, Name: holder.Name, Node: a100.Name, Request: req})
		if st := filter(pl); st.IsSuccess() {
			t.Fatal("fits while the holder holds the slices")
		}
		lease := func(renew time.Time) *coordinationv1.Lease {
			rt := metav1.NewMicroTime(renew)
			return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: a100.Name, Namespace: "gpuslice-system"}, Spec: coordinationv1.LeaseSpec{RenewTime: &rt}}
		}
		// The framework's informer delivers 11: the hint has seen it.
		if _, err := pl.hintGPUNode(logger, pending, unstructuredOf(t, published(gpusliceapi.StateDegraded, "10")), unstructuredOf(t, published(gpusliceapi.StateReady, "11"))); err != nil {
			t.Fatal(err)
		}
		if hint, err := pl.hintLease(logger, pending, lease(now.Add(-time.Second)), lease(now)); err != nil || hint != fwk.QueueSkip {
			t.Fatalf("renewal with nothing unannounced: hint %v, %v; want QueueSkip", hint, err)
		}
		// The holder leaves; only the plugin's informers see it (the pod
		// deletion and GPUNode version 12).
		c.RemovePod(holder.UID)
		pl.shared.onGPUNode(published(gpusliceapi.StateReady, "12"))
		hint, err := pl.hintLease(logger, pending, lease(now), lease(now.Add(time.Second)))
		queued(t, hint, err)
		if st := filter(pl); !st.IsSuccess() {
			t.Fatalf("retried after the hint: %v", st)
		}
		// Once the framework's informer delivers 12, renewals wake nobody.
		if _, err := pl.hintGPUNode(logger, pending, unstructuredOf(t, published(gpusliceapi.StateReady, "11")), unstructuredOf(t, published(gpusliceapi.StateReady, "12"))); err != nil {
			t.Fatal(err)
		}
		if hint, err := pl.hintLease(logger, pending, lease(now.Add(time.Second)), lease(now.Add(2*time.Second))); err != nil || hint != fwk.QueueSkip {
			t.Fatalf("renewal after the GPUNode hint: hint %v, %v; want QueueSkip", hint, err)
		}
		// Nor after the window, had the framework's informer never come.
		pl.shared.onGPUNode(published(gpusliceapi.StateReady, "13"))
		clock = now.Add(41 * time.Second)
		if hint, err := pl.hintLease(logger, pending, lease(now.Add(2*time.Second)), lease(now.Add(3*time.Second))); err != nil || hint != fwk.QueueSkip {
			t.Fatalf("renewal after the window: hint %v, %v; want QueueSkip", hint, err)
		}
	})
}
