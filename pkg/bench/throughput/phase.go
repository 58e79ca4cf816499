package throughput

import (
	"context"
	"fmt"
	"os"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/workqueue"

	"github.com/gpuslice/gpuslice/pkg/bench/benchutil"
	"github.com/gpuslice/gpuslice/pkg/localcluster"
)

// The pods' CPU and memory requests, besides nvidia.com/gpu: small, so GPUs
// are what runs out, but present, so NodeResourcesFit has something to score.
const (
	podCPU    = "100m"
	podMemory = "128Mi"
)

// phaseSpec is one profile scheduling one batch of pods in a namespace of
// its own.
type phaseSpec struct {
	round      int // 0 for the warm-up
	profile    profile
	namespace  string
	pods       int
	cpuProfile string // file for a CPU profile of the phase; "" for none
}

// phaseResult is what one phase measured. Durations are in seconds.
type phaseResult struct {
	Round         int    `json:"round"`
	Profile       string `json:"profile"`
	SchedulerName string `json:"schedulerName"`
	Pods          int    `json:"pods"`
	// Seconds: from the first create sent to the last binding observed.
	Seconds       float64 `json:"seconds"`
	PodsPerSecond float64 `json:"podsPerSecond"`
	// MedianPodsPerSecond is the median of the bindings observed per whole
	// second of the phase (scheduler_perf's SchedulingThroughput Perc50).
	MedianPodsPerSecond float64 `json:"medianPodsPerSecond"`
	// CreateSeconds is how long sending all creates took.
	CreateSeconds float64 `json:"createSeconds"`
	// Attempt latencies: the scheduler's scheduling_attempt_duration_seconds
	// (result="scheduled", this profile), delta over the phase,
	// interpolated from its buckets like histogram_quantile.
	AttemptP50Seconds float64 `json:"attemptP50Seconds"`
	AttemptP99Seconds float64 `json:"attemptP99Seconds"`
	// AttemptP99Beyond: the p99 lies beyond the histogram's highest bucket
	// (16.384 s); AttemptP99Seconds is that bound, a lower limit.
	AttemptP99Beyond bool `json:"attemptP99Beyond,omitempty"`
	// Attempts counts the phase's scheduling attempts by result.
	Attempts map[string]uint64 `json:"attempts"`
	// Batch counts the scheduler's opportunistic batching during the phase:
	// "hint_used" cycles reused the previous pod's results; see
	// batchAttemptsMetric and batchFlushedMetric.
	Batch map[string]uint64 `json:"batch,omitempty"`
	// NodesFilteredPerPod is the nodes the profile's cycles examined (ran
	// Filter on) per pod: kube-scheduler stops once it has found
	// percentageOfNodesToScore feasible nodes, so a profile that fills
	// nodes examines more.
	NodesFilteredPerPod float64 `json:"nodesFilteredPerPod"`
	// NodesUsed is how many nodes the phase's pods were bound to: how
	// tightly the profile packed them (pods × GPUs per pod ÷ GPUs per node
	// at best).
	NodesUsed int `json:"nodesUsed"`
	// End-to-end latencies: binding observed − create sent, per pod.
	E2EP50Seconds float64 `json:"e2eP50Seconds"`
	E2EP99Seconds float64 `json:"e2eP99Seconds"`
	// APIRequestsPerPod is the API server's requests (watches aside) during
	// the phase, per pod, by "VERB resource[/subresource]" (its
	// apiserver_request_total); nil when /metrics could not be read.
	APIRequestsPerPod map[string]float64 `json:"apiRequestsPerPod,omitempty"`
	// CPUSeconds is the CPU time each process spent during the phase
	// ("bench+scheduler" is this process), when /proc is readable.
	CPUSeconds map[string]float64 `json:"cpuSeconds,omitempty"`
}

// newPod returns pod i of a phase.
func (e *env) newPod(spec phaseSpec, i int) *corev1.Pod {
	res := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse(podCPU),
		corev1.ResourceMemory: resource.MustParse(podMemory),
		"nvidia.com/gpu":      *resource.NewQuantity(e.o.gpusOf(i), resource.DecimalSI),
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: podName(i), Namespace: spec.namespace, Labels: map[string]string{podLabelKey: podLabelValue}},
		Spec: corev1.PodSpec{
			SchedulerName: spec.profile.schedulerName,
			Containers: []corev1.Container{{
				Name:      "main",
				Image:     "registry.k8s.io/pause:3.10",
				Resources: corev1.ResourceRequirements{Limits: res, Requests: res.DeepCopy()},
			}},
		},
	}
}

