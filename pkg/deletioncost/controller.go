package deletioncost

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
)

// Options configure a Controller.
type Options struct {
	Client kubernetes.Interface
	// Pods is the Pod informer (the scheduler's shared one).
	Pods coreinformers.PodInformer
	// Fill is how full a node's GPUs are (GPU-equivalents in use ÷ healthy
	// total, from gpuslice's node cache); known is false for a node gpuslice
	// has no usable view of, whose pods are then left as they are.
	Fill func(node string) (fill float64, known bool)
	// Period is how often every pod is judged again.
	Period time.Duration
}

// Controller keeps the deletion cost of gpuslice's ReplicaSet pods.
type Controller struct {
	o      Options
	lister corelisters.PodLister
	synced toolscache.InformerSynced
}

// New returns a controller; call Run.
func New(o Options) (*Controller, error) {
	switch {
	case o.Client == nil:
		return nil, errors.New("deletioncost: no client")
	case o.Pods == nil:
		return nil, errors.New("deletioncost: no pod informer")
	case o.Fill == nil:
		return nil, errors.New("deletioncost: no fill function")
	case o.Period <= 0:
		return nil, fmt.Errorf("deletioncost: period %s, want > 0", o.Period)
	}
	inf := o.Pods.Informer()
	return &Controller{o: o, lister: o.Pods.Lister(), synced: inf.HasSynced}, nil
}

// Run syncs every Period until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	logger := klog.FromContext(ctx).WithName("deletioncost")
	if !toolscache.WaitForCacheSync(ctx.Done(), c.synced) {
		return
	}
	logger.Info("Keeping the pod-deletion-cost of gpuslice's ReplicaSet pods", "annotation", Annotation, "period", c.o.Period)
	ctx = klog.NewContext(ctx, logger)
	wait.UntilWithContext(ctx, func(ctx context.Context) {
		if _, err := c.Sync(ctx); err != nil {
			logger.Error(err, "Syncing pod deletion costs")
		}
	}, c.o.Period)
}

// Sync judges every pod once and patches those whose cost must change. It
// returns how many pods it patched; errors of single pods are joined (a pod
// deleted meanwhile, or whose annotation changed under us, is no error).
func (c *Controller) Sync(ctx context.Context) (int, error) {
	pods, err := c.lister.List(labels.Everything())
	if err != nil {
		return 0, err
	}
	type nodeFill struct {
		fill  float64
		known bool
	}
	fills := map[string]nodeFill{}
	logger := klog.FromContext(ctx)
	var errs []error
	patched := 0
	for _, pod := range pods {
		if pod.Spec.NodeName == "" {
			continue
		}
		f, ok := fills[pod.Spec.NodeName]
		if !ok {
			f.fill, f.known = c.o.Fill(pod.Spec.NodeName)
			fills[pod.Spec.NodeName] = f
		}
		action, want := Decide(pod, f.fill, f.known)
		if action != Write {
			continue
		}
		if err := c.patch(ctx, pod, want); err != nil {
			if apierrors.IsNotFound(err) || apierrors.IsConflict(err) || apierrors.IsInvalid(err) || isTestFailed(err) {
				continue // gone, or changed under us: judged again next period
			}
			errs = append(errs, fmt.Errorf("pod %s/%s: %w", pod.Namespace, pod.Name, err))
			continue
		}
		patched++
		logger.V(4).Info("Set pod deletion cost", "pod", klog.KObj(pod), "node", pod.Spec.NodeName, "cost", want)
	}
	return patched, errors.Join(errs...)
}

// patch sets the annotation with a JSON patch that first tests the value it
// replaces, so that a cost someone wrote since our read is not overwritten.
func (c *Controller) patch(ctx context.Context, pod *v1.Pod, want string) error {
	path := "/metadata/annotations/" + strings.ReplaceAll(strings.ReplaceAll(Annotation, "~", "~0"), "/", "~1")
	type op struct {
		Op    string `json:"op"`
		Path  string `json:"path"`
		Value string `json:"value"`
	}
	var ops []op
	if cur, ok := pod.Annotations[Annotation]; ok {
		ops = append(ops, op{Op: "test", Path: path, Value: cur}, op{Op: "replace", Path: path, Value: want})
	} else {
		ops = append(ops, op{Op: "add", Path: path, Value: want})
	}
	body, err := json.Marshal(ops)
	if err != nil {
		return err
	}
	_, err = c.o.Client.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.JSONPatchType, body, metav1.PatchOptions{})
	return err
}

// isTestFailed recognises a failed JSON-patch test operation (the API server
// answers 422 Invalid, which IsInvalid covers; the fake clientset returns the
// json-patch library's error).
func isTestFailed(err error) bool {
	return strings.Contains(err.Error(), "testing value") || strings.Contains(err.Error(), "test operation")
}
