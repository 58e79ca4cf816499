package whatif

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	gpusliceapi "github.com/gpuslice/gpuslice/pkg/apis/gpuslice/v1alpha1"
	"github.com/gpuslice/gpuslice/pkg/generated/clientset/versioned"
)

// ReadSnapshot decodes a cluster snapshot: the output of
// `kubectl get nodes,pods -A -o yaml` (or -o json), a v1 List. GPUNodes in
// the list (`kubectl get nodes,pods,gpunodes -A -o yaml`) are used; items of
// other kinds are ignored.
func ReadSnapshot(data []byte) (*Cluster, error) {
	var list struct {
		Kind  string            `json:"kind"`
		Items []json.RawMessage `json:"items"`
	}
	if err := yaml.Unmarshal(data, &list); err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	if list.Kind != "List" && list.Kind != "NodeList" && list.Kind != "PodList" {
		return nil, fmt.Errorf("snapshot: kind %q, want a List (kubectl get nodes,pods -A -o yaml)", list.Kind)
	}
	c := &Cluster{GPUNodes: map[string]*gpusliceapi.GPUNode{}}
	for i, raw := range list.Items {
		var tm metav1.TypeMeta
		if err := json.Unmarshal(raw, &tm); err != nil {
			return nil, fmt.Errorf("snapshot item %d: %w", i, err)
		}
		if tm.Kind == "" {
			switch list.Kind {
			case "NodeList":
				tm.Kind = "Node"
			case "PodList":
				tm.Kind = "Pod"
			}
		}
		var err error
		switch tm.Kind {
		case "Node":
			n := &v1.Node{}
			if err = json.Unmarshal(raw, n); err == nil {
				c.Nodes = append(c.Nodes, n)
			}
		case "Pod":
			p := &v1.Pod{}
			if err = json.Unmarshal(raw, p); err == nil {
				c.Pods = append(c.Pods, p)
			}
		case "GPUNode":
			g := &gpusliceapi.GPUNode{}
			if err = json.Unmarshal(raw, g); err == nil {
				c.GPUNodes[g.Name] = g
			}
		}
		if err != nil {
			return nil, fmt.Errorf("snapshot item %d (%s): %w", i, tm.Kind, err)
		}
	}
	if len(c.Nodes) == 0 {
		return nil, fmt.Errorf("snapshot: no nodes (kubectl get nodes,pods -A -o yaml)")
	}
	return c, nil
}

// LoadSnapshot reads a snapshot file.
func LoadSnapshot(path string) (*Cluster, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c, err := ReadSnapshot(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// ReadLive lists the nodes, the pods of every namespace and the GPUNodes of
// a cluster; it only reads. A cluster without gpuslice's CRD has no
// GPUNodes.
func ReadLive(ctx context.Context, kube kubernetes.Interface, gpu versioned.Interface) (*Cluster, error) {
	c := &Cluster{GPUNodes: map[string]*gpusliceapi.GPUNode{}}
	nodes, err := kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing nodes: %w", err)
	}
	for i := range nodes.Items {
		c.Nodes = append(c.Nodes, &nodes.Items[i])
	}
	pods, err := kube.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing pods: %w", err)
	}
	for i := range pods.Items {
		c.Pods = append(c.Pods, &pods.Items[i])
	}
	if gpu != nil {
		gns, err := gpu.GpusliceV1alpha1().GPUNodes().List(ctx, metav1.ListOptions{})
		switch {
		case apierrors.IsNotFound(err) || meta.IsNoMatchError(err):
			// gpuslice is not installed.
		case err != nil:
			return nil, fmt.Errorf("listing GPUNodes: %w", err)
		default:
			for i := range gns.Items {
				c.GPUNodes[gns.Items[i].Name] = &gns.Items[i]
			}
		}
	}
	return c, nil
}
