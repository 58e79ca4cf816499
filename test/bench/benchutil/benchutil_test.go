package benchutil

import (
	"slices"
	"testing"
)

func TestParseSeeds(t *testing.T) {
	for in, want := range map[string][]int64{"42-44": {42, 43, 44}, "1, 3,5-6": {1, 3, 5, 6}, "7": {7}} {
		got, err := ParseSeeds(in)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("ParseSeeds(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "x", "51-42", "1-x"} {
		if _, err := ParseSeeds(bad); err == nil {
			t.Errorf("ParseSeeds(%q): no error", bad)
		}
	}
}

func TestMedian(t *testing.T) {
	xs := []float64{3, 1, 2}
	if Median(xs) != 2 || xs[0] != 3 || Median([]float64{4, 1, 3, 2}) != 2.5 || Median(nil) != 0 {
		t.Error("median")
	}
}
