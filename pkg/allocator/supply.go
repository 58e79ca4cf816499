package allocator

import "math"

// Supply is what a set of nodes (the nodes a scheduling cycle scores, a
// sample of the cluster) offers the classes of a mix: per class, the GPU
// capacity its pods can still take there (slots times a pod's share), and
// the nodes' free GPU capacity, in GPU-equivalents. Scarce compares it with
// each class's expected demand.
type Supply struct {
	Capacity []float64
	Free     float64
}

// NewSupply returns an empty supply for mix's classes.
func NewSupply(mix *Mix) *Supply {
	if mix == nil {
		return &Supply{}
	}
	return &Supply{Capacity: make([]float64, len(mix.Classes))}
}

// AddSupply adds the node's free capacity, and what each class of mix can
// take of it given h, the node's free CPU and memory, to sup (built for the
// same mix).
func (s *State) AddSupply(sup *Supply, mix *Mix, h HostFit) {
	if mix == nil || len(sup.Capacity) != len(mix.Classes) {
		return
	}
	v := freeView{s: s}
	sup.Free += v.total()
	for i := range mix.Classes {
		k, perPod := v.slots(&mix.Classes[i], h)
		sup.Capacity[i] += k * perPod
	}
}

// Scarce returns the mix with each class's weight raised to the chance
// that the class's demand outgrows its supply. A class's weight is its
// share of the pods, the chance that the next pod is of the class: what a
// placement strands for it counts that often. That undervalues classes
// whose places are few. If the free capacity goes to the classes in
// proportion to their demand, class c will ask for Demand×Free more;
// when its supply (Capacity) is short of that, every place the placement
// takes from it is a pod of c that will not fit, whatever the next pod is.
// The chance is (demand/supply)² capped at 1, times beta: close to 0 while
// supply is ample, 1 when it runs short (an empty 8-GPU node, when few are
// left for the 8-GPU pods still to come). beta 0 returns mix itself.
func (m *Mix) Scarce(sup *Supply, beta float64) *Mix {
	if m == nil || beta <= 0 || sup == nil || len(sup.Capacity) != len(m.Classes) || sup.Free <= 0 {
		return m
	}
	out := &Mix{Classes: append([]MixClass(nil), m.Classes...), dead: &deadTables{}}
	for i := range out.Classes {
		c := &out.Classes[i]
		demand := c.Demand * sup.Free
		if demand <= 0 {
			continue
		}
		r := 1.0
		if capacity := sup.Capacity[i]; capacity > demand {
			r = demand / capacity
		}
		c.Weight = math.Max(c.Weight, beta*r*r)
	}
	return out
}