// measure runs one phase: it creates the pods as fast as the workers can,
// waits until the watcher has seen every one bound, and reads the
// scheduler's histograms and the processes' CPU time before and after.
func (e *env) measure(ctx context.Context, spec phaseSpec) (phaseResult, error) {
	res := phaseResult{Round: spec.round, Profile: spec.profile.label, SchedulerName: spec.profile.schedulerName, Pods: spec.pods}
	if err := localcluster.EnsureNamespace(ctx, e.kube, spec.namespace); err != nil {
		return res, fmt.Errorf("creating namespace %s: %w", spec.namespace, err)
	}
	pods := make([]*corev1.Pod, spec.pods)
	for i := range pods {
		pods[i] = e.newPod(spec, i)
	}
	t := e.watch.track(spec.namespace, spec.pods)
	before, err := gatherScheduler()
	if err != nil {
		return res, err
	}
	cpuBefore := processCPU()
	requestsBefore, requestsErr := apiRequests(ctx, e.kube)
	if spec.cpuProfile != "" {
		stop, err := startCPUProfile(spec.cpuProfile)
		if err != nil {
			return res, err
		}
		defer stop()
	}

	sampler := startSampler(t)
	began := time.Now()
	if err := e.createPods(ctx, t, pods); err != nil {
		sampler.stop()
		return res, err
	}
	res.CreateSeconds = time.Since(began).Seconds()
	err = e.waitBound(ctx, spec, t)
	perSecond := sampler.stop()
	if err != nil {
		return res, err
	}

	res.timings(t, began, perSecond)
	after, err := waitAttempts(ctx, before, spec.profile.schedulerName, uint64(spec.pods))
	if err != nil {
		return res, err
	}
	res.CPUSeconds = cpuDelta(cpuBefore, processCPU())
	if requestsAfter, err := apiRequests(ctx, e.kube); err == nil && requestsErr == nil {
		res.APIRequestsPerPod = perPod(requestsBefore, requestsAfter, spec.pods)
	}
	res.schedulerFigures(before, after)
	return res, nil
}

// timings fills in throughput and end-to-end latencies from the tracker of
// a phase whose pods are all bound; began is when the first create was sent.
func (res *phaseResult) timings(t *tracker, began time.Time, perSecond []float64) {
	bound := t.bindTimes()
	last := slices.MaxFunc(bound, func(a, b time.Time) int { return a.Compare(b) })
	res.Seconds = last.Sub(began).Seconds()
	res.PodsPerSecond = float64(res.Pods) / res.Seconds
	res.NodesUsed = t.nodesUsed()
	res.MedianPodsPerSecond = benchutil.Median(perSecond)
	e2e := make([]float64, len(bound))
	for i := range bound {
		e2e[i] = bound[i].Sub(t.createdAt[i]).Seconds()
	}
	slices.Sort(e2e)
	res.E2EP50Seconds, res.E2EP99Seconds = exactQuantile(e2e, 0.5), exactQuantile(e2e, 0.99)
}

// schedulerFigures fills in what the scheduler's metrics say of the phase's
// profile: attempt latencies, attempts by result, batching.
func (res *phaseResult) schedulerFigures(before, after schedulerMetrics) {
	key := attemptKey{res.SchedulerName, "scheduled"}
	scheduled := after.attempts[key].sub(before.attempts[key])
	res.AttemptP50Seconds, res.AttemptP99Seconds = scheduled.quantile(0.5), scheduled.quantile(0.99)
	res.AttemptP99Beyond = scheduled.beyondBuckets(0.99)
	res.Attempts = map[string]uint64{}
	for k, h := range after.attempts {
		if n := h.count - before.attempts[k].count; k.profile == res.SchedulerName && n > 0 {
			res.Attempts[k.result] = n
		}
	}
	// The profile's first Filter plugin runs for every node a cycle
	// examines (NodeUnschedulable in the stock profile, GPUSlice where it
	// filters first): the most evaluations of any Filter plugin.
	examined := 0.0
	for k, v := range after.evaluations {
		if k.point == "Filter" && k.profile == res.SchedulerName {
			examined = max(examined, v-before.evaluations[k])
		}
	}
	res.NodesFilteredPerPod = examined / float64(res.Pods)
	res.Batch = map[string]uint64{}
	for k, v := range after.batch {
		if n := v - before.batch[k]; k.profile == res.SchedulerName && n > 0 {
			res.Batch[k.result] = uint64(n)
		}
	}
}

