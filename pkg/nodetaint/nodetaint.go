// Package nodetaint makes gpuslice's view of a GPU node visible to
// autoscalers. When gpuslice's Filter turns a GPU node away for a reason that
// only gpuslice sees (its exporter's heartbeat is stale, the MIG manager is
// repartitioning it, no topology was ever published, the topology is
// degraded), Karpenter's and cluster-autoscaler's count-based simulations
// still see free nvidia.com/* allocatable and conclude that a pending GPU pod
// fits there: they nominate the pod to that node and launch nothing, and the
// pod stays pending (kubernetes-sigs/karpenter#2030, #742).
//
// The controller here puts the taint gpuslice.io/gpu-unusable:NoSchedule on
// such a node while the condition lasts and removes it when the node is
// usable again. Both autoscalers simulate taints, so a pending pod that does
// not tolerate it no longer fits the node in their simulation, and they
// provision. The taint adds nothing to the node's capacity and takes nothing
// from it: gpuslice states what it observed, in the one form the autoscalers
// already read, and owns nothing but its own taint key.
package nodetaint

import (
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
)

// Key is the key of the taint gpuslice manages; its value says why
// (a Reason), its effect is NoSchedule.
const Key = "gpuslice.io/gpu-unusable"

// Reasons, the taint's value.
const (
	ReasonNoTopology    = "NoTopology"
	ReasonStale         = "Stale"
	ReasonReconfiguring = "Reconfiguring"
	ReasonUnusable      = "Unusable"
)

// Taint is the taint with the given reason as its value; an empty reason
// gives the bare key, as a NodePool's startup taint lists it.
func Taint(reason string) v1.Taint {
	return v1.Taint{Key: Key, Value: reason, Effect: v1.TaintEffectNoSchedule}
}

// Status is gpuslice's view of one node.
type Status struct {
	// Usable is true when gpuslice may place GPU pods on the node.
	Usable bool
	// Published is true when the node's exporter has published a topology
	// (valid or not) that gpuslice holds.
	Published bool
	// Reason says why the node is not usable, in words.
	Reason string
}

// reasonOf maps a Status that is not usable to the taint's value.
func reasonOf(s Status) string {
	switch r := strings.ToLower(s.Reason); {
	case !s.Published:
		return ReasonNoTopology
	case strings.Contains(r, "stale") || strings.Contains(r, "no heartbeat"):
		return ReasonStale
	case strings.Contains(r, "reconfiguring"):
		return ReasonReconfiguring
	default:
		return ReasonUnusable
	}
}

// Action is what Decide asks for.
type Action int

const (
	// Keep leaves the node's taints as they are.
	Keep Action = iota
	// Add puts the taint on (or updates its value).
	Add
	// Remove takes the taint off.
	Remove
)

func (a Action) String() string {
	switch a {
	case Add:
		return "Add"
	case Remove:
		return "Remove"
	}
	return "Keep"
}

// Decide says what to do with a node's taint, given gpuslice's view of it:
//   - nodes that are not GPU nodes (no nvidia.com/* capacity, nothing
//     published, no taint of ours) are left alone;
//   - a usable node loses the taint;
//   - an unusable node gets it, with the reason as its value — but not in
//     its first `grace` after creation: a node that is coming up (its
//     exporter not yet published, its first heartbeat not yet seen) must not
//     make the autoscaler launch a second node for the pods it was launched
//     for. A NodePool lists the taint as a startup taint to cover that
//     window instead (Karpenter then ignores it until the node is
//     initialized), and this controller removes it once the node is usable.
//
// It returns the value the taint should have with Add.
func Decide(node *v1.Node, s Status, now time.Time, grace time.Duration) (Action, string) {
	cur, has := find(node)
	if !has && !s.Published && !hasGPUResource(node) {
		return Keep, ""
	}
	if s.Usable {
		if has {
			return Remove, ""
		}
		return Keep, ""
	}
	reason := reasonOf(s)
	if now.Sub(node.CreationTimestamp.Time) < grace {
		return Keep, ""
	}
	if has && cur.Value == reason && cur.Effect == v1.TaintEffectNoSchedule {
		return Keep, ""
	}
	return Add, reason
}

func find(node *v1.Node) (v1.Taint, bool) {
	for _, t := range node.Spec.Taints {
		if t.Key == Key {
			return t, true
		}
	}
	return v1.Taint{}, false
}

// hasGPUResource reports whether the node advertises an NVIDIA device
// plugin resource.
func hasGPUResource(node *v1.Node) bool {
	for _, l := range []v1.ResourceList{node.Status.Capacity, node.Status.Allocatable} {
		for name := range l {
			if strings.HasPrefix(string(name), "nvidia.com/") {
				return true
			}
		}
	}
	return false
}

// apply returns the node's taints after the action (and whether they
// changed).
func apply(taints []v1.Taint, a Action, reason string) ([]v1.Taint, bool) {
	out := make([]v1.Taint, 0, len(taints)+1)
	changed := false
	found := false
	for _, t := range taints {
		if t.Key != Key {
			out = append(out, t)
			continue
		}
		switch a {
		case Remove:
			changed = true
		case Add:
			if found {
				changed = true // a duplicate of ours: drop it
				continue
			}
			found = true
			want := Taint(reason)
			if t.Value != want.Value || t.Effect != want.Effect || t.TimeAdded != nil {
				changed = true
			}
			out = append(out, want)
		default:
			out = append(out, t)
		}
	}
	if a == Add && !found {
		out = append(out, Taint(reason))
		changed = true
	}
	return out, changed
}
