package migparted

import (
	"testing"

	"github.com/gpuslice/gpuslice/pkg/topology"
)

// TestDefaultResolvesNamedLayouts: the embedded file parses and resolves the
// layouts the MIG manager labels nodes with on A100 and H100.
func TestDefaultResolvesNamedLayouts(t *testing.T) {
	f, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	cat := topology.NewCatalog()
	for _, tc := range []struct {
		config, product string
		want            int
	}{
		{"all-1g.5gb", "NVIDIA A100-SXM4-40GB", 7},
		{"all-balanced", "NVIDIA A100-SXM4-40GB", 4},
		{"all-1g.10gb", "NVIDIA H100 80GB HBM3", 7},
		{"all-3g.40gb", "NVIDIA H100 80GB HBM3", 2},
	} {
		profiles, err := f.Layout(cat, tc.config, tc.product)
		if err != nil {
			t.Errorf("%s on %s: %v", tc.config, tc.product, err)
			continue
		}
		if len(profiles) != tc.want {
			t.Errorf("%s on %s: %v, want %d instances", tc.config, tc.product, profiles, tc.want)
		}
	}
}
