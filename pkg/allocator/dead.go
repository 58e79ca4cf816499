package allocator

import (
	"cmp"
	"slices"
	"sync"
)

// Dead space. The class-by-class stranding of fragmentationGain asks
// what the next pod can use, and sliverGain charges pieces that almost no
// pod fits. Neither sees what becomes of a gap as pods keep coming: a
// 0.53-GPU gap beside a 0.47-GPU pod is soon filled by another 0.47 pod,
// leaving 0.06, but a 0.32 pod put there leaves 0.21, which on the openb
// trace only the rare pods of 0.16 GPU or less fit. The stranding charges
// that 0.32 pod less than opening an untouched GPU, whose 0.68 gap strands
// more for the next pod, although 0.65 and 0.32 pods fill it to a few
// hundredths; the sliver term charges neither (0.21 is no sliver).
//
// deadGain weighs instead how much capacity each free piece will leave idle
// for good once pods of the mix fill it: the dead space of a piece of f
// free replicas is f when no class of the mix fits it, and otherwise the
// mean dead space of what is left after one pod of a class that fits, the
// classes weighed by their share of the pods. A piece is filled by pods
// of the classes that fit it in proportion to how often they come; that
// the scheduler picks the best fitting among them is left out, so the
// figure errs on the idle side. The placement's term is the change in the
// dead space of the devices it takes from.

// deadTables caches a mix's dead-space tables per shared resource and
// replica count. One mix is built per scheduling cycle and shared by the
// cycle's scoring goroutines.
type deadTables struct {
	mu     sync.RWMutex
	tables map[deadKey][]float64
}

type deadKey struct {
	res      string
	replicas int32
}

// maxDeadReplicas bounds the replica counts tabulated: devices split more
// ways than this get no dead-space term.
const maxDeadReplicas = 4096

// deadTable returns, for a device of resource res split into replicas
// replicas, the dead space of each piece of 0..replicas free replicas, in
// replicas. Classes that ask for the whole device or more (whole GPUs,
// several GPUs) take a whole free device. nil when no class of the mix asks
// for res alone, or replicas is out of range.
func (m *Mix) deadTable(res string, replicas int32) []float64 {
	if m == nil || replicas <= 0 || replicas > maxDeadReplicas {
		return nil
	}
	if m.dead == nil {
		return buildDeadTable(m, res, replicas)
	}
	k := deadKey{res, replicas}
	m.dead.mu.RLock()
	t, ok := m.dead.tables[k]
	m.dead.mu.RUnlock()
	if ok {
		return t
	}
	m.dead.mu.Lock()
	defer m.dead.mu.Unlock()
	if t, ok := m.dead.tables[k]; ok {
		return t
	}
	t = buildDeadTable(m, res, replicas)
	if m.dead.tables == nil {
		m.dead.tables = map[deadKey][]float64{}
	}
	m.dead.tables[k] = t
	return t
}

// deadSize is the summed weight of the mix's classes of one size.
type deadSize struct {
	n int32
	w float64
}

func buildDeadTable(m *Mix, res string, replicas int32) []float64 {
	byN := map[int32]float64{}
	for i := range m.Classes {
		c := &m.Classes[i]
		if len(c.Resources) != 1 || c.Resources[0].Name != res || c.Resources[0].Count <= 0 || !(c.Weight > 0) {
			continue
		}
		byN[int32(min(c.Resources[0].Count, int(replicas)))] += c.Weight
	}
	if len(byN) == 0 {
		return nil
	}
	sizes := make([]deadSize, 0, len(byN))
	for n, w := range byN {
		sizes = append(sizes, deadSize{n, w})
	}
	// Smallest first: the classes that fit a piece are a prefix.
	slices.SortFunc(sizes, func(a, b deadSize) int { return cmp.Compare(a.n, b.n) })
	t := make([]float64, replicas+1)
	for f := int32(1); f <= replicas; f++ {
		sum, wsum := 0.0, 0.0
		for _, s := range sizes {
			if s.n > f {
				break
			}
			sum += s.w * t[f-s.n]
			wsum += s.w
		}
		if wsum == 0 {
			t[f] = float64(f)
			continue
		}
		t[f] = sum / wsum
	}
	return t
}

// deadGain is w times how much the placement (taking deltas) lowers the
// dead space of the node's shared devices, in GPU-equivalents: negative
// when it leaves a piece that will idle more than the one it took from.
// 0 when w is 0 or the mix names no class of the device's resource.
func (v freeView) deadGain(w float64, mix *Mix) float64 {
	if w == 0 || mix == nil {
		return 0
	}
	g := 0.0
	for i, d := range v.units {
		u := &v.s.node.units[d.unit]
		if !u.shared {
			continue
		}
		t := mix.deadTable(v.s.node.resources[u.res].name, u.replicas)
		if t == nil {
			continue
		}
		before := v.s.unitFree(d.unit, v.units[:i])
		after := before - d.count
		if after < 0 || before > u.replicas {
			continue
		}
		g += (t[before] - t[after]) * u.weight
	}
	return w * g
}
