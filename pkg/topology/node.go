package topology

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Unit is one device the NVIDIA device plugin advertises, before time-slicing
// splits it into replicas: a whole GPU or a MIG device.
type Unit struct {
	// Resource is the advertised extended-resource name (after any rename).
	Resource string
	// BaseResource is the name before time-slicing renamed it.
	BaseResource string
	// GPU is the position of the physical GPU in Node.GPUs.
	GPU int
	// Instance is the position in GPU.Instances, or -1 for a whole GPU.
	Instance int
	// DeviceID is the ID the plugin advertises, without a replica suffix.
	DeviceID string
	// Replicas is the time-slicing replica count; 1 when not shared.
	Replicas int
	// Shared is true when the plugin advertises replica IDs "<id>::<n>".
	Shared bool
	// Healthy is false when the physical GPU is unhealthy: the kubelet hands
	// out none of its devices.
	Healthy bool
}

// Validate checks a node against the catalog and the device plugin's rules.
// It returns every problem found, each naming the GPU or setting at fault.
func (n *Node) Validate(cat *Catalog) error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	switch n.MIGStrategy {
	case "", MIGStrategyNone, MIGStrategySingle, MIGStrategyMixed:
	default:
		add("unknown MIG strategy %q (want none, single or mixed)", n.MIGStrategy)
	}
	switch n.AllocationPolicy {
	case "", PolicyDistributed, PolicyPacked, PolicySpread:
	default:
		add("unknown allocation policy %q (want distributed, packed or spread)", n.AllocationPolicy)
	}
	switch n.DeviceIDStrategy {
	case "", DeviceIDUUID, DeviceIDIndex:
	default:
		add("unknown device ID strategy %q (want uuid or index)", n.DeviceIDStrategy)
	}

	uuids := map[string]int{}
	indexes := map[int]int{}
	migIDs := map[string]string{}
	singleProfile := ""
	migGPUs := 0
	for i := range n.GPUs {
		g := &n.GPUs[i]
		where := fmt.Sprintf("gpu %d", g.Index)
		if g.UUID == "" {
			add("%s: empty UUID", where)
		} else if j, dup := uuids[g.UUID]; dup {
			add("%s: UUID %s also used by gpu %d", where, g.UUID, n.GPUs[j].Index)
		} else {
			uuids[g.UUID] = i
		}
		if g.Index < 0 {
			add("%s: negative index", where)
		} else if j, dup := indexes[g.Index]; dup {
			add("%s: index also used by GPU %s", where, n.GPUs[j].UUID)
		} else {
			indexes[g.Index] = i
		}
		if !g.MIGEnabled {
			if len(g.Instances) > 0 {
				add("%s: %d GPU instances but MIG is disabled", where, len(g.Instances))
			}
			continue
		}
		migGPUs++
		model, ok := cat.Lookup(g.Product)
		if !ok {
			add("%s: MIG enabled on %q, which has no MIG catalog entry", where, g.Product)
			continue
		}
		if err := model.ValidateLayout(g.Instances); err != nil {
			add("%s: %w", where, err)
		}
		for _, in := range g.Instances {
			if in.DeviceID == "" {
				add("%s: %s@%d has no MIG device ID", where, in.Profile, in.Start)
				continue
			}
			if other, dup := migIDs[in.DeviceID]; dup {
				add("%s: MIG device %s also listed on %s", where, in.DeviceID, other)
			}
			migIDs[in.DeviceID] = where
			if n.MIGStrategy == MIGStrategySingle {
				if singleProfile == "" {
					singleProfile = in.Profile
				} else if in.Profile != singleProfile {
					add("%s: MIG strategy single needs one profile on every GPU, found %s and %s", where, singleProfile, in.Profile)
				}
			}
		}
	}
	if n.MIGStrategy == MIGStrategySingle && migGPUs > 0 && migGPUs < len(n.GPUs) {
		add("MIG strategy single needs MIG on all GPUs or none: %d of %d have MIG enabled", migGPUs, len(n.GPUs))
	}
	if ts := n.TimeSlicing; ts != nil {
		errs = append(errs, ts.validate()...)
	}
	if len(errs) > 0 {
		return fmt.Errorf("node %s: %w", n.Name, errors.Join(errs...))
	}
	if _, err := n.Units(); err != nil {
		return fmt.Errorf("node %s: %w", n.Name, err)
	}
	return nil
}

