package localcluster

import (
	"context"
	"fmt"
	"math/rand"
	"sort"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"

	"github.com/gpuslice/gpuslice/pkg/allocator"
	"github.com/gpuslice/gpuslice/pkg/exporter/kubelet"
	"github.com/gpuslice/gpuslice/pkg/exporter/podresources"
	"github.com/gpuslice/gpuslice/pkg/podrequest"
	"github.com/gpuslice/gpuslice/pkg/sim/deviceplugin"
	"github.com/gpuslice/gpuslice/pkg/topology"
)

// FakeKubelet stands in for a node's kubelet and NVIDIA device plugin: for
// each pod bound to the node it picks devices container by container, as
// the kubelet's device manager does (init-container devices reused), with
// the device plugin's greedy policy, breaking ties at random; it reports
// them through List (the PodResources API's content) and marks the pod
// Running. Its device choice is written independently of the scheduler's
// prediction (pkg/allocator), so tests comparing the two prove something.
type FakeKubelet struct {
	kube kubernetes.Interface
	node string

	mu       sync.Mutex
	rng      *rand.Rand
	topo     *topology.Node
	pods     map[types.UID]*podDevices
	rejected map[types.UID]string
}

type podDevices struct {
	namespace, name string
	containers      []podresources.ContainerDevices
}

// NewFakeKubelet returns a kubelet for the node; seed fixes its random
// choices among equal devices.
func NewFakeKubelet(kube kubernetes.Interface, topo *topology.Node, seed int64) *FakeKubelet {
	return &FakeKubelet{kube: kube, node: topo.Name, topo: topo, rng: rand.New(rand.NewSource(seed)), pods: map[types.UID]*podDevices{}, rejected: map[types.UID]string{}}
}

// SetTopology replaces the devices the plugin advertises (a MIG layout change
// and device plugin restart). Allocations of devices that no longer exist
// are kept, as the kubelet keeps them until the pods end.
func (k *FakeKubelet) SetTopology(topo *topology.Node) {
	k.mu.Lock()
	k.topo = topo
	k.mu.Unlock()
}

// List reports the devices of every pod, as the PodResources API does, in
// the types of the exporter's PodResources client (kubelet.Client.List): a
// FakeKubelet is the exporter's allocation source.
func (k *FakeKubelet) List(context.Context) ([]kubelet.PodDevices, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make([]podresources.PodDevices, 0, len(k.pods))
	for _, p := range k.pods {
		out = append(out, podresources.PodDevices{Namespace: p.namespace, Name: p.name, Containers: p.containers})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Namespace+"/"+out[i].Name < out[j].Namespace+"/"+out[j].Name })
	return podresources.ToKubelet(out), nil
}

// Devices returns what the kubelet gave a pod.
func (k *FakeKubelet) Devices(uid types.UID) ([]podresources.ContainerDevices, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	p, ok := k.pods[uid]
	if !ok {
		return nil, false
	}
	return p.containers, true
}

// Run admits pods bound to the node until ctx ends.
func (k *FakeKubelet) Run(ctx context.Context) {
	factory := informers.NewSharedInformerFactoryWithOptions(k.kube, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", k.node).String()
	}))
	inf := factory.Core().V1().Pods().Informer()
	queue := make(chan *corev1.Pod, 1024)
	_, _ = inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { k.enqueue(queue, obj) },
		UpdateFunc: func(_, obj any) { k.enqueue(queue, obj) },
		DeleteFunc: func(obj any) {
			if t, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if p, ok := obj.(*corev1.Pod); ok {
				k.release(p.UID)
			}
		},
	})
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	for {
		select {
		case <-ctx.Done():
			return
		case p := <-queue:
			if p.DeletionTimestamp != nil {
				k.finish(ctx, p)
				continue
			}
			k.admit(ctx, p)
		}
	}
}

func (k *FakeKubelet) enqueue(queue chan<- *corev1.Pod, obj any) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	if p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		k.release(p.UID)
		if p.DeletionTimestamp != nil {
			// A kubelet stops the containers and deletes the pod for good
			// (eviction, drain, graceful deletion).
			queue <- p
		}
		return
	}
	k.mu.Lock()
	_, done := k.pods[p.UID]
	_, rejected := k.rejected[p.UID]
	k.mu.Unlock()
	if !done && !rejected {
		queue <- p
	}
}

