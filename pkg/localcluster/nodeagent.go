package localcluster

import (
	"context"
	"fmt"
	"hash/fnv"
	"maps"
	"sort"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/gpuslice/gpuslice/pkg/autoscale/instancetypes"
	versioned "github.com/gpuslice/gpuslice/pkg/generated/clientset/versioned"
)

// LabelKWOKNode marks the Nodes Karpenter's KWOK provider creates.
const LabelKWOKNode = "kwok.x-k8s.io/node"

// NodeAgent turns the Nodes an autoscaler creates into simulated GPU nodes:
// for each Node labelled kwok.x-k8s.io/node=fake it looks up the instance
// type (label node.kubernetes.io/instance-type), gives the node that type's
// topology (fake NVML, device-plugin config), makes it Ready with the
// capacity the device plugin advertises and without the not-ready taint,
// and runs its fake kubelet and the real exporter code. When the Node is
// deleted it stops them and deletes the node's GPUNode and Lease, as the
// exporter's DaemonSet pod would vanish with the machine.
type NodeAgent struct {
	kube  kubernetes.Interface
	gpu   versioned.Interface
	types *instancetypes.Set
	opts  SimOptions

	mu    sync.Mutex
	nodes map[string]*SimNode
	errs  []string
	// adopted counts the nodes ever adopted.
	adopted int
	work    chan agentEvent
}

type agentEvent struct {
	name    string
	deleted bool
}

// StartNodeAgent starts the agent; it runs until ctx ends, then stops every
// node it started.
func StartNodeAgent(ctx context.Context, kube kubernetes.Interface, gpu versioned.Interface, types *instancetypes.Set, o SimOptions) (*NodeAgent, error) {
	a := &NodeAgent{kube: kube, gpu: gpu, types: types, opts: o, nodes: map[string]*SimNode{}, work: make(chan agentEvent, 1024)}
	factory := informers.NewSharedInformerFactoryWithOptions(kube, 0, informers.WithTweakListOptions(func(lo *metav1.ListOptions) {
		lo.LabelSelector = labels.SelectorFromSet(labels.Set{LabelKWOKNode: "fake"}).String()
	}))
	inf := factory.Core().V1().Nodes().Informer()
	_, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { a.enqueue(obj, false) },
		UpdateFunc: func(_, obj any) { a.enqueue(obj, false) },
		DeleteFunc: func(obj any) {
			if t, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			a.enqueue(obj, true)
		},
	})
	if err != nil {
		return nil, err
	}
	factory.Start(ctx.Done())
	go func() {
		defer factory.Shutdown()
		a.run(ctx)
	}()
	return a, nil
}

func (a *NodeAgent) enqueue(obj any, deleted bool) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return
	}
	if !deleted {
		a.mu.Lock()
		_, known := a.nodes[n.Name]
		a.mu.Unlock()
		if known {
			return
		}
	}
	a.work <- agentEvent{name: n.Name, deleted: deleted}
}

func (a *NodeAgent) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			a.mu.Lock()
			nodes := a.nodes
			a.nodes = map[string]*SimNode{}
			a.mu.Unlock()
			for _, n := range nodes {
				n.Stop()
			}
			return
		case ev := <-a.work:
			if ev.deleted {
				a.remove(ctx, ev.name)
			} else {
				a.adopt(ctx, ev.name)
			}
		}
	}
}

func (a *NodeAgent) fail(format string, args ...any) {
	a.mu.Lock()
	a.errs = append(a.errs, fmt.Sprintf(format, args...))
	a.mu.Unlock()
}

func (a *NodeAgent) adopt(ctx context.Context, name string) {
	a.mu.Lock()
	_, known := a.nodes[name]
	a.mu.Unlock()
	if known {
		return
	}
	node, err := a.kube.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) || (err == nil && node.DeletionTimestamp != nil) {
		return
	}
	if err != nil {
		a.fail("node %s: %v", name, err)
		return
	}
	typeName := node.Labels[corev1.LabelInstanceTypeStable]
	t, ok := a.types.Get(typeName)
	if !ok {
		a.fail("node %s: instance type %q is not one of the GPU instance types", name, typeName)
		return
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(name))
	o := a.opts
	o.Seed ^= int64(h.Sum64() >> 1)
	sim, err := AdoptSimNode(ctx, a.kube, a.gpu, t.Spec(name), t.NodeResources(), o)
	if err != nil {
		if sim != nil {
			sim.Stop()
		}
		a.fail("node %s (%s): %v", name, typeName, err)
		return
	}
	a.mu.Lock()
	a.nodes[name] = sim
	a.adopted++
	a.mu.Unlock()
	// What Karpenter was told the type offers must be what the node's
	// device plugin advertises.
	if topo, err := sim.Topology(); err != nil {
		a.fail("node %s: %v", name, err)
	} else if caps, err := topo.Capacity(); err != nil || !maps.Equal(caps, t.Advertised) {
		a.fail("node %s (%s): device plugin advertises %v (%v), the instance type says %v", name, typeName, caps, err, t.Advertised)
	}
}

func (a *NodeAgent) remove(ctx context.Context, name string) {
	a.mu.Lock()
	sim, ok := a.nodes[name]
	delete(a.nodes, name)
	a.mu.Unlock()
	if !ok {
		return
	}
	sim.Stop()
	if err := a.gpu.GpusliceV1alpha1().GPUNodes().Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		a.fail("deleting GPUNode %s: %v", name, err)
	}
	if err := a.kube.CoordinationV1().Leases(LeaseNamespace).Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		a.fail("deleting Lease %s: %v", name, err)
	}
}

// Node returns the simulated node of that name, if the agent runs it.
func (a *NodeAgent) Node(name string) (*SimNode, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	n, ok := a.nodes[name]
	return n, ok
}

// Nodes lists the names of the nodes the agent runs now, sorted.
func (a *NodeAgent) Nodes() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]string, 0, len(a.nodes))
	for n := range a.nodes {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Adopted is how many nodes the agent has adopted since it started.
func (a *NodeAgent) Adopted() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.adopted
}

// Errors lists what went wrong adopting or removing nodes.
func (a *NodeAgent) Errors() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.errs...)
}
