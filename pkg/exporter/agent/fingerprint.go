package agent

import (
	"crypto/sha256"
	"encoding/hex"
	"sort"
	"strings"

	gpusliceapi "github.com/gpuslice/gpuslice/pkg/apis/gpuslice/v1alpha1"
)

// SortAllocations puts allocations in a canonical order (pods by namespace,
// name; containers by name; resources by name; IDs sorted), so that equal
// observations compare equal.
func SortAllocations(allocs []gpusliceapi.PodAllocation) {
	for i := range allocs {
		pa := &allocs[i]
		for j := range pa.Containers {
			c := &pa.Containers[j]
			for k := range c.Devices {
				sort.Strings(c.Devices[k].DeviceIDs)
			}
			sort.Slice(c.Devices, func(a, b int) bool { return c.Devices[a].Resource < c.Devices[b].Resource })
		}
		sort.Slice(pa.Containers, func(a, b int) bool { return pa.Containers[a].Name < pa.Containers[b].Name })
	}
	sort.Slice(allocs, func(a, b int) bool {
		if allocs[a].Namespace != allocs[b].Namespace {
			return allocs[a].Namespace < allocs[b].Namespace
		}
		return allocs[a].Name < allocs[b].Name
	})
}

// Fingerprint is a short hash of canonically sorted allocations.
func Fingerprint(allocs []gpusliceapi.PodAllocation) string {
	if len(allocs) == 0 {
		return ""
	}
	h := sha256.New()
	for _, pa := range allocs {
		h.Write([]byte(pa.PodUID + "\x00" + pa.Namespace + "/" + pa.Name + "\x00"))
		for _, c := range pa.Containers {
			h.Write([]byte(c.Name + "\x00"))
			for _, d := range c.Devices {
				h.Write([]byte(d.Resource + "=" + strings.Join(d.DeviceIDs, ",") + "\x00"))
			}
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}
