package agent

import (
	"context"
	"fmt"
	"sync"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"

	gpusliceapi "github.com/gpuslice/gpuslice/pkg/apis/gpuslice/v1alpha1"
)

// publisher writes the node's GPUNode when, and only when, it differs
// semantically from the desired spec.
//
// It converges the live object, not a memory of it: the agent watches its
// own GPUNode and calls observed with every version it sees. A version it
// did not write itself (a deletion, a hand edit, an older write arriving
// late) drops the cached copy, so that the next sync reads the live object,
// recreates or restores it, and writes nothing when it is already right.
type publisher struct {
	gpuNodes resource
	node     string

	mu sync.Mutex
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
	if last := p.cached(); last != nil && equality.Semantic.DeepEqual(last.Spec, spec) {
		return false, nil
	}
	wrote := false
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur := p.cached()
		if cur == nil {
			got := &gpusliceapi.GPUNode{}
			err := p.gpuNodes.get(ctx, p.node, got)
			switch {
			case apierrors.IsNotFound(err):
				obj := &gpusliceapi.GPUNode{ObjectMeta: metav1.ObjectMeta{Name: p.node, OwnerReferences: ownerRefs(owner)}, Spec: spec}
				created := &gpusliceapi.GPUNode{}
				if err := p.gpuNodes.create(ctx, obj, created); err != nil {
					if apierrors.IsAlreadyExists(err) {
						// Created meanwhile (by a former exporter, an
						// admin): read it and compare on the next try.
						return apierrors.NewConflict(gpusliceapi.Resource("gpunodes"), p.node, err)
					}
					return err
				}
				p.remember(created)
				wrote = true
				return nil
			case err != nil:
				return err
			}
			cur = got
		}
		if equality.Semantic.DeepEqual(cur.Spec, spec) && len(cur.OwnerReferences) > 0 {
			p.remember(cur)
			return nil
		}
		obj := cur.DeepCopy()
		obj.Spec = spec
		if len(obj.OwnerReferences) == 0 {
			obj.OwnerReferences = ownerRefs(owner)
		}
		updated := &gpusliceapi.GPUNode{}
		if err := p.gpuNodes.update(ctx, p.node, obj, updated); err != nil {
			p.forget() // re-read on the next attempt
			return err
		}
		p.remember(updated)
		wrote = true
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("publishing GPUNode %s: %w", p.node, err)
	}
	return wrote, nil
}

func (p *publisher) cached() *gpusliceapi.GPUNode {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last
}

// version is the resourceVersion of the live object as last written or
// read here; "" when unknown (nothing cached).
func (p *publisher) version() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.last == nil {
		return ""
	}
	return p.last.ResourceVersion
}

func (p *publisher) remember(obj *gpusliceapi.GPUNode) {
	p.mu.Lock()
	p.last = obj
	p.mu.Unlock()
}

// forget drops the cached object (after an external change or deletion).
func (p *publisher) forget() { p.remember(nil) }

// observed is called with each version of the live object the agent's watch
// delivers (resourceVersion empty for a deletion). It reports whether that
// version is not the one last written or read here, in which case the cached
// copy is dropped and the caller should sync: the live object may no longer
// be the desired one.
func (p *publisher) observed(resourceVersion string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.last != nil && resourceVersion != "" && p.last.ResourceVersion == resourceVersion {
		return false // our own write (or read) coming back
	}
	p.last = nil
	return true
}

const fieldManager = "gpuslice-exporter"

func ownerRefs(node *metav1.PartialObjectMetadata) []metav1.OwnerReference {
	if node == nil || node.UID == "" {
		return nil
	}
	return []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: node.Name, UID: node.UID}}
}
