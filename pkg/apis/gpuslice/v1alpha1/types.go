package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// NodeState says whether the scheduler may place GPU pods on the node.
// +kubebuilder:validation:Enum=Ready;Reconfiguring;Degraded
type NodeState string

const (
	// StateReady: the topology is current and complete.
	StateReady NodeState = "Ready"
	// StateReconfiguring: NVIDIA's MIG manager is applying a layout (node
	// label nvidia.com/mig.config.state is not "success"); the advertised
	// devices are about to change.
	StateReconfiguring NodeState = "Reconfiguring"
	// StateDegraded: the exporter could not read part of the truth (NVML, the
	// device-plugin config, the kubelet); Message says what.
	StateDegraded NodeState = "Degraded"
)

// GPUNode is the GPU topology of one node, published by the gpuslice
// exporter running on it. It is cluster-scoped, named after the node and
// owned by it. The exporter writes it only when the topology changes; its
// liveness is the Lease of the same name in the exporter's namespace.
//
// +genclient
// +genclient:nonNamespaced
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=gn
// +kubebuilder:printcolumn:name="GPUs",type=integer,JSONPath=`.spec.summary.gpus`
// +kubebuilder:printcolumn:name="MIG",type=string,JSONPath=`.spec.summary.mig`,description="MIG strategy, empty when no GPU has MIG enabled"
// +kubebuilder:printcolumn:name="Slices",type=string,JSONPath=`.spec.summary.slices`,description="free/total advertised devices"
// +kubebuilder:printcolumn:name="State",type=string,JSONPath=`.spec.state`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type GPUNode struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec GPUNodeSpec `json:"spec"`
}

// GPUNodeSpec is the observed topology.
type GPUNodeSpec struct {
	// NodeName is the node this topology describes; equal to metadata.name.
	// +kubebuilder:validation:MinLength=1
	NodeName string `json:"nodeName"`
	// MIGStrategy is the device plugin's --mig-strategy.
	// +kubebuilder:validation:Enum=none;single;mixed
	MIGStrategy string `json:"migStrategy"`
	// DeviceIDStrategy is the device plugin's --device-id-strategy.
	// +kubebuilder:validation:Enum=uuid;index
	// +optional
	DeviceIDStrategy string `json:"deviceIDStrategy,omitempty"`
	// AllocationPolicy is the device plugin's shared-devices allocation
	// policy; empty when unknown.
	// +kubebuilder:validation:Enum=distributed;packed;spread
	// +optional
	AllocationPolicy string `json:"allocationPolicy,omitempty"`
	// TimeSlicing is the device plugin's sharing.timeSlicing config.
	// +optional
	TimeSlicing *TimeSlicing `json:"timeSlicing,omitempty"`
	// GPUs are the node's physical GPUs.
	// +listType=atomic
	// +optional
	GPUs []GPU `json:"gpus,omitempty"`
	// Allocations are the devices the kubelet reports per pod (PodResources
	// API): the ground truth the scheduler reconciles its predictions with.
	// +listType=atomic
	// +optional
	Allocations []PodAllocation `json:"allocations,omitempty"`
	// AllocationsFingerprint is a hash of Allocations, so that readers can
	// tell cheaply whether the kubelet's view changed.
	// +optional
	AllocationsFingerprint string `json:"allocationsFingerprint,omitempty"`
	// State says whether the node can take GPU pods.
	State NodeState `json:"state"`
	// Message explains a state other than Ready.
	// +optional
	Message string `json:"message,omitempty"`
	// Summary holds counts for `kubectl get`.
	// +optional
	Summary Summary `json:"summary,omitempty"`
}

// TimeSlicing mirrors the device plugin's sharing.timeSlicing config.
type TimeSlicing struct {
	// +optional
	RenameByDefault bool `json:"renameByDefault,omitempty"`
	// +optional
	FailRequestsGreaterThanOne bool `json:"failRequestsGreaterThanOne,omitempty"`
	// +listType=atomic
	Resources []SharedResource `json:"resources"`
}

// SharedResource is one time-sliced resource.
type SharedResource struct {
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
	// +optional
	Rename string `json:"rename,omitempty"`
	// +kubebuilder:validation:Minimum=1
	Replicas int32 `json:"replicas"`
}

// GPU is one physical GPU.
type GPU struct {
	// +kubebuilder:validation:MinLength=1
	UUID string `json:"uuid"`
	// +kubebuilder:validation:Minimum=0
	Index int32 `json:"index"`
	// Product is the NVML device name, e.g. "NVIDIA A100-SXM4-40GB".
	Product string `json:"product"`
	// +kubebuilder:validation:Minimum=0
	MemoryMiB int64 `json:"memoryMiB"`
	Healthy   bool  `json:"healthy"`
	// UnhealthyReason says why the GPU is unhealthy, e.g. "XID 79".
	// +optional
	UnhealthyReason string `json:"unhealthyReason,omitempty"`
	// +optional
	MIGEnabled bool `json:"migEnabled,omitempty"`
	// Instances are the MIG GPU instances, each with its one MIG device.
	// +listType=atomic
	// +optional
	Instances []GPUInstance `json:"instances,omitempty"`
}

// GPUInstance is one MIG GPU instance.
type GPUInstance struct {
	// Profile without the resource prefix, e.g. "3g.40gb".
	// +kubebuilder:validation:MinLength=1
	Profile string `json:"profile"`
	// Start and Size are the placement in memory slices.
	// +kubebuilder:validation:Minimum=0
	Start int32 `json:"start"`
	// +kubebuilder:validation:Minimum=1
	Size int32 `json:"size"`
	// DeviceID is the MIG device UUID the device plugin advertises.
	DeviceID string `json:"deviceID"`
}

// PodAllocation is what the kubelet gave one pod.
type PodAllocation struct {
	PodUID    string `json:"podUID"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// +listType=atomic
	Containers []ContainerAllocation `json:"containers"`
}

// ContainerAllocation is what the kubelet gave one container.
type ContainerAllocation struct {
	Name string `json:"name"`
	// +listType=atomic
	Devices []ResourceDevices `json:"devices"`
}

// ResourceDevices are the device IDs of one resource.
type ResourceDevices struct {
	Resource string `json:"resource"`
	// +listType=atomic
	DeviceIDs []string `json:"deviceIDs"`
}

// Summary holds counts for printer columns.
type Summary struct {
	// +kubebuilder:validation:Minimum=0
	// +optional
	GPUs int32 `json:"gpus,omitempty"`
	// MIG is the MIG strategy when a GPU has MIG enabled; empty otherwise.
	// +optional
	MIG string `json:"mig,omitempty"`
	// Slices is "free/total" advertised devices (replicas counted one by one).
	// +optional
	Slices string `json:"slices,omitempty"`
}

// GPUNodeList is a list of GPUNode.
//
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
type GPUNodeList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []GPUNode `json:"items"`
}
