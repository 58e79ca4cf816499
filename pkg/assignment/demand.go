package assignment

import (
	"encoding/json"
	"fmt"
	"maps"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// DemandAnnotation is the key of the annotation with which the scheduler
// tells gpuslice-repartitioner that a pending pod waits for want of a MIG
// profile: its last failed scheduling cycle found a MIG node of a model
// that offers the profile which turned the pod away only because too few
// instances of it were free (every other filter passed, every non-MIG
// resource of the pod fitted). A pending pod without it is not MIG demand,
// whatever its PodScheduled condition says.
//
// The scheduler writes it from a background queue, only when the content
// changes, and removes it from a pod that is still pending but no longer
// waits for a profile; it leaves it on a pod once bound (the repartitioner
// only reads pending pods), which spares every bound pod a write.
const DemandAnnotation = "gpuslice.io/mig-demand"

// Demand is the content of gpuslice.io/mig-demand.
type Demand struct {
	// Profiles are the MIG profiles the pod lacks, with the number of
	// instances of each it asks for (effective request: what the pod needs
	// at once), e.g. {"3g.20gb": 1}.
	Profiles map[string]int `json:"profiles"`
	// Since is when the scheduler first saw the pod wait for a profile
	// (RFC 3339, seconds).
	Since time.Time `json:"since"`
}

// Equal reports whether d and o say the same.
func (d *Demand) Equal(o *Demand) bool {
	if d == nil || o == nil {
		return d == o
	}
	return d.Since.Equal(o.Since) && maps.Equal(d.Profiles, o.Profiles)
}

// Encode returns the annotation value (Since truncated to seconds).
func (d *Demand) Encode() (string, error) {
	c := Demand{Profiles: d.Profiles, Since: d.Since.UTC().Truncate(time.Second)}
	b, err := json.Marshal(&c)
	return string(b), err
}

// DecodeDemand parses an annotation value, rejecting malformed content: no
// profile, an empty profile name, a count below 1, no time.
func DecodeDemand(value string) (*Demand, error) {
	var d Demand
	if err := json.Unmarshal([]byte(value), &d); err != nil {
		return nil, fmt.Errorf("annotation %s: %w", DemandAnnotation, err)
	}
	if len(d.Profiles) == 0 {
		return nil, fmt.Errorf("annotation %s: no profile", DemandAnnotation)
	}
	for p, n := range d.Profiles {
		if p == "" || n < 1 {
			return nil, fmt.Errorf("annotation %s: bad entry %q: %d (want a profile and a count of at least 1)", DemandAnnotation, p, n)
		}
	}
	if d.Since.IsZero() {
		return nil, fmt.Errorf("annotation %s: no since", DemandAnnotation)
	}
	return &d, nil
}

// DemandFromPod returns the pod's MIG demand: nil without error when the
// pod has none, an error when the annotation is malformed.
func DemandFromPod(pod *v1.Pod) (*Demand, error) {
	v, ok := pod.Annotations[DemandAnnotation]
	if !ok {
		return nil, nil
	}
	return DecodeDemand(v)
}

// DemandPatchFor is the merge patch that sets the pod's MIG demand to d, or
// removes the annotation when d is nil, with the same UID precondition as
// Assignment.PatchFor.
func DemandPatchFor(uid types.UID, d *Demand) ([]byte, error) {
	var value any // JSON null removes the key in a merge patch
	if d != nil {
		v, err := d.Encode()
		if err != nil {
			return nil, err
		}
		value = v
	}
	return json.Marshal(map[string]any{"metadata": map[string]any{"uid": uid, "annotations": map[string]any{DemandAnnotation: value}}})
}
