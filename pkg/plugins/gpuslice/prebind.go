package gpuslice

import (
	"context"
	"fmt"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	fwk "k8s.io/kube-scheduler/framework"

	"github.com/gpuslice/gpuslice/pkg/allocator"
	"github.com/gpuslice/gpuslice/pkg/assignment"
)

// PreBindPreFlight skips pods without a reservation, and every pod where
// GPUSlice's Bind records the devices with the binding itself (bindsFirst):
// a skipped PreBind also spares the scheduler's nominatedNodeName patch.
func (p *Plugin) PreBindPreFlight(_ context.Context, cs fwk.CycleState, _ *v1.Pod, _ string) (*fwk.PreBindPreFlightResult, *fwk.Status) {
	if _, err := cs.Read(placementKey); err != nil || p.bindsFirst() {
		return nil, fwk.NewStatus(fwk.Skip)
	}
	return &fwk.PreBindPreFlightResult{AllowParallel: true}, nil
}

// PreBind records the reserved devices on the pod: one merge patch of the
// gpuslice.io/assignment annotation, idempotent, retried on conflicts and
// transient errors. Where GPUSlice binds first, Bind records them instead
// and PreBind does nothing (it runs when the scheduler does not call
// PreBindPreFlight).
func (p *Plugin) PreBind(ctx context.Context, cs fwk.CycleState, pod *v1.Pod, _ string) *fwk.Status {
	pl, status := placementOf(cs)
	if status != nil || pl == nil || p.bindsFirst() {
		return status
	}
	patch, err := assignment.FromPlacement(pl).Patch()
	if err != nil {
		return fwk.AsStatus(err)
	}
	retriable := func(err error) bool {
		return apierrors.IsConflict(err) || apierrors.IsServerTimeout(err) || apierrors.IsTooManyRequests(err) || apierrors.IsInternalError(err)
	}
	err = retry.OnError(retry.DefaultBackoff, retriable, func() error {
		_, err := p.handle.ClientSet().CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.MergePatchType, patch, metav1.PatchOptions{})
		return err
	})
	if err != nil {
		p.shared.metrics.reservation(outcomeRecordFailed)
		return fwk.AsStatus(fmt.Errorf("recording GPU assignment on pod %s/%s: %w", pod.Namespace, pod.Name, err))
	}
	p.shared.metrics.reservation(outcomeRecorded)
	return nil
}

// placementOf returns the placement Reserve committed in this cycle; nil
// when there is none (the pod asks for no GPU).
func placementOf(cs fwk.CycleState) (*allocator.Placement, *fwk.Status) {
	data, err := cs.Read(placementKey)
	if err != nil {
		return nil, nil
	}
	pd, ok := data.(*placementData)
	if !ok {
		return nil, fwk.AsStatus(fmt.Errorf("cycle state %q holds %T", placementKey, data))
	}
	return pd.p, nil
}
