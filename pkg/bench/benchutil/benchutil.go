// Package benchutil holds what the gpuslice-bench subcommands share:
// parsing their --seeds flag, running (policy, seed) jobs in parallel and
// taking medians.
package benchutil

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// ParseSeeds parses a --seeds value: comma-separated seeds and inclusive
// ranges, e.g. "42-51" or "1,3,5-7".
func ParseSeeds(s string) ([]int64, error) {
	var out []int64
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.ParseInt(lo, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("--seeds: bad seed %q", part)
		}
		b := a
		if isRange {
			if b, err = strconv.ParseInt(hi, 10, 64); err != nil || b < a {
				return nil, fmt.Errorf("--seeds: bad range %q", part)
			}
		}
		for x := a; x <= b; x++ {
			out = append(out, x)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--seeds: none given")
	}
	return out, nil
}

// Median is the median of xs (the mean of the middle two for an even
// count), 0 for none. xs is not changed.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// RunGrid runs fn for every (policy, seed), parallel at a time, and returns
// the results ordered by policy (as given), then seed. The first error
// cancels the rest and is returned.
func RunGrid[P, T any](ctx context.Context, policies []P, seeds []int64, parallel int, fn func(ctx context.Context, p P, seed int64) (T, error)) ([]T, error) {
	return RunAll(ctx, len(policies)*len(seeds), parallel, func(ctx context.Context, i int) (T, error) {
		return fn(ctx, policies[i/len(seeds)], seeds[i%len(seeds)])
	})
}

// RunAll runs fn(ctx, i) for i in [0, n), parallel at a time, and returns
// the results by i. The first error cancels the rest and is returned.
func RunAll[T any](ctx context.Context, n, parallel int, fn func(ctx context.Context, i int) (T, error)) ([]T, error) {
	if parallel < 1 {
		return nil, fmt.Errorf("parallel must be at least 1, not %d", parallel)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	out := make([]T, n)
	var (
		once     sync.Once
		firstErr error
		wg       sync.WaitGroup
	)
	ch := make(chan int)
	for range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range ch {
				r, err := fn(ctx, i)
				if err != nil {
					once.Do(func() { firstErr = err; cancel() })
					continue
				}
				out[i] = r
			}
		}()
	}
feed:
	for i := range n {
		select {
		case ch <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(ch)
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return out, nil
}