func (ts *TimeSlicing) validate() []error {
	var errs []error
	seen := map[string]bool{}
	for i, r := range ts.Resources {
		where := fmt.Sprintf("timeSlicing.resources[%d]", i)
		if r.Name != ResourceGPU && !strings.HasPrefix(r.Name, MIGResourcePrefix) {
			errs = append(errs, fmt.Errorf("%s: cannot share %q: only %s and %s<profile> can be time-sliced", where, r.Name, ResourceGPU, MIGResourcePrefix))
		}
		if seen[r.Name] {
			errs = append(errs, fmt.Errorf("%s: %s listed twice", where, r.Name))
		}
		seen[r.Name] = true
		if r.Replicas < 1 {
			errs = append(errs, fmt.Errorf("%s: %s has %d replicas, want at least 1", where, r.Name, r.Replicas))
		}
	}
	return errs
}

// sharing returns the time-slicing entry for a base resource.
func (n *Node) sharing(base string) (name string, replicas int, shared bool) {
	if n.TimeSlicing == nil {
		return base, 1, false
	}
	for _, r := range n.TimeSlicing.Resources {
		if r.Name != base {
			continue
		}
		name = base
		switch {
		case r.Rename != "":
			name = r.Rename
		case n.TimeSlicing.RenameByDefault:
			name = base + SharedSuffix
		}
		return name, max(r.Replicas, 1), true
	}
	return base, 1, false
}

// Units lists the devices the device plugin advertises on this node, in GPU
// order and, within a MIG GPU, in placement order. It fails when two different
// base resources would be advertised under one name.
func (n *Node) Units() ([]Unit, error) {
	order := make([]int, len(n.GPUs))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return n.GPUs[order[a]].Index < n.GPUs[order[b]].Index })

	var units []Unit
	baseOf := map[string]string{}
	emit := func(base string, gi, ii int, id string, healthy bool) error {
		name, replicas, shared := n.sharing(base)
		if prev, ok := baseOf[name]; ok && prev != base {
			return fmt.Errorf("resource %s would advertise both %s and %s devices", name, prev, base)
		}
		baseOf[name] = base
		units = append(units, Unit{Resource: name, BaseResource: base, GPU: gi, Instance: ii, DeviceID: id, Replicas: replicas, Shared: shared, Healthy: healthy})
		return nil
	}
	for _, gi := range order {
		g := &n.GPUs[gi]
		if g.MIGEnabled && n.MIGStrategy != MIGStrategyNone && n.MIGStrategy != "" {
			inst := make([]int, len(g.Instances))
			for i := range inst {
				inst[i] = i
			}
			sort.SliceStable(inst, func(a, b int) bool { return g.Instances[inst[a]].Start < g.Instances[inst[b]].Start })
			for _, ii := range inst {
				in := &g.Instances[ii]
				base := ResourceGPU
				if n.MIGStrategy == MIGStrategyMixed {
					base = MIGResourceName(in.Profile)
				}
				if err := emit(base, gi, ii, in.DeviceID, g.Healthy); err != nil {
					return nil, err
				}
			}
			continue
		}
		id := g.UUID
		if n.DeviceIDStrategy == DeviceIDIndex {
			id = strconv.Itoa(g.Index)
		}
		if err := emit(ResourceGPU, gi, -1, id, g.Healthy); err != nil {
			return nil, err
		}
	}
	return units, nil
}

// Capacity is what the device plugin makes the kubelet report as the node's
// allocatable extended resources: healthy advertised devices per resource,
// replicas counted one by one.
func (n *Node) Capacity() (map[string]int64, error) {
	units, err := n.Units()
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, u := range units {
		if _, ok := out[u.Resource]; !ok {
			out[u.Resource] = 0
		}
		if u.Healthy {
			out[u.Resource] += int64(u.Replicas)
		}
	}
	return out, nil
}
