// Package workload generates a seeded, reproducible GPU workload that comes
// and goes over a compressed day: inference Deployments on MIG slices
// scaling with a diurnal curve, batch Jobs of MIG slices and whole GPUs
// arriving at random and running for a while, and notebooks on time-sliced
// GPUs opened and closed. It only says what happens when; a runner turns the
// events into API objects.
package workload

import (
	"errors"
	"fmt"
	"math"
	"math/rand"
	"sort"
	"time"
)

// Kind is the kind of a workload.
type Kind string

const (
	Inference Kind = "inference" // a Deployment that scales
	Batch     Kind = "batch"     // a Job whose pods run for a while
	Notebook  Kind = "notebook"  // a one-replica Deployment, opened and closed
)

// Action is what an event does to its workload.
type Action string

const (
	Create Action = "create" // create it (Replicas pods; a Job's run for RunFor)
	Scale  Action = "scale"  // set a Deployment's replicas
	Delete Action = "delete" // delete it
)

// Event is one change, At after the start of the day.
type Event struct {
	At     time.Duration
	Kind   Kind
	Name   string
	Action Action
	// Replicas: pods of the Deployment, or parallel pods of the Job.
	Replicas int
	// Resource and Count are what each pod asks for.
	Resource string
	Count    int
	// RunFor is how long a Job's pods run.
	RunFor time.Duration
}

// Options shape the day.
type Options struct {
	Seed int64
	// Day is the length of the compressed day.
	Day time.Duration
	// Inference Deployments, each peaking at 2..MaxReplicas pods at midday
	// and down to a tenth (at least 1) at night; they are re-scaled Steps
	// times a day.
	Inference, MaxReplicas, Steps int
	// Jobs arrive uniformly over the day and run for Day/16..Day/4.
	Jobs int
	// Notebooks open uniformly over the day and stay Day/8..Day/3.
	Notebooks int
}

// Default is the workload of make demo-autoscale.
func Default(seed int64, day time.Duration) Options {
	return Options{Seed: seed, Day: day, Inference: 12, MaxReplicas: 12, Steps: 12, Jobs: 20, Notebooks: 36}
}

func (o Options) validate() error {
	switch {
	case o.Day < time.Second:
		return fmt.Errorf("day %s too short", o.Day)
	case o.Inference < 0 || o.Jobs < 0 || o.Notebooks < 0:
		return errors.New("negative workload count")
	case o.Inference > 0 && (o.MaxReplicas < 2 || o.Steps < 2):
		return fmt.Errorf("inference needs maxReplicas >= 2 and steps >= 2 (got %d, %d)", o.MaxReplicas, o.Steps)
	}
	return nil
}

// Inference and batch request shapes: MIG slices of an A100-40GB (the
// p4d.24xlarge type, mig-parted all-balanced), whole GPUs, time-sliced
// replicas.
var (
	inferenceResources = []string{"nvidia.com/mig-1g.5gb", "nvidia.com/mig-2g.10gb"}
	batchShapes        = []struct {
		resource string
		count    int
	}{{"nvidia.com/mig-3g.20gb", 1}, {"nvidia.com/gpu", 1}, {"nvidia.com/gpu", 2}}
	notebookResource = "nvidia.com/gpu.shared"
)

// Replicas is the diurnal curve: peak at midday, a tenth of it (at least 1)
// at midnight.
func Replicas(peak int, at, day time.Duration) int {
	phase := float64(at%day) / float64(day)
	level := 0.1 + 0.9*0.5*(1-math.Cos(2*math.Pi*phase))
	return max(1, int(math.Round(float64(peak)*level)))
}

// Generate returns the day's events, sorted by time (ties in a fixed order).
// The same options give the same events.
func Generate(o Options) ([]Event, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewSource(o.Seed))
	var out []Event
	for i := 0; i < o.Inference; i++ {
		name := fmt.Sprintf("infer-%d", i)
		peak := 2 + rng.Intn(o.MaxReplicas-1)
		res := inferenceResources[rng.Intn(len(inferenceResources))]
		// Each service's curve is shifted a little, as traffic of different
		// services does not peak at the same minute.
		shift := time.Duration(rng.Int63n(int64(o.Day / time.Duration(o.Steps))))
		last := Replicas(peak, shift, o.Day)
		out = append(out, Event{At: 0, Kind: Inference, Name: name, Action: Create, Replicas: last, Resource: res, Count: 1})
		for s := 1; s < o.Steps; s++ {
			at := o.Day * time.Duration(s) / time.Duration(o.Steps)
			r := Replicas(peak, at+shift, o.Day)
			if r != last {
				out = append(out, Event{At: at, Kind: Inference, Name: name, Action: Scale, Replicas: r})
				last = r
			}
		}
	}
	for i := 0; i < o.Jobs; i++ {
		shape := batchShapes[rng.Intn(len(batchShapes))]
		at := time.Duration(rng.Int63n(int64(o.Day * 3 / 4)))
		run := o.Day/16 + time.Duration(rng.Int63n(int64(o.Day/4-o.Day/16)))
		out = append(out, Event{At: at, Kind: Batch, Name: fmt.Sprintf("job-%d", i), Action: Create, Replicas: 1 + rng.Intn(2), Resource: shape.resource, Count: shape.count, RunFor: run})
	}
	for i := 0; i < o.Notebooks; i++ {
		at := time.Duration(rng.Int63n(int64(o.Day * 3 / 4)))
		stay := o.Day/8 + time.Duration(rng.Int63n(int64(o.Day/3-o.Day/8)))
		name := fmt.Sprintf("notebook-%d", i)
		out = append(out, Event{At: at, Kind: Notebook, Name: name, Action: Create, Replicas: 1, Resource: notebookResource, Count: 1})
		if end := at + stay; end < o.Day {
			out = append(out, Event{At: end, Kind: Notebook, Name: name, Action: Delete})
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].At != out[j].At {
			return out[i].At < out[j].At
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}
