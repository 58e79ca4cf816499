package gpuslice

import (
	"context"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"

	"github.com/gpuslice/gpuslice/pkg/assignment"
)

// DemandRecord is one pending pod's MIG demand as the scheduler holds it.
type DemandRecord struct {
	Namespace, Name string
	// Profiles are the MIG profiles the pod lacks and how many instances
	// of each it asks for.
	Profiles map[string]int
	// Since is when a failed cycle first found the pod waiting for a
	// profile (or the since of the annotation it already carried).
	Since    time.Time
	Priority int32
}

// MIGDemand returns the MIG demand of the pending pods this scheduler
// recorded, by pod UID (copies).
func (s *Shared) MIGDemand() map[types.UID]DemandRecord { return s.demand.list() }

// demandKey identifies a pod for the writer.
type demandKey struct {
	Namespace, Name string
	UID             types.UID
}

// demandRecorder holds the MIG demand of pending pods, by UID. PostFilter
// sets and clears records (a map operation under a mutex no Filter takes);
// the pod informer's handler forgets a pod once bound or deleted. Changes
// are handed to the writer (notify) and counted per profile for the
// metrics. Safe for concurrent use; every method is safe on nil.
type demandRecorder struct {
	mu        sync.Mutex
	pods      map[types.UID]*DemandRecord
	byProfile map[string]int
	// notify is called, outside the lock, with the pod whose record
	// changed (nil: no writer).
	notify  func(demandKey)
	metrics *Metrics
}

func newDemandRecorder(m *Metrics) *demandRecorder {
	return &demandRecorder{pods: map[types.UID]*DemandRecord{}, byProfile: map[string]int{}, metrics: m}
}

// set records that pod waits for the profiles (counts), first seen now
// unless it has a record or carries a valid annotation already. Nothing
// changes, and the writer is not told, when the profiles are the same.
func (r *demandRecorder) set(pod *v1.Pod, profiles map[string]int, now time.Time) {
	if r == nil || len(profiles) == 0 {
		return
	}
	r.mu.Lock()
	old := r.pods[pod.UID]
	if old != nil && maps.Equal(old.Profiles, profiles) {
		r.mu.Unlock()
		return
	}
	rec := &DemandRecord{Namespace: pod.Namespace, Name: pod.Name, Profiles: profiles, Since: now}
	if pod.Spec.Priority != nil {
		rec.Priority = *pod.Spec.Priority
	}
	if old != nil {
		rec.Since = old.Since
		r.count(old.Profiles, -1)
	} else if a, err := assignment.DemandFromPod(pod); err == nil && a != nil && a.Since.Before(now) {
		// Recorded by a replica that led before this one.
		rec.Since = a.Since
	}
	r.pods[pod.UID] = rec
	r.count(profiles, 1)
	notify := r.notify
	r.mu.Unlock()
	if notify != nil {
		notify(demandKey{Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID})
	}
}

// clear drops a pending pod's record (it waits for something else now) and
// tells the writer, which removes the annotation if the pod carries one.
func (r *demandRecorder) clear(uid types.UID) {
	if r == nil {
		return
	}
	r.mu.Lock()
	old := r.pods[uid]
	if old == nil {
		r.mu.Unlock()
		return
	}
	delete(r.pods, uid)
	r.count(old.Profiles, -1)
	notify := r.notify
	r.mu.Unlock()
	if notify != nil {
		notify(demandKey{Namespace: old.Namespace, Name: old.Name, UID: uid})
	}
}

// forget drops the record of a pod that was bound or deleted; nothing is
// written.
func (r *demandRecorder) forget(uid types.UID) {
	if r == nil {
		return
	}
	r.mu.Lock()
	if old := r.pods[uid]; old != nil {
		delete(r.pods, uid)
		r.count(old.Profiles, -1)
	}
	r.mu.Unlock()
}

