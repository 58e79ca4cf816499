// Package deletioncost keeps the pod-deletion-cost annotation of the
// ReplicaSet-owned pods gpuslice placed in line with how full their node's
// GPUs are.
//
// When a Deployment scales down, the ReplicaSet controller chooses which
// replicas to delete. Without a deletion cost it prefers pods on nodes that
// hold more of its replicas, which spreads the survivors and undoes
// gpuslice's packing: no GPU node ever empties and a WhenEmpty autoscaler
// removes none. Kubernetes' documented answer is the
// controller.kubernetes.io/pod-deletion-cost annotation (lower cost is
// deleted first, compared before the co-location rank). This package writes
// it as the fill of the pod's node, so replicas on the least-used GPU nodes
// go first. It does not override anything: the ReplicaSet controller still
// decides, and a value set by someone else is left alone.
package deletioncost

import (
	"math"
	"strconv"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gpuslice/gpuslice/pkg/assignment"
)

// Annotation is Kubernetes' pod-deletion-cost annotation.
const Annotation = "controller.kubernetes.io/pod-deletion-cost"

// Bucket is the step of the costs written: fill is rounded to a multiple of
// Bucket/1000, so a node's fill must move by about 5 % before its pods are
// written again (no write storm), and a value that is not a multiple of
// Bucket in [0, Max] was not written by us.
const Bucket = 50

// Max is the cost of a pod on a node whose GPUs are all in use.
const Max = 1000

// Cost is the deletion cost of a pod on a node whose GPUs are fill full
// (GPU-equivalents in use ÷ healthy total): round(fill × 1000) to the
// nearest Bucket, clamped to [0, Max]. NaN is 0.
func Cost(fill float64) int {
	if math.IsNaN(fill) || fill <= 0 {
		return 0
	}
	if fill >= 1 {
		return Max
	}
	return int(math.Round(fill*Max/Bucket)) * Bucket
}

// Fill is used ÷ capacity, 0 when there is no capacity.
func Fill(used, capacity float64) float64 {
	if capacity <= 0 {
		return 0
	}
	return used / capacity
}

// Ours reports whether value is one this package would have written.
func Ours(value string) bool {
	v, err := strconv.Atoi(value)
	return err == nil && v >= 0 && v <= Max && v%Bucket == 0 && strconv.Itoa(v) == value
}

// Action is what Decide asks for.
type Action int

const (
	// Skip: the pod is not ours to annotate (or not yet).
	Skip Action = iota
	// Keep: the annotation already has the wanted value.
	Keep
	// Write: set the annotation to the wanted value.
	Write
)

// Decide says what to do with one pod given the fill of its node (known is
// false when gpuslice has no view of the node). Only a pod that gpuslice
// placed (it carries the gpuslice.io/assignment annotation), that is bound,
// not terminating and owned by a ReplicaSet is annotated, and only when its
// current deletion cost is absent or one we would have written: a cost set
// by a user or another controller is never touched.
func Decide(pod *v1.Pod, fill float64, known bool) (Action, string) {
	if pod.Spec.NodeName == "" || pod.DeletionTimestamp != nil || !known {
		return Skip, ""
	}
	if _, ok := pod.Annotations[assignment.Annotation]; !ok {
		return Skip, ""
	}
	if !ownedByReplicaSet(pod) {
		return Skip, ""
	}
	want := strconv.Itoa(Cost(fill))
	cur, set := pod.Annotations[Annotation]
	switch {
	case !set:
		return Write, want
	case !Ours(cur):
		return Skip, ""
	case cur == want:
		return Keep, want
	}
	return Write, want
}

func ownedByReplicaSet(pod *v1.Pod) bool {
	ref := metav1.GetControllerOf(pod)
	return ref != nil && ref.Kind == "ReplicaSet" && (ref.APIVersion == "apps/v1" || ref.APIVersion == "extensions/v1beta1")
}
