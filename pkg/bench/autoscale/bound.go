package autoscale

import (
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/gpuslice/gpuslice/pkg/autoscale/instancetypes"
	"github.com/gpuslice/gpuslice/pkg/autoscale/workload"
)

// Bound is a lower bound on the GPU node-hours (and the dollars of those
// nodes) any scheduler and autoscaler can reach on a workload: at every
// instant, for each instance type, the fewest of its nodes that advertise
// enough of each resource the running pods ask for (per resource, the pods'
// demand divided by what one node advertises, rounded up; the type's count
// is the largest of those). It is the fluid bound: pods are repacked for
// free at every instant, nodes come and go instantly (no launch time, no
// consolidateAfter), every pod runs from the moment it is asked for, and a
// resource goes to the type that advertises the most of it per node (the
// built-in types offer each resource the workload asks for on one type).
// No placement policy, with or without evictions, does better; the gap
// between a run and the bound is what placement, provisioning and
// consolidation leave on the table.
type Bound struct {
	NodeHours, Dollars float64
}

// LowerBound computes the Bound of the events over the compressed day plus
// tail, scaled to a 24-hour day as the runs are.
func LowerBound(set *instancetypes.Set, events []workload.Event, day, tail time.Duration) (Bound, error) {
	if day <= 0 {
		return Bound{}, fmt.Errorf("day must be positive, got %s", day)
	}
	type change struct {
		at    time.Duration
		res   string
		delta int
	}
	var changes []change
	replicas := map[string]int{}
	per := map[string]workload.Event{} // a workload's create event
	for _, e := range events {
		switch e.Action {
		case workload.Create:
			if e.Count <= 0 || e.Replicas < 0 {
				return Bound{}, fmt.Errorf("%s: %d pods of %d %s", e.Name, e.Replicas, e.Count, e.Resource)
			}
			per[e.Name] = e
			n := e.Replicas * e.Count
			changes = append(changes, change{e.At, e.Resource, n})
			if e.Kind == workload.Batch {
				changes = append(changes, change{e.At + e.RunFor, e.Resource, -n})
				continue
			}
			replicas[e.Name] = e.Replicas
		case workload.Scale, workload.Delete:
			c, ok := per[e.Name]
			if !ok || c.Kind == workload.Batch {
				continue // a Job ends on its own
			}
			want := e.Replicas
			if e.Action == workload.Delete {
				want = 0
			}
			changes = append(changes, change{e.At, c.Resource, (want - replicas[e.Name]) * c.Count})
			replicas[e.Name] = want
		}
	}
	sort.SliceStable(changes, func(i, j int) bool { return changes[i].at < changes[j].at })

	// The type serving each resource: the most of it per node.
	serve := map[string]*instancetypes.Resolved{}
	for _, t := range set.Types() {
		for r, n := range t.Advertised {
			if cur := serve[r]; n > 0 && (cur == nil || n > cur.Advertised[r] || (n == cur.Advertised[r] && t.Price.USDPerHour < cur.Price.USDPerHour)) {
				serve[r] = t
			}
		}
	}
	demand := map[string]int{}
	nodesNow := func() (nodes, usdPerHour float64, err error) {
		need := map[*instancetypes.Resolved]int{}
		for r, d := range demand {
			if d <= 0 {
				continue
			}
			t := serve[r]
			if t == nil {
				return 0, 0, fmt.Errorf("no instance type advertises %s", r)
			}
			need[t] = max(need[t], int(math.Ceil(float64(d)/float64(t.Advertised[r]))))
		}
		for t, n := range need {
			nodes += float64(n)
			usdPerHour += float64(n) * t.Price.USDPerHour
		}
		return nodes, usdPerHour, nil
	}
	end := day + tail
	scale := float64(24*time.Hour) / float64(day)
	var b Bound
	prev := time.Duration(0)
	for i := 0; i <= len(changes) && prev < end; i++ {
		at := end
		if i < len(changes) {
			at = min(changes[i].at, end)
		}
		nodes, usd, err := nodesNow()
		if err != nil {
			return Bound{}, err
		}
		hours := (at - prev).Hours() * scale
		b.NodeHours += nodes * hours
		b.Dollars += usd * hours
		prev = at
		if i < len(changes) {
			demand[changes[i].res] += changes[i].delta
		}
	}
	return b, nil
}