// get returns a copy of the pod's record.
func (r *demandRecorder) get(uid types.UID) (DemandRecord, bool) {
	if r == nil {
		return DemandRecord{}, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	rec := r.pods[uid]
	if rec == nil {
		return DemandRecord{}, false
	}
	c := *rec
	c.Profiles = maps.Clone(rec.Profiles)
	return c, true
}

// list returns copies of every record.
func (r *demandRecorder) list() map[types.UID]DemandRecord {
	out := map[types.UID]DemandRecord{}
	if r == nil {
		return out
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for uid, rec := range r.pods {
		c := *rec
		c.Profiles = maps.Clone(rec.Profiles)
		out[uid] = c
	}
	return out
}

// count adds sign to the pods per profile and sets the gauge (r.mu held).
func (r *demandRecorder) count(profiles map[string]int, sign int) {
	for p := range profiles {
		r.byProfile[p] += sign
		n := r.byProfile[p]
		if n <= 0 {
			delete(r.byProfile, p)
		}
		r.metrics.setDemand(p, n)
	}
}

// demandWriter makes the recorder's records visible to gpuslice-repartitioner
// as the annotation gpuslice.io/mig-demand of the pending pods: a
// rate-limited queue (the client-go controller limiter: per pod exponential
// from 5 ms, 10 writes a second overall with bursts of 100) coalesces a
// pod's changes, and a write happens only when the record and the pod's
// annotation differ. The patch is a merge patch with the pod's UID as
// precondition, so it never lands on a namesake. Bound pods are left alone.
type demandWriter struct {
	client   kubernetes.Interface
	pods     corelisters.PodLister
	recorder *demandRecorder
	queue    workqueue.TypedRateLimitingInterface[demandKey]
	// writes counts patches sent (for tests and the metric).
	writes  atomic.Int64
	metrics *Metrics
}

func newDemandWriter(client kubernetes.Interface, pods corelisters.PodLister, r *demandRecorder, m *Metrics) *demandWriter {
	w := &demandWriter{
		client: client, pods: pods, recorder: r, metrics: m,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.DefaultTypedControllerRateLimiter[demandKey](),
			workqueue.TypedRateLimitingQueueConfig[demandKey]{Name: "gpuslice-mig-demand"}),
	}
	r.mu.Lock()
	r.notify = func(k demandKey) { w.queue.AddRateLimited(k) }
	r.mu.Unlock()
	return w
}

// run processes the queue until ctx ends.
func (w *demandWriter) run(ctx context.Context) {
	go func() {
		<-ctx.Done()
		w.queue.ShutDown()
	}()
	logger := klog.FromContext(ctx)
	for w.processNext(ctx, logger) {
	}
}

func (w *demandWriter) processNext(ctx context.Context, logger klog.Logger) bool {
	key, quit := w.queue.Get()
	if quit {
		return false
	}
	defer w.queue.Done(key)
	if err := w.sync(ctx, key); err != nil {
		logger.V(2).Info("Recording the pod's MIG demand failed; retrying", "pod", klog.KRef(key.Namespace, key.Name), "err", err)
		w.queue.AddRateLimited(key)
		return true
	}
	w.queue.Forget(key)
	return true
}

// sync writes one pod's annotation when it differs from its record.
func (w *demandWriter) sync(ctx context.Context, key demandKey) error {
	pod, err := w.pods.Pods(key.Namespace).Get(key.Name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if pod.UID != key.UID || pod.Spec.NodeName != "" || pod.DeletionTimestamp != nil {
		return nil // a namesake, bound, or going away
	}
	var want *assignment.Demand
	if rec, ok := w.recorder.get(pod.UID); ok {
		want = &assignment.Demand{Profiles: rec.Profiles, Since: rec.Since.UTC().Truncate(time.Second)}
	}
	cur, err := assignment.DemandFromPod(pod)
	if err == nil && cur.Equal(want) {
		return nil
	}
	patch, err := assignment.DemandPatchFor(pod.UID, want)
	if err != nil {
		return err
	}
	w.writes.Add(1)
	w.metrics.demandWrite()
	_, err = w.client.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.MergePatchType, patch, metav1.PatchOptions{})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil // gone, or replaced by a namesake
	}
	return err
}
