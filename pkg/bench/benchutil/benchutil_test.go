package benchutil

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
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

func TestRunAll(t *testing.T) {
	got, err := RunAll(context.Background(), 20, 3, func(_ context.Context, i int) (int, error) { return i * i, nil })
	if err != nil || len(got) != 20 || got[7] != 49 {
		t.Fatalf("RunAll = %v, %v", got, err)
	}
	_, err = RunAll(context.Background(), 20, 2, func(ctx context.Context, i int) (int, error) {
		if i == 5 {
			return 0, errors.New("job 5 failed")
		}
		return i, ctx.Err()
	})
	if err == nil || err.Error() != "job 5 failed" {
		t.Errorf("error %v, want job 5's", err)
	}
	if _, err := RunAll(context.Background(), 1, 0, func(context.Context, int) (int, error) { return 0, nil }); err == nil {
		t.Error("parallel 0 accepted")
	}
}

func TestRunGridOrder(t *testing.T) {
	got, err := RunGrid(context.Background(), []string{"a", "b"}, []int64{1, 2, 3}, 2, func(_ context.Context, p string, seed int64) (string, error) {
		return fmt.Sprintf("%s%d", p, seed), nil
	})
	if err != nil || strings.Join(got, " ") != "a1 a2 a3 b1 b2 b3" {
		t.Fatalf("RunGrid = %v, %v; want policies as given, then seeds", got, err)
	}
}
