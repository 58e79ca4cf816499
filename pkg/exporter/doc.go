// Package exporter holds no code: its subpackages are gpuslice's per-node
// exporter, the DaemonSet that publishes each node's GPU topology as a
// GPUNode.
//
//   - agent: the control loop. It builds the desired GPUNode from NVML, the
//     device plugin's config and the kubelet's PodResources API, writes it
//     when it changes and renews the node's heartbeat Lease, through narrow
//     REST clients (agent.Clients; agent.NewClients builds them from a
//     rest.Config, tests take them from a clientset's RESTClient methods).
//   - nvml: the GPUs through NVIDIA's NVML, the only cgo package, with a
//     fake in nvml/fake.
//   - dpconfig: the NVIDIA device plugin's config file.
//   - kubelet: the kubelet's PodResources API over gRPC; its Client is the
//     agent's allocation source.
//   - podresources: the same API with the devices in the scheduler's types
//     (allocator.ResourceDevices), as the tests' simulated kubelets report
//     them; ToKubelet converts them for the agent.
//   - app: the gpuslice-exporter command.
package exporter
