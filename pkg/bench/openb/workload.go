package openb

import (
	"fmt"
	"math/rand/v2"
	"sort"
)

// Workload is the FGD paper's arrival sequence for one seed: the pod list
// sorted by name, shuffled with the seed, then inflated until the pods'
// total GPU request reaches tune × the cluster's GPU capacity by appending
// copies of random pods of the list, drawn with replacement (a list that
// asks for more is cut once it reaches the target). Pods only
// arrive; none departs. (The paper's Python shuffle cannot be reproduced
// in Go: the sequence for a seed differs, its statistics do not.)
func Workload(pods []Pod, capacityMilli int64, seed int64, tune float64) ([]Pod, error) {
	if len(pods) == 0 {
		return nil, fmt.Errorf("no pods")
	}
	sorted := append([]Pod(nil), pods...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	out := append([]Pod(nil), sorted...)
	rng := rand.New(rand.NewPCG(uint64(seed), 0x6f70656e62))
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	target := int64(tune * float64(capacityMilli))
	total := int64(0)
	gpuPods := 0
	for i := range out {
		if total >= target {
			// A list larger than the target is cut where it is reached.
			out = out[:i]
			break
		}
		total += out[i].GPURequest()
		if out[i].NumGPU > 0 {
			gpuPods++
		}
	}
	if total < target && gpuPods == 0 {
		return nil, fmt.Errorf("cannot inflate to %.0f%% of GPU capacity: no pod asks for a GPU", 100*tune)
	}
	for copyN := 1; total < target; copyN++ {
		p := sorted[rng.IntN(len(sorted))]
		p.Name = fmt.Sprintf("%s-copy%d", p.Name, copyN)
		out = append(out, p)
		total += p.GPURequest()
	}
	return out, nil
}
