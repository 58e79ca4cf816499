package topology

// MIGStrategy is the NVIDIA device plugin's --mig-strategy.
type MIGStrategy string

const (
	// MIGStrategyNone advertises every GPU as a whole nvidia.com/gpu and
	// ignores MIG instances.
	MIGStrategyNone MIGStrategy = "none"
	// MIGStrategySingle advertises the MIG devices of MIG-enabled GPUs as
	// nvidia.com/gpu. All MIG-enabled GPUs must hold instances of a single
	// profile.
	MIGStrategySingle MIGStrategy = "single"
	// MIGStrategyMixed advertises each MIG device as nvidia.com/mig-<profile>
	// and GPUs without MIG as nvidia.com/gpu.
	MIGStrategyMixed MIGStrategy = "mixed"
)

// AllocationPolicy is the device plugin's --shared-devices-allocation-policy
// (env SHARED_DEVICES_ALLOCATION_POLICY): how its greedy allocator orders
// physical GPUs when it hands out time-sliced replicas and MIG devices.
type AllocationPolicy string

const (
	// PolicyDistributed (the plugin's default) prefers the GPU with the fewest
	// allocated replicas.
	PolicyDistributed AllocationPolicy = "distributed"
	// PolicyPacked prefers the GPU with the most allocated replicas.
	PolicyPacked AllocationPolicy = "packed"
	// PolicySpread prefers the GPU this request has touched least, then the
	// least allocated one.
	PolicySpread AllocationPolicy = "spread"
)

// DeviceIDStrategy is the device plugin's --device-id-strategy: whether whole
// GPUs are advertised by UUID or by index. MIG devices are always advertised
// by their MIG UUID.
type DeviceIDStrategy string

const (
	DeviceIDUUID  DeviceIDStrategy = "uuid"
	DeviceIDIndex DeviceIDStrategy = "index"
)

// Standard resource names of the NVIDIA device plugin.
const (
	ResourceGPU       = "nvidia.com/gpu"
	MIGResourcePrefix = "nvidia.com/mig-"
	SharedSuffix      = ".shared"
	// ReplicaSeparator joins a device ID and a replica number in the IDs the
	// plugin advertises for time-sliced devices: "GPU-<uuid>::3".
	ReplicaSeparator = "::"
)

// Node is everything the scheduler needs to know about one GPU node.
type Node struct {
	Name             string
	MIGStrategy      MIGStrategy
	DeviceIDStrategy DeviceIDStrategy
	// AllocationPolicy is the device plugin's policy on this node. Empty means
	// unknown: callers substitute their configured default.
	AllocationPolicy AllocationPolicy
	// TimeSlicing is the device plugin's sharing.timeSlicing section; nil when
	// the node does not time-slice.
	TimeSlicing *TimeSlicing
	GPUs        []GPU
}

// GPU is one physical GPU as NVML reports it.
type GPU struct {
	UUID    string
	Index   int
	Product string // NVML device name, e.g. "NVIDIA A100-SXM4-40GB"
	// MemoryMiB is the total framebuffer memory.
	MemoryMiB int64
	Healthy   bool
	// UnhealthyReason says why the GPU is unhealthy (e.g. "XID 79").
	UnhealthyReason string
	MIGEnabled      bool
	// Instances are the GPU instances when MIG is enabled, one MIG device each.
	Instances []GPUInstance
}

// GPUInstance is one MIG GPU instance with the single MIG device the device
// plugin advertises for it.
type GPUInstance struct {
	// Profile is the MIG profile name without the resource prefix, e.g. "3g.40gb".
	Profile string
	// Start and Size are the placement in memory slices (nvmlGpuInstancePlacement_t).
	Start int
	Size  int
	// DeviceID is the MIG device UUID the device plugin advertises ("MIG-...").
	DeviceID string
}

// TimeSlicing mirrors the device plugin's sharing.timeSlicing config.
type TimeSlicing struct {
	// RenameByDefault advertises shared resources as <name>.shared unless a
	// resource sets its own Rename.
	RenameByDefault bool
	// FailRequestsGreaterThanOne makes the plugin fail any container that asks
	// for more than one replica of a shared resource.
	FailRequestsGreaterThanOne bool
	Resources                  []SharedResource
	// OneGPUPerRequest is not a setting of NVIDIA's device plugin, which hands
	// out replicas one at a time from any GPU and so may split a request
	// across GPUs. It models GPU-sharing device plugins that serve a
	// container's request of a shared resource from a single GPU, and a
	// request of a whole number of GPUs' replicas from that many unused GPUs
	// (Alibaba's gpushare, HAMi; the model of the FGD paper's simulator, used
	// by the openb packing benchmark). The exporter never sets it.
	OneGPUPerRequest bool
}

// SharedResource is one entry of sharing.timeSlicing.resources.
type SharedResource struct {
	// Name is the resource being shared: nvidia.com/gpu or nvidia.com/mig-<profile>.
	Name string
	// Rename is the advertised name, if set.
	Rename string
	// Replicas is how many replicas each device of Name is split into.
	Replicas int
}
