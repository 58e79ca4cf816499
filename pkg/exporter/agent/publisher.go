package agent

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"

	gpusliceapi "github.com/gpuslice/gpuslice/pkg/apis/gpuslice/v1alpha1"
)

// publisher writes the node's GPUNode when, and only when, it differs
// semantically from the desired spec.
type publisher struct {
	gpuNodes resource
	node     string
	// last is what was last written or read back; it saves a GET per sync.
	last *gpusliceapi.GPUNode
}

func newPublisher(client rest.Interface, node string) publisher {
	return publisher{
		gpuNodes: resource{client: client, name: "gpunodes", kind: gpusliceapi.SchemeGroupVersion.WithKind("GPUNode")},
		node:     node,
	}
}

// publish makes the stored object match spec. It reports whether it wrote.
// owner is the Node the object belongs to (garbage-collected with it).
func (p *publisher) publish(ctx context.Context, spec gpusliceapi.GPUNodeSpec, owner *metav1.PartialObjectMetadata) (bool, error) {
	if p.last != nil && equality.Semantic.DeepEqual(p.last.Spec, spec) {
		return false, nil
	}
	wrote := false
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur := p.last
		if cur == nil {
			got := &gpusliceapi.GPUNode{}
			err := p.gpuNodes.get(ctx, p.node, got)
			switch {
			case apierrors.IsNotFound(err):
				obj := &gpusliceapi.GPUNode{ObjectMeta: metav1.ObjectMeta{Name: p.node, OwnerReferences: ownerRefs(owner)}, Spec: spec}
				created := &gpusliceapi.GPUNode{}
				if err := p.gpuNodes.create(ctx, obj, created); err != nil {
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
		updated := &gpusliceapi.GPUNode{}
		if err := p.gpuNodes.update(ctx, p.node, obj, updated); err != nil {
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

func ownerRefs(node *metav1.PartialObjectMetadata) []metav1.OwnerReference {
	if node == nil || node.UID == "" {
		return nil
	}
	return []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: node.Name, UID: node.UID}}
}
