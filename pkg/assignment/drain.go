package assignment

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// DrainAnnotation, on a Node, lists the indexes of its GPUs that
// gpuslice-repartitioner is draining for a MIG layout change
// (comma-separated, e.g. "3,5"). gpuslice's scheduler places no new pod
// that the kubelet could put on such a GPU; the GPU's running pods are left
// alone, and once it is empty the repartitioner asks MIG manager for its
// new layout and lifts the drain. Only the repartitioner writes it.
const DrainAnnotation = "gpuslice.io/mig-drain"

// ParseDrain reads a DrainAnnotation value: sorted, distinct GPU indexes.
// An empty value is no drain.
func ParseDrain(v string) ([]int, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return nil, nil
	}
	var out []int
	for _, f := range strings.Split(v, ",") {
		i, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || i < 0 {
			return nil, fmt.Errorf("annotation %s: %q is not a GPU index", DrainAnnotation, f)
		}
		out = append(out, i)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// FormatDrain writes a DrainAnnotation value ("" for none).
func FormatDrain(gpus []int) string {
	s := slices.Clone(gpus)
	slices.Sort(s)
	s = slices.Compact(s)
	parts := make([]string, len(s))
	for i, g := range s {
		parts[i] = strconv.Itoa(g)
	}
	return strings.Join(parts, ",")
}
