package workload

import (
	"reflect"
	"testing"
	"time"
)

func TestGenerateIsSeededAndWellFormed(t *testing.T) {
	o := Default(42, 10*time.Minute)
	a, err := Generate(o)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Generate(o)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("same seed, different events")
	}
	o2 := o
	o2.Seed = 43
	if c, _ := Generate(o2); reflect.DeepEqual(a, c) {
		t.Fatal("another seed, same events")
	}
	created := map[string]Event{}
	replicas := map[string]int{}
	var last time.Duration
	kinds := map[Kind]int{}
	for _, e := range a {
		if e.At < last || e.At >= o.Day {
			t.Fatalf("event %+v out of order or outside the day", e)
		}
		last = e.At
		switch e.Action {
		case Create:
			if _, dup := created[e.Name]; dup {
				t.Fatalf("%s created twice", e.Name)
			}
			if e.Replicas < 1 || e.Count < 1 || e.Resource == "" {
				t.Fatalf("bad create %+v", e)
			}
			if e.Kind == Batch && (e.RunFor < o.Day/16 || e.RunFor > o.Day/4) {
				t.Fatalf("job runs %s", e.RunFor)
			}
			created[e.Name] = e
			kinds[e.Kind]++
			replicas[e.Name] = e.Replicas
		case Scale:
			c, ok := created[e.Name]
			if !ok || c.Kind != Inference || e.Replicas < 1 || e.Replicas == replicas[e.Name] {
				t.Fatalf("bad scale %+v (created %v, was %d)", e, ok, replicas[e.Name])
			}
			replicas[e.Name] = e.Replicas
		case Delete:
			if c, ok := created[e.Name]; !ok || c.Kind != Notebook {
				t.Fatalf("delete of %s before or without its creation", e.Name)
			}
		}
	}
	if kinds[Inference] != o.Inference || kinds[Batch] != o.Jobs || kinds[Notebook] != o.Notebooks {
		t.Fatalf("kinds %v", kinds)
	}
}

func TestReplicasCurve(t *testing.T) {
	day := 24 * time.Hour
	for _, tc := range []struct {
		peak int
		at   time.Duration
		want int
	}{
		{8, 0, 1},              // midnight: a tenth, at least one
		{8, 12 * time.Hour, 8}, // midday: the peak
		{20, 0, 2},
		{8, 6 * time.Hour, 4},  // morning: half way (0.55 * 8 = 4.4)
		{8, 36 * time.Hour, 8}, // the curve repeats daily
	} {
		if got := Replicas(tc.peak, tc.at, day); got != tc.want {
			t.Errorf("Replicas(%d, %s) = %d, want %d", tc.peak, tc.at, got, tc.want)
		}
	}
}

func TestGenerateRejectsBadOptions(t *testing.T) {
	for _, o := range []Options{{Day: 0}, {Day: time.Minute, Jobs: -1}, {Day: time.Minute, Inference: 1, MaxReplicas: 1, Steps: 4}} {
		if _, err := Generate(o); err == nil {
			t.Errorf("%+v: no error", o)
		}
	}
}
