package instancetypes

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Karpenter's well-known names that the generated objects use.
const (
	// LabelCapacityType is Karpenter's capacity-type label.
	LabelCapacityType = "karpenter.sh/capacity-type"
	// CapacityOnDemand is the capacity type the prices are for.
	CapacityOnDemand = "on-demand"
	// KWOKNodeClassName is the KWOKNodeClass the NodePools refer to.
	KWOKNodeClassName = "default"
	// LabelInstanceShape is set by every generated NodePool on its nodes:
	// the instance type's name, so that a pod or a test can select a setup.
	LabelInstanceShape = "gpuslice.io/instance-type"
)

// kwokInstanceType is one entry of the KWOK provider's instance-types file
// (INSTANCE_TYPES_FILE_PATH; sigs.k8s.io/karpenter/kwok/cloudprovider
// InstanceTypeOptions, v1.14).
type kwokInstanceType struct {
	Name             string              `json:"name"`
	Offerings        []kwokOffering      `json:"offerings"`
	Architecture     string              `json:"architecture"`
	OperatingSystems []string            `json:"operatingSystems"`
	Resources        corev1.ResourceList `json:"resources"`
}

type kwokOffering struct {
	Price        float64                          `json:"Price"`
	Available    bool                             `json:"Available"`
	Requirements []corev1.NodeSelectorRequirement `json:"Requirements"`
}

// Pods is the pod capacity given to every type (the kubelet's default).
const Pods = 110

// NodeResources is the capacity of a node of this type as its kubelet
// reports it: cpu, memory, pods and what the device plugin advertises.
// Karpenter is told exactly this; the simulated node reports exactly this.
func (r *Resolved) NodeResources() corev1.ResourceList {
	res := corev1.ResourceList{
		corev1.ResourceCPU:    *resource.NewQuantity(int64(r.CPU), resource.DecimalSI),
		corev1.ResourceMemory: *resource.NewQuantity(r.MemoryGiB<<30, resource.BinarySI),
		corev1.ResourcePods:   *resource.NewQuantity(Pods, resource.DecimalSI),
	}
	for name, n := range r.Advertised {
		res[corev1.ResourceName(name)] = *resource.NewQuantity(n, resource.DecimalSI)
	}
	return res
}

// KarpenterInstanceTypes is the KWOK provider's instance-types file for
// these types: cpu, memory, pods and every extended resource the device
// plugin advertises, one on-demand offering per zone at the type's price.
func (s *Set) KarpenterInstanceTypes(zones []string) ([]byte, error) {
	if len(zones) == 0 {
		return nil, errors.New("instance types: no zone for the offerings")
	}
	out := make([]kwokInstanceType, 0, len(s.types))
	for _, r := range s.types {
		it := kwokInstanceType{Name: r.Name, Architecture: "amd64", OperatingSystems: []string{string(corev1.Linux)}, Resources: r.NodeResources()}
		for _, z := range zones {
			it.Offerings = append(it.Offerings, kwokOffering{
				Price:     r.Price.USDPerHour,
				Available: true,
				Requirements: []corev1.NodeSelectorRequirement{
					{Key: LabelCapacityType, Operator: corev1.NodeSelectorOpIn, Values: []string{CapacityOnDemand}},
					{Key: corev1.LabelTopologyZone, Operator: corev1.NodeSelectorOpIn, Values: []string{z}},
				},
			})
		}
		out = append(out, it)
	}
	return json.MarshalIndent(out, "", "  ")
}

// Consolidation policies of a NodePool's disruption block.
const (
	WhenEmpty                 = "WhenEmpty"
	WhenEmptyOrUnderutilized  = "WhenEmptyOrUnderutilized"
	defaultConsolidationNodes = "100%"
)

