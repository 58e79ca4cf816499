package topology

import (
	"strings"
	"testing"
)

func TestCreateLargestFirst(t *testing.T) {
	cat := NewCatalog()
	a40, _ := cat.ModelByName("A100-40GB")
	h80, _ := cat.ModelByName("H100-80GB")
	type inst struct {
		profile string
		start   int
	}
	cases := []struct {
		name    string
		model   *Model
		counts  map[string]int
		want    []inst
		wantErr string
	}{
		{name: "7x1g", model: h80, counts: map[string]int{"1g.10gb": 7},
			want: []inst{{"1g.10gb", 0}, {"1g.10gb", 1}, {"1g.10gb", 2}, {"1g.10gb", 3}, {"1g.10gb", 4}, {"1g.10gb", 5}, {"1g.10gb", 6}}},
		{name: "2x3g", model: h80, counts: map[string]int{"3g.40gb": 2}, want: []inst{{"3g.40gb", 0}, {"3g.40gb", 4}}},
		{name: "3g then 1g fill from 4", model: h80, counts: map[string]int{"3g.40gb": 1, "1g.10gb": 3},
			want: []inst{{"3g.40gb", 0}, {"1g.10gb", 4}, {"1g.10gb", 5}, {"1g.10gb", 6}}},
		// Largest first puts 3g at 0; four 1g then need slice 7, which no
		// 1g.10gb placement reaches: the layout exists (3g at 4) but MIG
		// manager's first attempt does not build it.
		{name: "3g+4x1g not built", model: h80, counts: map[string]int{"3g.40gb": 1, "1g.10gb": 4}, wantErr: "no free start for 1g.10gb"},
		// all-balanced on A100-40GB: 3g at 0, 2g at 4, 1g at 6, second 1g
		// finds nothing (Pack finds 3g at 4, but creation does not).
		{name: "all-balanced A100-40GB", model: a40, counts: map[string]int{"3g.20gb": 1, "2g.10gb": 1, "1g.5gb": 2}, wantErr: "no free start for 1g.5gb"},
		{name: "compute order before memory", model: h80, counts: map[string]int{"2g.20gb": 1, "1g.20gb": 1, "3g.40gb": 1},
			want: []inst{{"3g.40gb", 0}, {"2g.20gb", 4}, {"1g.20gb", 6}}},
		{name: "4g+3g", model: h80, counts: map[string]int{"4g.40gb": 1, "3g.40gb": 1}, want: []inst{{"4g.40gb", 0}, {"3g.40gb", 4}}},
		{name: "two +me", model: h80, counts: map[string]int{"1g.10gb+me": 2}, wantErr: "at most 1"},
		{name: "too many", model: h80, counts: map[string]int{"3g.40gb": 3}, wantErr: "at most 2"},
		{name: "unknown", model: h80, counts: map[string]int{"3g.20gb": 1}, wantErr: "unknown MIG profile"},
		{name: "negative", model: h80, counts: map[string]int{"3g.40gb": -1}, wantErr: "negative"},
		{name: "empty", model: h80, counts: map[string]int{}, want: nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.model.CreateLargestFirst(tc.counts)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to contain %q (got %v)", err, tc.wantErr, got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i].Profile != tc.want[i].profile || got[i].Start != tc.want[i].start {
					t.Fatalf("instance %d = %s@%d, want %s@%d (all %v)", i, got[i].Profile, got[i].Start, tc.want[i].profile, tc.want[i].start, got)
				}
			}
		})
	}
}

// Every layout largest-first creation builds is one Pack accepts too.
func TestCreateLargestFirstBuildsValidLayouts(t *testing.T) {
	cat := NewCatalog()
	for _, m := range cat.Models() {
		built := 0
		var rec func(i int, counts map[string]int)
		rec = func(i int, counts map[string]int) {
			if i == len(m.Profiles) {
				got, err := m.CreateLargestFirst(counts)
				if err != nil {
					return
				}
				built++
				if err := m.ValidateLayout(got); err != nil {
					t.Errorf("%s %s: %v", m.Name, FormatCounts(counts), err)
				}
				if !SameCounts(Counts(got), counts) {
					t.Errorf("%s: built %v for %v", m.Name, Counts(got), counts)
				}
				return
			}
			p := &m.Profiles[i]
			for n := 0; n <= p.MaxInstances; n++ {
				counts[p.Name] = n
				rec(i+1, counts)
			}
			delete(counts, p.Name)
		}
		rec(0, map[string]int{})
		if built < 10 {
			t.Errorf("%s: only %d layouts built", m.Name, built)
		}
	}
}

func TestFormatCounts(t *testing.T) {
	if got := FormatCounts(map[string]int{"1g.10gb": 7}); got != "7×1g.10gb" {
		t.Errorf("got %q", got)
	}
	if got := FormatCounts(map[string]int{"3g.40gb": 1, "1g.10gb": 3, "2g.20gb": 0}); got != "3×1g.10gb+1×3g.40gb" {
		t.Errorf("got %q", got)
	}
	if got := FormatCounts(nil); got != "empty" {
		t.Errorf("got %q", got)
	}
}
