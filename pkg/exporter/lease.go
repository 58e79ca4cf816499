package exporter

import (
	"context"
	"fmt"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// heartbeat renews the node's Lease: the exporter's liveness, read by the
// scheduler, so that the GPUNode itself is written only on change.
type heartbeat struct {
	client    kubernetes.Interface
	namespace string
	node      string
	duration  time.Duration
	lease     *coordinationv1.Lease
}

func (h *heartbeat) renew(ctx context.Context, now time.Time) error {
	leases := h.client.CoordinationV1().Leases(h.namespace)
	rt := metav1.NewMicroTime(now)
	if h.lease == nil {
		got, err := leases.Get(ctx, h.node, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			holder := "gpuslice-exporter/" + h.node
			secs := int32(h.duration / time.Second)
			created, err := leases.Create(ctx, &coordinationv1.Lease{
				ObjectMeta: metav1.ObjectMeta{Name: h.node, Namespace: h.namespace},
				Spec:       coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &secs, AcquireTime: &rt, RenewTime: &rt},
			}, metav1.CreateOptions{FieldManager: fieldManager})
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
	updated, err := leases.Update(ctx, l, metav1.UpdateOptions{FieldManager: fieldManager})
	if err != nil {
		h.lease = nil // re-read next time (conflict, deletion)
		return fmt.Errorf("renewing Lease %s/%s: %w", h.namespace, h.node, err)
	}
	h.lease = updated
	return nil
}
