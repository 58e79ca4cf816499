package controlplane

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
)

// TaintNodeNotReady is the taint the TaintNodesByCondition admission plugin
// puts on every new Node. The node lifecycle controller of a
// controller-manager would remove it once the Node is Ready; here nothing
// does, so CreateReadyNode removes it.
const TaintNodeNotReady = "node.kubernetes.io/not-ready"

// DefaultNodeResources are the capacity of a node made by CreateReadyNode
// before its own resources are added.
func DefaultNodeResources() corev1.ResourceList {
	return corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("64"),
		corev1.ResourceMemory: resource.MustParse("512Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
}

// CreateReadyNode creates node (no kubelet runs: it is a fake) and makes it
// look like one a kubelet registered: status.capacity and
// status.allocatable are DefaultNodeResources plus resources (for example
// "nvidia.com/gpu": 8), the Ready condition is True, written through the
// status subresource, and the node.kubernetes.io/not-ready taint that
// admission added is removed. It returns the Node as stored.
func CreateReadyNode(ctx context.Context, c kubernetes.Interface, node *corev1.Node, resources corev1.ResourceList) (*corev1.Node, error) {
	created, err := c.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("creating node %s: %w", node.Name, err)
	}
	capacity := DefaultNodeResources()
	for k, v := range resources {
		capacity[k] = v
	}
	return MarkNodeReady(ctx, c, created.Name, capacity)
}

// MarkNodeReady makes an existing Node look like one a kubelet registered
// (see CreateReadyNode) with exactly the given capacity and allocatable: a
// Node that an autoscaler created becomes a running node this way.
func MarkNodeReady(ctx context.Context, c kubernetes.Interface, name string, capacity corev1.ResourceList) (*corev1.Node, error) {
	now := metav1.Now()
	var updated *corev1.Node
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := c.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		n.Status.Capacity = capacity.DeepCopy()
		n.Status.Allocatable = capacity.DeepCopy()
		n.Status.Phase = corev1.NodeRunning
		n.Status.Conditions = []corev1.NodeCondition{{
			Type:               corev1.NodeReady,
			Status:             corev1.ConditionTrue,
			Reason:             "KubeletReady",
			Message:            "fake node of gpuslice's test framework",
			LastHeartbeatTime:  now,
			LastTransitionTime: now,
		}}
		updated, err = c.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("updating the status of node %s: %w", name, err)
	}

	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if !hasTaint(updated, TaintNodeNotReady) {
			return nil
		}
		n := updated.DeepCopy()
		n.Spec.Taints = n.Spec.Taints[:0]
		for _, t := range updated.Spec.Taints {
			if t.Key != TaintNodeNotReady {
				n.Spec.Taints = append(n.Spec.Taints, t)
			}
		}
		got, err := c.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{})
		if err == nil {
			updated = got
			return nil
		}
		if fresh, gerr := c.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{}); gerr == nil {
			updated = fresh
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("removing the %s taint of node %s: %w", TaintNodeNotReady, name, err)
	}
	return updated, nil
}

func hasTaint(n *corev1.Node, key string) bool {
	for _, t := range n.Spec.Taints {
		if t.Key == key {
			return true
		}
	}
	return false
}