func (k *FakeKubelet) release(uid types.UID) {
	k.mu.Lock()
	delete(k.pods, uid)
	delete(k.rejected, uid)
	k.mu.Unlock()
}

// admit allocates the pod's devices and marks it Running, or Failed with
// UnexpectedAdmissionError when the devices are not there (as the kubelet).
func (k *FakeKubelet) admit(ctx context.Context, p *corev1.Pod) {
	req, err := podrequest.Parse(p, podrequest.Options{})
	if err != nil {
		k.fail(ctx, p, err.Error())
		return
	}
	k.mu.Lock()
	if _, done := k.pods[p.UID]; done {
		k.mu.Unlock()
		return
	}
	containers, err := k.allocate(req)
	if err != nil {
		k.rejected[p.UID] = err.Error()
		k.mu.Unlock()
		k.fail(ctx, p, err.Error())
		return
	}
	k.pods[p.UID] = &podDevices{namespace: p.Namespace, name: p.Name, containers: containers}
	k.mu.Unlock()
	if d, ok := runFor(p); ok {
		go k.complete(ctx, p, d)
	}
	k.setStatus(ctx, p, corev1.PodStatus{
		Phase:     corev1.PodRunning,
		StartTime: &metav1.Time{Time: time.Now()},
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue},
			{Type: corev1.PodReady, Status: corev1.ConditionTrue},
		},
	})
}

// RunForAnnotation on a pod makes the fake kubelet end it, phase Succeeded,
// that long (a Go duration) after it started: a batch Job's pod finishes.
const RunForAnnotation = "sim.gpuslice.io/run-for"

func runFor(p *corev1.Pod) (time.Duration, bool) {
	v, ok := p.Annotations[RunForAnnotation]
	if !ok {
		return 0, false
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, false
	}
	return d, true
}

// complete marks a running pod Succeeded after d, unless it is gone or ctx
// ends first. Its devices are released when the informer reports the phase.
func (k *FakeKubelet) complete(ctx context.Context, p *corev1.Pod, d time.Duration) {
	select {
	case <-ctx.Done():
		return
	case <-time.After(d):
	}
	k.mu.Lock()
	_, running := k.pods[p.UID]
	k.mu.Unlock()
	if !running {
		return
	}
	cur, err := k.kube.CoreV1().Pods(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
	if err != nil || cur.UID != p.UID || cur.DeletionTimestamp != nil {
		return
	}
	now := metav1.Now()
	st := cur.Status.DeepCopy()
	st.Phase = corev1.PodSucceeded
	st.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}, {Type: corev1.PodReady, Status: corev1.ConditionFalse, Reason: "PodCompleted"}}
	st.ContainerStatuses = nil
	for _, c := range cur.Spec.Containers {
		st.ContainerStatuses = append(st.ContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image,
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed", FinishedAt: now}},
		})
	}
	k.setStatus(ctx, cur, *st)
}

// finish deletes a terminating pod for good, as the kubelet does once its
// containers stopped (at once here: the fake runs no containers).
func (k *FakeKubelet) finish(ctx context.Context, p *corev1.Pod) {
	uid := p.UID
	err := k.kube.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64), Preconditions: &metav1.Preconditions{UID: &uid}})
	_ = err // gone already, or replaced by a pod of the same name: nothing to do
}

func (k *FakeKubelet) fail(ctx context.Context, p *corev1.Pod, msg string) {
	k.setStatus(ctx, p, corev1.PodStatus{Phase: corev1.PodFailed, Reason: "UnexpectedAdmissionError", Message: "Allocate failed: " + msg})
}

// setStatus writes the pod's status. The informer's copy may be stale (a
// controller or the scheduler wrote the pod since): on a conflict the pod is
// read again and the status written on it, unless it is gone, replaced or
// being deleted; otherwise the kubelet would hold the pod's devices while the
// pod never turned Running.
func (k *FakeKubelet) setStatus(ctx context.Context, p *corev1.Pod, st corev1.PodStatus) {
	cur := p.DeepCopy()
	_ = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur.Status = st
		_, err := k.kube.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		if !apierrors.IsConflict(err) {
			return err
		}
		fresh, gerr := k.kube.CoreV1().Pods(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
		if gerr != nil || fresh.UID != p.UID || fresh.DeletionTimestamp != nil {
			return nil
		}
		cur = fresh
		return err
	})
}

