package repartition

import (
	"sort"
	"strconv"

	"github.com/gpuslice/gpuslice/pkg/allocator"
	"github.com/gpuslice/gpuslice/pkg/topology"
)

// layout is one set of counts that largest-first creation builds on a model.
type layout struct {
	key       string // topology.FormatCounts
	counts    map[string]int
	instances []topology.GPUInstance
}

// buildableLayouts lists the layouts of a model worth asking MIG manager
// for: counts of the model's profiles (media-extension profiles left out)
// that largest-first creation builds, and that are maximal: no instance
// can be added that creation still builds. A non-maximal layout only
// leaves memory slices that no pod can use. Sorted by key.
func buildableLayouts(m *topology.Model) []layout {
	var profiles []*topology.Profile
	for i := range m.Profiles {
		if !m.Profiles[i].MediaExtensions {
			profiles = append(profiles, &m.Profiles[i])
		}
	}
	builds := func(c map[string]int) ([]topology.GPUInstance, bool) {
		in, err := m.CreateLargestFirst(c)
		return in, err == nil
	}
	var out []layout
	counts := map[string]int{}
	var rec func(i, compute, memory int)
	rec = func(i, compute, memory int) {
		if i == len(profiles) {
			if compute == 0 {
				return
			}
			in, ok := builds(counts)
			if !ok {
				return
			}
			for _, p := range profiles {
				counts[p.Name]++
				_, more := builds(counts)
				counts[p.Name]--
				if more {
					return
				}
			}
			c := make(map[string]int, len(counts))
			for k, v := range counts {
				if v > 0 {
					c[k] = v
				}
			}
			out = append(out, layout{key: topology.FormatCounts(c), counts: c, instances: in})
			return
		}
		p := profiles[i]
		for n := 0; n <= p.MaxInstances; n++ {
			if compute+n*p.ComputeSlices > m.ComputeSlices || memory+n*p.MemorySlices > m.MemorySlices {
				break
			}
			counts[p.Name] = n
			rec(i+1, compute+n*p.ComputeSlices, memory+n*p.MemorySlices)
		}
		counts[p.Name] = 0
	}
	rec(0, 0, 0)
	sort.Slice(out, func(i, j int) bool { return out[i].key < out[j].key })
	return out
}

// oneGPUNode is a node of one MIG-enabled GPU of the product with the given
// instances, under sharing settings ts (nil: none).
func oneGPUNode(product string, memMiB int64, instances []topology.GPUInstance, ts *topology.TimeSlicing) *topology.Node {
	g := topology.GPU{UUID: "GPU-planned", Product: product, MemoryMiB: memMiB, Healthy: true, MIGEnabled: true}
	for i, in := range instances {
		in.DeviceID = "MIG-planned-" + strconv.Itoa(i)
		g.Instances = append(g.Instances, in)
	}
	return &topology.Node{Name: "planned", MIGStrategy: topology.MIGStrategyMixed, TimeSlicing: ts, GPUs: []topology.GPU{g}}
}

// strandedForMix is the free capacity, in GPU-equivalents, that the mix's
// classes are expected not to be able to use on an empty GPU with these
// instances: the sum over classes of weight × (free − what the class can
// take), read with the allocator's fragmentation-aware model. 0 without a
// mix.
func strandedForMix(cat *topology.Catalog, product string, instances []topology.GPUInstance, mix *allocator.Mix) float64 {
	if mix == nil || len(mix.Classes) == 0 {
		return 0
	}
	cn, err := allocator.Compile(oneGPUNode(product, 0, instances, nil), cat, topology.PolicyDistributed)
	if err != nil {
		return 0
	}
	sup := allocator.NewSupply(mix)
	allocator.NewState(cn).AddSupply(sup, mix, allocator.HostFit{})
	s := 0.0
	for i := range mix.Classes {
		s += mix.Classes[i].Weight * (sup.Free - sup.Capacity[i])
	}
	return s
}

// strandCache memoises strandedForMix over one planning round (the mix
// does not change within it), by product and layout key.
type strandCache struct {
	cat *topology.Catalog
	mix *allocator.Mix
	m   map[string]float64
}

func newStrandCache(cat *topology.Catalog, mix *allocator.Mix) *strandCache {
	return &strandCache{cat: cat, mix: mix, m: map[string]float64{}}
}

// stranded is strandedForMix of the instances, whose counts' key is key.
func (c *strandCache) stranded(product, key string, instances []topology.GPUInstance) float64 {
	k := product + "|" + key
	if v, ok := c.m[k]; ok {
		return v
	}
	v := strandedForMix(c.cat, product, instances, c.mix)
	c.m[k] = v
	return v
}
