package repartition

import (
	"fmt"
	"sort"

	"github.com/gpuslice/gpuslice/pkg/allocator"
	"github.com/gpuslice/gpuslice/pkg/topology"
)

// verify builds the node's proposed topology and checks it the way the
// scheduler would: it compiles (topology validation included), every
// allocated device is still advertised where it was, no changed GPU held a
// device, and each pod the plan claims to serve passes allocator.Check (what
// the GPUSlice Filter runs) once the pods before it are placed.
func (p *Planner) verify(nw *nodeWork, residual []pending) (*NodePlan, error) {
	t := nw.topo
	prop := *t
	prop.GPUs = make([]topology.GPU, len(t.GPUs))
	copy(prop.GPUs, t.GPUs)
	np := &NodePlan{Node: t.Name, Layout: map[int]map[string]int{}}
	positions := make([]int, 0, len(nw.changed))
	for gi := range nw.changed {
		positions = append(positions, gi)
	}
	sort.Ints(positions)
	for _, gi := range positions {
		l := nw.changed[gi]
		g := &prop.GPUs[gi]
		if nw.busy[gi] {
			return nil, fmt.Errorf("node %s: GPU %d holds an allocated device; not changed", t.Name, g.Index)
		}
		if !g.MIGEnabled {
			return nil, fmt.Errorf("node %s: GPU %d has MIG disabled; a layout change would change the mode", t.Name, g.Index)
		}
		from := topology.Counts(g.Instances)
		g.Instances = make([]topology.GPUInstance, len(l.instances))
		for i, in := range l.instances {
			in.DeviceID = fmt.Sprintf("MIG-planned-%s-%d-%d", t.Name, g.Index, i)
			g.Instances[i] = in
		}
		np.Changes = append(np.Changes, Change{GPU: g.Index, UUID: g.UUID, Product: g.Product, From: from, To: l.counts,
			Instances: append([]topology.GPUInstance(nil), l.instances...)})
	}
	for gi := range prop.GPUs {
		if g := &prop.GPUs[gi]; g.MIGEnabled {
			np.Layout[g.Index] = topology.Counts(g.Instances)
		}
	}
	cn, err := allocator.Compile(&prop, p.cat, topology.PolicyDistributed)
	if err != nil {
		return nil, fmt.Errorf("node %s: proposed layout rejected: %w", t.Name, err)
	}
	st := allocator.NewState(cn)
	if err := st.Apply(nw.in.Allocated); err != nil {
		return nil, fmt.Errorf("node %s: proposed layout drops an allocated device: %w", t.Name, err)
	}
	if err := st.Apply(nw.virtual); err != nil {
		return nil, fmt.Errorf("node %s: proposed layout drops a device pending pods fit on now: %w", t.Name, err)
	}
	for _, ri := range nw.serves {
		pd := residual[ri]
		pl, v := st.Place(pd.req)
		if !v.OK() {
			return nil, fmt.Errorf("node %s: proposed layout does not pass Filter for %s: %s", t.Name, pd.d.Pod, v.Reason())
		}
		if err := st.Apply(pl.Devices()); err != nil {
			return nil, fmt.Errorf("node %s: %w", t.Name, err)
		}
		np.Serves = append(np.Serves, pd.d.Pod)
	}
	np.Proposed = &prop
	return np, nil
}
