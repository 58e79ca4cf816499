package exporter

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	gpusliceapi "github.com/gpuslice/gpuslice/pkg/apis/gpuslice/v1alpha1"
	versioned "github.com/gpuslice/gpuslice/pkg/generated/clientset/versioned"
)

// publisher writes the node's GPUNode when, and only when, it differs
// semantically from the desired spec.
type publisher struct {
	client versioned.Interface
	node   string
	// last is what was last written or read back; it saves a GET per sync.
	last *gpusliceapi.GPUNode
}

// publish makes the stored object match spec. It reports whether it wrote.
// owner is the Node the object belongs to (garbage-collected with it).
func (p *publisher) publish(ctx context.Context, spec gpusliceapi.GPUNodeSpec, owner *corev1.Node) (bool, error) {
	if p.last != nil && equality.Semantic.DeepEqual(p.last.Spec, spec) {
		return false, nil
	}
	wrote := false
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur := p.last
		if cur == nil {
			got, err := p.client.GpusliceV1alpha1().GPUNodes().Get(ctx, p.node, metav1.GetOptions{})
			switch {
			case apierrors.IsNotFound(err):
				obj := &gpusliceapi.GPUNode{ObjectMeta: metav1.ObjectMeta{Name: p.node, OwnerReferences: ownerRefs(owner)}, Spec: spec}
				created, err := p.client.GpusliceV1alpha1().GPUNodes().Create(ctx, obj, metav1.CreateOptions{FieldManager: fieldManager})
				if err != nil {
					return err
				}
				p.last, wrote = created, true
				return nil
			case err != nil:
				return err
			}
			cur = got
		}
		if equality.Semantic.DeepEqual(cur.Spec, spec) && len(cur.OwnerReferences) > 0 {
			p.last = cur
			return nil
		}
		obj := cur.DeepCopy()
		obj.Spec = spec
		if len(obj.OwnerReferences) == 0 {
			obj.OwnerReferences = ownerRefs(owner)
		}
		updated, err := p.client.GpusliceV1alpha1().GPUNodes().Update(ctx, obj, metav1.UpdateOptions{FieldManager: fieldManager})
		if err != nil {
			p.last = nil // re-read on the next attempt
			return err
		}
		p.last, wrote = updated, true
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("publishing GPUNode %s: %w", p.node, err)
	}
	return wrote, nil
}

// forget drops the cached object (after an external change or deletion).
func (p *publisher) forget() { p.last = nil }

const fieldManager = "gpuslice-exporter"

func ownerRefs(node *corev1.Node) []metav1.OwnerReference {
	if node == nil || node.UID == "" {
		return nil
	}
	return []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: node.Name, UID: node.UID}}
}
