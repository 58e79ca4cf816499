package gpuslice

import (
	"context"
	"fmt"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	fwk "k8s.io/kube-scheduler/framework"
	schedconfig "k8s.io/kubernetes/pkg/scheduler/apis/config"

	"github.com/gpuslice/gpuslice/pkg/assignment"
)

// Bind binds a pod GPUSlice reserved devices for with one API call: a
// Binding whose metadata carries the gpuslice.io/assignment annotation. The
// API server copies a Binding's annotations onto the pod in the same update
// that sets spec.nodeName, so the devices are recorded exactly when the pod
// is bound, and the pod costs the API server one write, as under the stock
// DefaultBinder, instead of three (the scheduler's nominatedNodeName status
// patch for pods with a PreBind step, PreBind's annotation patch, the
// Binding).
//
// It runs only where the profile lists GPUSlice before DefaultBinder at the
// bind extension point (`bind: enabled: [{name: GPUSlice}]` next to
// multiPoint); there PreBind is skipped (see bindsFirst). Elsewhere
// DefaultBinder binds first and PreBind records the devices. Pods without a
// reservation are left to the next bind plugin.
func (p *Plugin) Bind(ctx context.Context, cs fwk.CycleState, pod *v1.Pod, node string) *fwk.Status {
	pl, status := placementOf(cs)
	if status != nil || pl == nil {
		if status == nil {
			status = fwk.NewStatus(fwk.Skip)
		}
		return status
	}
	value, err := assignment.FromPlacement(pl).Encode()
	if err != nil {
		return fwk.AsStatus(err)
	}
	binding := &v1.Binding{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:   pod.Namespace,
			Name:        pod.Name,
			UID:         pod.UID,
			Annotations: map[string]string{assignment.Annotation: value},
		},
		Target: v1.ObjectReference{Kind: "Node", Name: node},
	}
	if err := p.handle.ClientSet().CoreV1().Pods(pod.Namespace).Bind(ctx, binding, metav1.CreateOptions{}); err != nil {
		p.shared.metrics.reservation(outcomeRecordFailed)
		return fwk.AsStatus(fmt.Errorf("binding pod %s/%s to %s with its GPU assignment: %w", pod.Namespace, pod.Name, node, err))
	}
	p.shared.metrics.reservation(outcomeRecorded)
	return nil
}

// pluginLister is what the framework handle offers to list a profile's
// plugins per extension point (the scheduler's frameworkImpl does).
type pluginLister interface {
	ListPlugins() *schedconfig.Plugins
}

// bindsFirst reports whether GPUSlice is this profile's first bind plugin,
// so that its Bind, not DefaultBinder, binds reserved pods. It is decided
// once, at the first binding cycle, when the profile's plugin lists are
// complete; a handle that cannot list its plugins counts as "no", which
// keeps the PreBind path.
func (p *Plugin) bindsFirst() bool {
	p.bindOnce.Do(func() {
		l, ok := p.handle.(pluginLister)
		if !ok {
			return
		}
		if ps := l.ListPlugins(); ps != nil && len(ps.Bind.Enabled) > 0 {
			p.bindFirst = ps.Bind.Enabled[0].Name == Name
		}
	})
	return p.bindFirst
}
