package cache

import (
	"strings"
	"testing"
	"time"

	"github.com/gpuslice/gpuslice/pkg/topology"
	"github.com/gpuslice/gpuslice/pkg/topology/fixtures"
)

// TestFreshnessFollowsEveryInput walks a node through every input that
// decides whether it takes GPU pods, in an order where each step changes
// the verdict, so that the reason kept between changes (nodeEntry.blocked)
// is always the current one. Entries are also created by a Lease or a pod
// before any topology.
func TestFreshnessFollowsEveryInput(t *testing.T) {
	c, clk := newCache(t)
	cat := topology.NewCatalog()
	topo := func(state, msg string) *Topology {
		return &Topology{Node: fixtures.MustBuild(cat, ts4), State: state, Message: msg}
	}
	want := func(step, reason string) {
		t.Helper()
		v := c.View("ts")
		if reason == "" {
			if !v.Freshness.Usable || v.Freshness.Reason != "" || v.State == nil {
				t.Fatalf("%s: %+v, want usable with a snapshot", step, v.Freshness)
			}
			return
		}
		if v.Freshness.Usable || !strings.Contains(v.Freshness.Reason, reason) {
			t.Fatalf("%s: %+v, want unusable: %q", step, v.Freshness, reason)
		}
	}

	c.SetHeartbeat("ts", clk.now) // the Lease comes first: the entry exists
	want("lease only", "no GPU topology published for node ts")
	c.SetTopology("ts", topo("Ready", ""))
	want("ready", "")
	c.SetTopology("ts", topo("Degraded", "NVML: not found"))
	want("degraded", "GPU topology of node ts is degraded: NVML: not found")
	c.SetTopology("ts", topo("Sideways", ""))
	want("unknown state", `unknown state "Sideways"`)
	c.SetTopology("ts", topo("Ready", ""))
	want("ready again", "")
	c.RemoveHeartbeat("ts")
	want("lease gone", "no heartbeat from the gpuslice exporter on node ts")
	clk.now = clk.now.Add(time.Hour)
	c.SetHeartbeat("ts", clk.now.Add(-time.Minute))
	want("old lease", "stale: last exporter heartbeat 1m0s ago (limit 40s)")
	c.SetHeartbeat("ts", clk.now)
	want("renewed", "")
	c.RemoveTopology("ts")
	want("topology gone", "no GPU topology published for node ts")
	c.SetTopology("ts", topo("Ready", ""))
	want("published again", "")

	// A pod on a node without a topology creates an entry too.
	c.UpsertPod(PodUpdate{UID: "p", Name: "p", Node: "cpu-node", Request: req("nvidia.com/gpu", 1)})
	if v := c.View("cpu-node"); v.Freshness.Usable || !strings.Contains(v.Freshness.Reason, "no GPU topology published for node cpu-node") || v.State != nil {
		t.Fatalf("node known from a pod only: %+v", v)
	}
}
