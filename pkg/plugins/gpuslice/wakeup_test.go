package gpuslice

import (
	"context"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"

	gpusliceapi "github.com/gpuslice/gpuslice/pkg/apis/gpuslice/v1alpha1"
	"github.com/gpuslice/gpuslice/pkg/cache"
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
}
