package throughput

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"k8s.io/component-base/metrics/legacyregistry"
)

// The scheduler's metrics read here. The scheduler runs in this process, so
// they are read from its registry (legacyregistry), not scraped.
const (
	attemptMetric   = "scheduler_scheduling_attempt_duration_seconds" // labels result, profile
	cacheSizeMetric = "scheduler_cache_size"                          // label type: nodes, pods, assumed_pods
	// Opportunistic batching (a scheduling cycle reusing the previous
	// pod's filter and score results): hints by result, flushes by reason.
	batchAttemptsMetric = "scheduler_batch_attempts_total"      // labels profile, result
	batchFlushedMetric  = "scheduler_batch_cache_flushed_total" // labels profile, reason
	// Every plugin call of PreFilter, Filter, PreScore and Score.
	evaluationMetric = "scheduler_plugin_evaluation_total" // labels plugin, extension_point, profile
)

// evaluationKey selects one series of evaluationMetric.
type evaluationKey struct{ plugin, point, profile string }

// attemptKey selects one series of attemptMetric.
type attemptKey struct{ profile, result string }

// histogram is a cumulative Prometheus histogram: cum[i] samples were ≤
// bounds[i]; count is the total, +Inf bucket included.
type histogram struct {
	bounds []float64
	cum    []uint64
	count  uint64
	sum    float64
}

// sub returns h − earlier, bucket by bucket: the samples taken in between.
// earlier may be empty (the series did not exist yet).
func (h histogram) sub(earlier histogram) histogram {
	out := histogram{bounds: h.bounds, cum: slices.Clone(h.cum), count: h.count - earlier.count, sum: h.sum - earlier.sum}
	if len(earlier.cum) == len(h.cum) {
		for i := range out.cum {
			out.cum[i] -= earlier.cum[i]
		}
	}
	return out
}

// quantile interpolates the q-quantile from the buckets as Prometheus'
// histogram_quantile does: linearly within the bucket holding the rank, the
// lowest bucket starting at 0, and the upper bound of the highest finite
// bucket when the rank falls into +Inf. 0 without samples.
func (h histogram) quantile(q float64) float64 {
	if h.count == 0 || len(h.bounds) == 0 {
		return 0
	}
	rank := q * float64(h.count)
	b := slices.IndexFunc(h.cum, func(c uint64) bool { return float64(c) >= rank })
	if b < 0 {
		return h.bounds[len(h.bounds)-1]
	}
	if b == 0 && h.bounds[0] <= 0 {
		return h.bounds[0]
	}
	start, end, inBucket := 0.0, h.bounds[b], float64(h.cum[b])
	if b > 0 {
		start = h.bounds[b-1]
		inBucket -= float64(h.cum[b-1])
		rank -= float64(h.cum[b-1])
	}
	return start + (end-start)*(rank/inBucket)
}

// schedulerMetrics is one reading of the scheduler's metrics.
type schedulerMetrics struct {
	attempts  map[attemptKey]histogram
	cacheSize map[string]float64 // by type
	// batch counts batching events per profile: hint results by name
	// ("hint_used", "no_hint", ...), flushes as "flushed/<reason>".
	batch map[attemptKey]float64
	// evaluations counts plugin calls.
	evaluations map[evaluationKey]float64
}

// gatherScheduler reads the scheduler's metrics from the process registry.
func gatherScheduler() (schedulerMetrics, error) {
	families, err := legacyregistry.DefaultGatherer.Gather()
	if err != nil {
		return schedulerMetrics{}, fmt.Errorf("gathering the scheduler's metrics: %w", err)
	}
	out := schedulerMetrics{attempts: map[attemptKey]histogram{}, cacheSize: map[string]float64{}, batch: map[attemptKey]float64{}, evaluations: map[evaluationKey]float64{}}
	for _, f := range families {
		switch f.GetName() {
		case attemptMetric:
			for _, m := range f.GetMetric() {
				l := labels(m.GetLabel())
				k := attemptKey{l["profile"], l["result"]}
				ph := m.GetHistogram()
				h := histogram{count: ph.GetSampleCount(), sum: ph.GetSampleSum()}
				for _, b := range ph.GetBucket() {
					if math.IsInf(b.GetUpperBound(), 1) {
						continue
					}
					h.bounds = append(h.bounds, b.GetUpperBound())
					h.cum = append(h.cum, b.GetCumulativeCount())
				}
				out.attempts[k] = h
			}
		case batchAttemptsMetric, batchFlushedMetric:
			for _, m := range f.GetMetric() {
				l := labels(m.GetLabel())
				k := attemptKey{l["profile"], l["result"]}
				if r, ok := l["reason"]; ok {
					k.result = "flushed/" + r
				}
				out.batch[k] += m.GetCounter().GetValue()
			}
		case evaluationMetric:
			for _, m := range f.GetMetric() {
				l := labels(m.GetLabel())
				out.evaluations[evaluationKey{l["plugin"], l["extension_point"], l["profile"]}] += m.GetCounter().GetValue()
			}
		case cacheSizeMetric:
			for _, m := range f.GetMetric() {
				if t, ok := labels(m.GetLabel())["type"]; ok {
					out.cacheSize[t] = m.GetGauge().GetValue()
				}
			}
		}
	}
	return out, nil
}

// labels maps a series' label names to their values.
func labels[L interface {
	GetName() string
	GetValue() string
}](pairs []L) map[string]string {
	out := make(map[string]string, len(pairs))
	for _, l := range pairs {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

// waitAttempts reads the metrics once the profile's scheduled-attempt count
// has grown by want since before: the scheduler observes an attempt after
// its binding returns, which can be after the watcher saw the binding. It
// gives up waiting after 10 s and returns what it read then.
func waitAttempts(ctx context.Context, before schedulerMetrics, profile string, want uint64) (schedulerMetrics, error) {
	k := attemptKey{profile, "scheduled"}
	deadline := time.Now().Add(10 * time.Second)
	for {
		m, err := gatherScheduler()
		if err != nil || m.attempts[k].count-before.attempts[k].count >= want || time.Now().After(deadline) {
			return m, err
		}
		select {
		case <-ctx.Done():
			return m, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitSchedulerCacheEmpty waits until the scheduler's cache holds no pod,
// assumed or bound (a gauge the scheduler refreshes every second), and one
// refresh more, so that every pod informer handler of the scheduler,
// GPUSlice's cache included, has seen the deletions.
func waitSchedulerCacheEmpty(ctx context.Context) error {
	const limit = 5 * time.Minute
	deadline := time.Now().Add(limit)
	for {
		m, err := gatherScheduler()
		if err != nil {
			return err
		}
		if m.cacheSize["pods"] == 0 && m.cacheSize["assumed_pods"] == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the scheduler's cache still holds %v pods (%v assumed) after %s", m.cacheSize["pods"], m.cacheSize["assumed_pods"], limit)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the scheduler's cache to empty: %w", ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Second):
		return nil
	}
}

// beyondBuckets reports whether the q-quantile falls into the +Inf bucket,
// where quantile can only return the highest finite bound: the true value is
// larger.
func (h histogram) beyondBuckets(q float64) bool {
	return h.count > 0 && len(h.cum) > 0 && float64(h.cum[len(h.cum)-1]) < q*float64(h.count)
}

// exactQuantile returns the q-quantile of sorted samples (nearest rank).
func exactQuantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
