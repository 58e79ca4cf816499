package mig

import (
	"slices"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"

	"github.com/gpuslice/gpuslice/pkg/topology"
)

func TestLayoutFromMIGParted(t *testing.T) {
	parted, err := topology.LoadMIGParted(sharedDataFile(t, "mig-parted-config-default.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cat := topology.NewCatalog()
	rep := func(p string, n int) []string { return slices.Repeat([]string{p}, n) }
	for _, c := range []struct {
		config, product string
		want            []string
	}{
		{"all-balanced", a100Product, []string{"1g.5gb", "1g.5gb", "2g.10gb", "3g.20gb"}},
		{"all-balanced", h100Product, []string{"1g.10gb", "1g.10gb", "2g.20gb", "3g.40gb"}},
		{"all-balanced", "NVIDIA A100-SXM4-80GB", []string{"1g.10gb", "1g.10gb", "2g.20gb", "3g.40gb"}},
		{"all-1g.5gb", a100Product, rep("1g.5gb", 7)},
		{"all-2g.10gb", a100Product, rep("2g.10gb", 3)},
		{"all-3g.20gb", a100Product, rep("3g.20gb", 2)},
		// all-1g.10gb has one filtered entry per memory size.
		{"all-1g.10gb", a100Product, rep("1g.10gb", 4)},
		{"all-1g.10gb", h100Product, rep("1g.10gb", 7)},
		{"all-2g.20gb", h100Product, rep("2g.20gb", 3)},
		{"all-3g.40gb", h100Product, rep("3g.40gb", 2)},
		{"all-7g.80gb", h100Product, []string{"7g.80gb"}},
	} {
		got, err := parted.Layout(cat, c.config, c.product)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("Layout(%s, %s) = %v, %v; want %v", c.config, c.product, got, err, c.want)
		}
	}
	for _, c := range []struct{ config, product, want string }{
		{"all-3g.20gb", h100Product, "0 entries apply"},
		{"all-3g.40gb", a100Product, "0 entries apply"},
		{"no-such-layout", h100Product, "not found"},
		{"all-disabled", h100Product, "creates no MIG instances"},
		{"all-enabled", h100Product, "creates no MIG instances"},
		{"all-balanced", "NVIDIA Tesla T4", "not in the MIG catalog"},
	} {
		if got, err := parted.Layout(cat, c.config, c.product); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Layout(%s, %s) = %v, %v; want error containing %q", c.config, c.product, got, err, c.want)
		}
	}

	cluster, err := DefaultCluster().Resolve(cat, parted)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{
		"nvidia.com/mig-1g.5gb": 4*16 + 2*56, "nvidia.com/mig-2g.10gb": 4*8 + 24, "nvidia.com/mig-3g.20gb": 4*8 + 16,
		"nvidia.com/mig-1g.10gb": 4*16 + 2*56, "nvidia.com/mig-2g.20gb": 4*8 + 24, "nvidia.com/mig-3g.40gb": 4*8 + 16,
	}
	if got := cluster.Capacity(); !mapsEqual(got, want) {
		t.Errorf("default cluster capacity %v, want %v", got, want)
	}
	nodes, _, err := cluster.Build(cat)
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 20 {
		t.Errorf("default cluster has %d nodes, want 20", len(nodes))
	}
	for _, n := range nodes {
		if n.Topology == nil {
			continue
		}
		capacity, err := n.Topology.Capacity()
		if err != nil {
			t.Fatal(err)
		}
		for r, c := range capacity {
			if q := n.Node.Status.Allocatable[v1.ResourceName(r)]; q.Value() != c {
				t.Errorf("node %s: allocatable %s = %s, device plugin advertises %d", n.Node.Name, r, q.String(), c)
			}
		}
	}
}

func mapsEqual(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
