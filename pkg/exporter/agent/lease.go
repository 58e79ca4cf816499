package agent

import (
	"context"
	"fmt"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	gpusliceapi "github.com/gpuslice/gpuslice/pkg/apis/gpuslice/v1alpha1"
)

// heartbeat renews the node's Lease: the exporter's liveness, read by the
// scheduler, so that the GPUNode itself is written only on change.
type heartbeat struct {
	leases    resource // in namespace
	namespace string
	node      string
	duration  time.Duration
	lease     *coordinationv1.Lease
}

func newHeartbeat(client rest.Interface, namespace, node string, duration time.Duration) heartbeat {
	return heartbeat{
		leases:    resource{client: client, namespace: namespace, name: "leases", kind: coordinationv1.SchemeGroupVersion.WithKind("Lease")},
		namespace: namespace, node: node, duration: duration,
	}
}

// renew renews the Lease at now; gpuNodeVersion is the resourceVersion of
// the GPUNode as last written or read back ("" when unknown), recorded in
// the LeaseGPUNodeVersionAnnotation so that readers can tell that their copy
// of the GPUNode is behind.
func (h *heartbeat) renew(ctx context.Context, now time.Time, gpuNodeVersion string) error {
	rt := metav1.NewMicroTime(now)
	if h.lease == nil {
		got := &coordinationv1.Lease{}
		err := h.leases.get(ctx, h.node, got)
		switch {
		case apierrors.IsNotFound(err):
			holder := "gpuslice-exporter/" + h.node
			secs := int32(h.duration / time.Second)
			created := &coordinationv1.Lease{}
			err := h.leases.create(ctx, &coordinationv1.Lease{
				ObjectMeta: metav1.ObjectMeta{Name: h.node, Namespace: h.namespace, Annotations: versionAnnotation(nil, gpuNodeVersion)},
				Spec:       coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &secs, AcquireTime: &rt, RenewTime: &rt},
			}, created)
			if err != nil {
				return fmt.Errorf("creating Lease %s/%s: %w", h.namespace, h.node, err)
			}
			h.lease = created
			return nil
		case err != nil:
			return fmt.Errorf("reading Lease %s/%s: %w", h.namespace, h.node, err)
		}
		h.lease = got
	}
	l := h.lease.DeepCopy()
	l.Spec.RenewTime = &rt
	l.Annotations = versionAnnotation(l.Annotations, gpuNodeVersion)
	updated := &coordinationv1.Lease{}
	if err := h.leases.update(ctx, h.node, l, updated); err != nil {
		h.lease = nil // re-read next time (conflict, deletion)
		return fmt.Errorf("renewing Lease %s/%s: %w", h.namespace, h.node, err)
	}
	h.lease = updated
	return nil
}

// versionAnnotation returns annotations with the GPUNode version set, or
// removed when unknown.
func versionAnnotation(annotations map[string]string, version string) map[string]string {
	if version == "" {
		delete(annotations, gpusliceapi.LeaseGPUNodeVersionAnnotation)
		return annotations
	}
	if annotations == nil {
		annotations = map[string]string{}
	}
	annotations[gpusliceapi.LeaseGPUNodeVersionAnnotation] = version
	return annotations
}
