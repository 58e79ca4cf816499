package throughput

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	toolscache "k8s.io/client-go/tools/cache"
)

const (
	// podLabel marks the benchmark's pods; the watcher sees only these.
	podLabelKey   = "app.kubernetes.io/name"
	podLabelValue = "gpuslice-throughput"
	podNamePrefix = "pod-"
)

// podName names pod i of a phase.
func podName(i int) string { return fmt.Sprintf("%s%06d", podNamePrefix, i) }

// podIndex is podName's inverse; -1 for other names.
func podIndex(name string) int {
	i, err := strconv.Atoi(strings.TrimPrefix(name, podNamePrefix))
	if err != nil || !strings.HasPrefix(name, podNamePrefix) {
		return -1
	}
	return i
}

// podWatcher is one pod informer over the benchmark's pods of every
// namespace. It hands each event to the tracker of the pod's namespace.
// Bindings are timed when the informer delivers them, as scheduler_perf
// does: no per-pod polling.
type podWatcher struct {
	mu       sync.RWMutex
	trackers map[string]*tracker // by namespace
}

// startPodWatcher starts the informer and waits for its first list.
func startPodWatcher(ctx context.Context, kube kubernetes.Interface) (*podWatcher, error) {
	w := &podWatcher{trackers: map[string]*tracker{}}
	factory := informers.NewSharedInformerFactoryWithOptions(kube, 0, informers.WithTweakListOptions(func(lo *metav1.ListOptions) {
		lo.LabelSelector = podLabelKey + "=" + podLabelValue
	}))
	inf := factory.Core().V1().Pods().Informer()
	_, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { w.onPod(obj) },
		UpdateFunc: func(_, obj any) { w.onPod(obj) },
		DeleteFunc: func(obj any) { w.onDelete(obj) },
	})
	if err != nil {
		return nil, fmt.Errorf("pod watcher: %w", err)
	}
	factory.Start(ctx.Done())
	if !toolscache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return nil, fmt.Errorf("pod watcher: informer not synced: %w", ctx.Err())
	}
	return w, nil
}

// track starts tracking a phase's namespace of n pods.
func (w *podWatcher) track(namespace string, n int) *tracker {
	t := newTracker(n)
	w.mu.Lock()
	w.trackers[namespace] = t
	w.mu.Unlock()
	return t
}

// untrack stops tracking a namespace.
func (w *podWatcher) untrack(namespace string) {
	w.mu.Lock()
	delete(w.trackers, namespace)
	w.mu.Unlock()
}

func (w *podWatcher) tracker(namespace string) *tracker {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.trackers[namespace]
}

func (w *podWatcher) onPod(obj any) {
	now := time.Now()
	pod, ok := obj.(*corev1.Pod)
	if !ok || pod.Spec.NodeName == "" {
		return
	}
	if t := w.tracker(pod.Namespace); t != nil {
		t.bound(podIndex(pod.Name), pod.Spec.NodeName, now)
	}
}

func (w *podWatcher) onDelete(obj any) {
	if tomb, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	if t := w.tracker(pod.Namespace); t != nil {
		t.deleted(podIndex(pod.Name))
	}
}

// tracker times one phase's pods: when each create was sent (written by the
// creating workers before they send it, read once they are done) and when
// its binding was observed.
type tracker struct {
	n         int
	createdAt []time.Time

	mu         sync.Mutex
	boundAt    []time.Time
	nodes      map[string]struct{} // nodes the bound pods are on
	nBound     int
	gone       []bool
	nGone      int
	allBound   chan struct{}
	allGone    chan struct{}
	boundCount atomic.Int64 // nBound, for the per-second sampler
}

func newTracker(n int) *tracker {
	return &tracker{
		n:         n,
		createdAt: make([]time.Time, n),
		boundAt:   make([]time.Time, n),
		nodes:     map[string]struct{}{},
		gone:      make([]bool, n),
		allBound:  make(chan struct{}),
		allGone:   make(chan struct{}),
	}
}

// bound records that pod i was seen bound to node at t (the first time
// counts).
func (t *tracker) bound(i int, node string, at time.Time) {
	if i < 0 || i >= t.n {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.boundAt[i].IsZero() {
		return
	}
	t.boundAt[i] = at
	t.nodes[node] = struct{}{}
	t.nBound++
	t.boundCount.Store(int64(t.nBound))
	if t.nBound == t.n {
		close(t.allBound)
	}
}

// deleted records that pod i is gone.
func (t *tracker) deleted(i int) {
	if i < 0 || i >= t.n {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.gone[i] {
		return
	}
	t.gone[i] = true
	t.nGone++
	if t.nGone == t.n {
		close(t.allGone)
	}
}

// nodesUsed returns how many nodes the bound pods are on.
func (t *tracker) nodesUsed() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.nodes)
}

// bindTimes returns a copy of the observed binding times (zero: not bound).
func (t *tracker) bindTimes() []time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]time.Time(nil), t.boundAt...)
}