// advertised lists the healthy device IDs of each resource and, per ID, its
// physical device (the plugin's annotated-ID grouping).
func (k *FakeKubelet) advertised() (map[string][]string, map[string]string, error) {
	units, err := k.topo.Units()
	if err != nil {
		return nil, nil, err
	}
	ids := map[string][]string{}
	base := map[string]string{}
	for _, u := range units {
		if !u.Healthy {
			continue
		}
		if !u.Shared {
			ids[u.Resource] = append(ids[u.Resource], u.DeviceID)
			base[u.DeviceID] = u.DeviceID
			continue
		}
		for r := 0; r < u.Replicas; r++ {
			id := topology.ReplicaID(u.DeviceID, r)
			ids[u.Resource] = append(ids[u.Resource], id)
			base[id] = u.DeviceID
		}
	}
	return ids, base, nil
}

// allocate runs the device manager's per-container allocation. Caller holds k.mu.
func (k *FakeKubelet) allocate(req *podrequest.Request) ([]podresources.ContainerDevices, error) {
	ids, base, err := k.advertised()
	if err != nil {
		return nil, err
	}
	inUse := map[string]bool{}
	for _, p := range k.pods {
		for _, c := range p.containers {
			for _, d := range c.Devices {
				for _, id := range d.DeviceIDs {
					inUse[d.Resource+"/"+id] = true
				}
			}
		}
	}
	reuse := map[string][]string{}
	var out []podresources.ContainerDevices
	for _, c := range req.Containers {
		cd := podresources.ContainerDevices{Name: c.Name}
		var mine []allocator.ResourceDevices
		for _, rc := range c.Resources {
			got := []string{}
			for _, id := range reuse[rc.Name] {
				if len(got) < rc.Count {
					got = append(got, id)
				}
			}
			var free []string
			for _, id := range ids[rc.Name] {
				if !inUse[rc.Name+"/"+id] {
					free = append(free, id)
				}
			}
			need := rc.Count - len(got)
			if need > len(free) {
				return nil, fmt.Errorf("requested number of devices unavailable for %s. Requested: %d, Available: %d", rc.Name, rc.Count, len(free)+len(got))
			}
			picked := k.preferred(ids[rc.Name], free, got, need, base)
			for _, id := range picked {
				inUse[rc.Name+"/"+id] = true
			}
			all := append(got, picked...)
			mine = append(mine, allocator.ResourceDevices{Resource: rc.Name, DeviceIDs: all})
			if c.Init && !c.Restartable {
				reuse[rc.Name] = appendNew(reuse[rc.Name], all)
			} else {
				reuse[rc.Name] = without(reuse[rc.Name], all)
			}
		}
		cd.Devices = mine
		out = append(out, cd)
	}
	return out, nil
}

// preferred is the device plugin's GetPreferredAllocation: the greedy
// per-physical-device pick for replicas and MIG devices, any free devices for
// whole GPUs (a uniform NVLink fabric makes every set equal).
func (k *FakeKubelet) preferred(all, free, required []string, need int, base map[string]string) []string {
	shared := false
	mig := false
	for _, id := range all {
		if base[id] != id {
			shared = true
		}
		if len(id) > 4 && id[:4] == "MIG-" {
			mig = true
		}
	}
	k.rng.Shuffle(len(free), func(i, j int) { free[i], free[j] = free[j], free[i] })
	if !shared && !mig {
		return append([]string(nil), free[:need]...)
	}
	return deviceplugin.Greedy(k.rng, k.topo.AllocationPolicy, all, free, required, need+len(required))
}

func appendNew(a, b []string) []string {
	seen := map[string]bool{}
	for _, x := range a {
		seen[x] = true
	}
	for _, x := range b {
		if !seen[x] {
			a = append(a, x)
			seen[x] = true
		}
	}
	return a
}

func without(a, b []string) []string {
	drop := map[string]bool{}
	for _, x := range b {
		drop[x] = true
	}
	var out []string
	for _, x := range a {
		if !drop[x] {
			out = append(out, x)
		}
	}
	return out
}
