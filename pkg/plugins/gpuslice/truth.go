package gpuslice

import (
	"context"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"

	"github.com/gpuslice/gpuslice/pkg/allocator"
	gpusliceapi "github.com/gpuslice/gpuslice/pkg/apis/gpuslice/v1alpha1"
	"github.com/gpuslice/gpuslice/pkg/assignment"
	gpuslicelisters "github.com/gpuslice/gpuslice/pkg/generated/listers/gpuslice/v1alpha1"
)

// truthWriter makes a bound pod's gpuslice.io/assignment annotation tell
// the truth once it is known: PreBind records the predicted devices
// (source "predicted"), the kubelet may give an equal twin, and when the
// pod's node's exporter reports what the kubelet gave, the annotation is
// rewritten with those devices (source "kubelet"). A reader that counts
// only kubelet assignments as held never sees one device held by two live
// pods; a predicted one says it is a prediction.
//
// It runs in every scheduler replica (the standby's informers are live
// too); the write is an idempotent merge patch of the same value, and a
// replica whose informer already shows the truth writes nothing.
type truthWriter struct {
	client   kubernetes.Interface
	pods     corelisters.PodLister
	gpuNodes gpuslicelisters.GPUNodeLister
	queue    workqueue.TypedRateLimitingInterface[types.NamespacedName]
}

func newTruthWriter(client kubernetes.Interface, pods corelisters.PodLister, gpuNodes gpuslicelisters.GPUNodeLister) *truthWriter {
	return &truthWriter{
		client: client, pods: pods, gpuNodes: gpuNodes,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[types.NamespacedName](100*time.Millisecond, time.Minute),
			workqueue.TypedRateLimitingQueueConfig[types.NamespacedName]{Name: "gpuslice-assignment-truth"}),
	}
}

// gpuNodeChanged queues the pods the exporter reports whose annotation is
// not yet what the kubelet gave them.
func (w *truthWriter) gpuNodeChanged(gn *gpusliceapi.GPUNode) {
	for i := range gn.Spec.Allocations {
		pa := &gn.Spec.Allocations[i]
		pod, err := w.pods.Pods(pa.Namespace).Get(pa.Name)
		if err != nil || string(pod.UID) != pa.PodUID {
			continue // not seen yet: its own event will queue it
		}
		if a, err := assignment.FromPod(pod); err == nil && a != nil && !sameAssignment(a, observed(gn.Name, pa)) {
			w.queue.Add(types.NamespacedName{Namespace: pod.Namespace, Name: pod.Name})
		}
	}
}

// podChanged queues a bound pod whose annotation is still a prediction
// (the exporter may have reported it before the pod's event arrived).
func (w *truthWriter) podChanged(pod *v1.Pod) {
	if pod.Spec.NodeName == "" {
		return
	}
	if a, err := assignment.FromPod(pod); err == nil && a != nil && !a.Held() {
		w.queue.Add(types.NamespacedName{Namespace: pod.Namespace, Name: pod.Name})
	}
}

// run processes the queue until ctx ends.
func (w *truthWriter) run(ctx context.Context) {
	go func() {
		<-ctx.Done()
		w.queue.ShutDown()
	}()
	logger := klog.FromContext(ctx)
	for {
		key, quit := w.queue.Get()
		if quit {
			return
		}
		if err := w.sync(ctx, key); err != nil {
			logger.V(2).Info("Recording the kubelet's devices on the pod failed; retrying", "pod", key, "err", err)
			w.queue.AddRateLimited(key)
		} else {
			w.queue.Forget(key)
		}
		w.queue.Done(key)
	}
}

// sync writes the kubelet's devices into one pod's annotation if its node's
// exporter reports them and the annotation says otherwise.
func (w *truthWriter) sync(ctx context.Context, key types.NamespacedName) error {
	pod, err := w.pods.Pods(key.Namespace).Get(key.Name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	cur, err := assignment.FromPod(pod)
	if err != nil || cur == nil || pod.Spec.NodeName == "" {
		return nil // not ours, or malformed (the cache logs it)
	}
	gn, err := w.gpuNodes.Get(pod.Spec.NodeName)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	for i := range gn.Spec.Allocations {
		pa := &gn.Spec.Allocations[i]
		if pa.PodUID != string(pod.UID) {
			continue
		}
		truth := observed(gn.Name, pa)
		if sameAssignment(cur, truth) {
			return nil
		}
		patch, err := truth.PatchFor(pod.UID)
		if err != nil {
			return err
		}
		_, err = w.client.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.MergePatchType, patch, metav1.PatchOptions{})
		if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			return nil // gone, or replaced by a namesake
		}
		return err
	}
	return nil // not reported yet
}

// observed is the assignment of what the kubelet gave one pod.
func observed(node string, pa *gpusliceapi.PodAllocation) *assignment.Assignment {
	p := &allocator.Placement{Node: node}
	for _, c := range pa.Containers {
		cd := allocator.ContainerDevices{Name: c.Name}
		for _, d := range c.Devices {
			cd.Devices = append(cd.Devices, allocator.ResourceDevices{Resource: d.Resource, DeviceIDs: d.DeviceIDs})
		}
		p.Containers = append(p.Containers, cd)
	}
	return assignment.Observed(p)
}

func sameAssignment(a, b *assignment.Assignment) bool {
	av, err1 := a.Encode()
	bv, err2 := b.Encode()
	return err1 == nil && err2 == nil && av == bv
}
