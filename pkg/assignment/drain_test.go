package assignment

import (
	"slices"
	"testing"
)

func TestParseDrain(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []int
		bad  bool
	}{
		{"", nil, false},
		{" ", nil, false},
		{"3", []int{3}, false},
		{"5, 3,3", []int{3, 5}, false},
		{"x", nil, true},
		{"1,-2", nil, true},
		{"1,,2", nil, true},
	} {
		got, err := ParseDrain(tc.in)
		if (err != nil) != tc.bad || !slices.Equal(got, tc.want) {
			t.Errorf("ParseDrain(%q) = %v, %v; want %v (error %v)", tc.in, got, err, tc.want, tc.bad)
		}
	}
	if got := FormatDrain([]int{5, 3, 5}); got != "3,5" {
		t.Errorf("FormatDrain = %q", got)
	}
	if got := FormatDrain(nil); got != "" {
		t.Errorf("FormatDrain(nil) = %q", got)
	}
}