// createPods sends the creates from createWorkers goroutines, each pod's
// send time recorded just before it goes out.
func (e *env) createPods(ctx context.Context, t *tracker, pods []*corev1.Pod) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		once     sync.Once
		firstErr error
	)
	workqueue.ParallelizeUntil(ctx, e.o.createWorkers, len(pods), func(i int) {
		t.createdAt[i] = time.Now()
		if _, err := e.kube.CoreV1().Pods(pods[i].Namespace).Create(ctx, pods[i], metav1.CreateOptions{}); err != nil {
			once.Do(func() {
				firstErr = fmt.Errorf("creating pod %s/%s: %w", pods[i].Namespace, pods[i].Name, err)
				cancel()
			})
		}
	})
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

// waitBound waits until every pod of the phase was seen bound. It fails
// when none was bound for o.stall, naming a few pods still pending and why.
func (e *env) waitBound(ctx context.Context, spec phaseSpec, t *tracker) error {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	last, lastChange := int64(-1), time.Now()
	for {
		select {
		case <-t.allBound:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("%d of %d pods bound: %w", t.boundCount.Load(), spec.pods, ctx.Err())
		case <-tick.C:
		}
		if n := t.boundCount.Load(); n != last {
			last, lastChange = n, time.Now()
		} else if time.Since(lastChange) > e.o.stall {
			return fmt.Errorf("no pod bound for %s, %d of %d bound; pending: %s", e.o.stall, n, spec.pods, e.pendingSample(ctx, spec.namespace))
		}
	}
}

// pendingSample describes up to three unbound pods of a namespace.
func (e *env) pendingSample(ctx context.Context, namespace string) string {
	list, err := e.kube.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err.Error()
	}
	var out []string
	for i := range list.Items {
		p := &list.Items[i]
		if p.Spec.NodeName != "" {
			continue
		}
		why := localcluster.Unschedulable(p)
		if why == "" {
			why = "not tried yet"
		}
		out = append(out, fmt.Sprintf("%s (%s)", p.Name, why))
		if len(out) == 3 {
			break
		}
	}
	return strings.Join(out, "; ")
}

// clear deletes a phase's pods with one DeleteCollection and waits until
// the watcher saw every deletion and the scheduler's cache holds no pod (its
// scheduler_cache_size gauge, refreshed every second), so the next phase
// starts from empty nodes.
func (e *env) clear(ctx context.Context, spec phaseSpec) error {
	defer e.watch.untrack(spec.namespace)
	t := e.watch.tracker(spec.namespace)
	zero := int64(0)
	err := e.kube.CoreV1().Pods(spec.namespace).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &zero}, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("DeleteCollection in %s: %w", spec.namespace, err)
	}
	if t != nil {
		select {
		case <-t.allGone:
		case <-ctx.Done():
			return fmt.Errorf("waiting for the deletions in %s: %w", spec.namespace, ctx.Err())
		}
	}
	return waitSchedulerCacheEmpty(ctx)
}

// startCPUProfile profiles this process's CPU into path until stop.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("CPU profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("CPU profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// sampler counts the bindings observed in each second of a phase.
type sampler struct {
	t      *tracker
	done   chan struct{}
	result chan []float64
}

func startSampler(t *tracker) *sampler {
	s := &sampler{t: t, done: make(chan struct{}), result: make(chan []float64, 1)}
	go func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		var rates []float64
		prev := t.boundCount.Load()
		for {
			select {
			case <-s.done:
				s.result <- rates
				return
			case <-tick.C:
				n := t.boundCount.Load()
				rates = append(rates, float64(n-prev))
				prev = n
			}
		}
	}()
	return s
}

// stop ends the sampling and returns the per-second counts of the whole
// seconds sampled.
func (s *sampler) stop() []float64 {
	close(s.done)
	return <-s.result
}