// NodePoolOptions shape the generated NodePools.
type NodePoolOptions struct {
	// ConsolidationPolicy is WhenEmpty or WhenEmptyOrUnderutilized.
	ConsolidationPolicy string
	// ConsolidateAfter is how long a node must be consolidatable first.
	ConsolidateAfter time.Duration
	// BudgetNodes is the disruption budget ("100%", "3"); empty: 100%.
	BudgetNodes string
	// StartupTaints are put on each node at creation and expected to be
	// removed by a controller once the node is ready for its pods (gpuslice's
	// scheduler removes its unusable-GPU taint once the node's exporter
	// publishes; see the README). Karpenter ignores them when it simulates
	// an uninitialized node.
	StartupTaints []corev1.Taint
	// Taints are put on each node for good (e.g. nvidia.com/gpu:NoSchedule).
	Taints []corev1.Taint
}

func (o NodePoolOptions) validate() error {
	switch o.ConsolidationPolicy {
	case WhenEmpty, WhenEmptyOrUnderutilized:
	default:
		return fmt.Errorf("consolidation policy %q (want %s or %s)", o.ConsolidationPolicy, WhenEmpty, WhenEmptyOrUnderutilized)
	}
	if o.ConsolidateAfter < 0 || o.ConsolidateAfter%time.Second != 0 {
		return fmt.Errorf("consolidateAfter %s: want a whole, non-negative number of seconds", o.ConsolidateAfter)
	}
	return nil
}

// NodePoolName is the name of the NodePool of an instance type: "gpu-"
// and the type's name, lower case, dots and underscores as dashes.
func NodePoolName(typeName string) string {
	return "gpu-" + strings.NewReplacer(".", "-", "_", "-").Replace(strings.ToLower(typeName))
}

// NodePools returns one karpenter.sh/v1 NodePool per type: it launches only
// that type, labels its nodes with the type's setup (Labels, plus
// LabelInstanceShape), and consolidates as the options say. Nodes never
// expire.
func (s *Set) NodePools(o NodePoolOptions) ([]*unstructured.Unstructured, error) {
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("node pools: %w", err)
	}
	budget := o.BudgetNodes
	if budget == "" {
		budget = defaultConsolidationNodes
	}
	var out []*unstructured.Unstructured
	for _, r := range s.types {
		labels := map[string]any{LabelInstanceShape: r.Name}
		for k, v := range r.Labels() {
			labels[k] = v
		}
		spec := map[string]any{
			"nodeClassRef": map[string]any{"group": "karpenter.kwok.sh", "kind": "KWOKNodeClass", "name": KWOKNodeClassName},
			"requirements": []any{
				map[string]any{"key": corev1.LabelInstanceTypeStable, "operator": "In", "values": []any{r.Name}},
				map[string]any{"key": LabelCapacityType, "operator": "In", "values": []any{CapacityOnDemand}},
			},
			"expireAfter": "Never",
		}
		if len(o.StartupTaints) > 0 {
			spec["startupTaints"] = taints(o.StartupTaints)
		}
		if len(o.Taints) > 0 {
			spec["taints"] = taints(o.Taints)
		}
		np := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "karpenter.sh/v1",
			"kind":       "NodePool",
			"metadata":   map[string]any{"name": NodePoolName(r.Name)},
			"spec": map[string]any{
				"template": map[string]any{
					"metadata": map[string]any{"labels": labels},
					"spec":     spec,
				},
				"disruption": map[string]any{
					"consolidationPolicy": o.ConsolidationPolicy,
					"consolidateAfter":    o.ConsolidateAfter.String(),
					"budgets":             []any{map[string]any{"nodes": budget}},
				},
			},
		}}
		out = append(out, np)
	}
	return out, nil
}

func taints(ts []corev1.Taint) []any {
	out := make([]any, 0, len(ts))
	for _, t := range ts {
		m := map[string]any{"key": t.Key, "effect": string(t.Effect)}
		if t.Value != "" {
			m["value"] = t.Value
		}
		out = append(out, m)
	}
	return out
}

// KWOKNodeClass is the (empty) KWOKNodeClass every NodePool refers to.
func KWOKNodeClass() *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "karpenter.kwok.sh/v1alpha1",
		"kind":       "KWOKNodeClass",
		"metadata":   map[string]any{"name": KWOKNodeClassName},
	}}
}
