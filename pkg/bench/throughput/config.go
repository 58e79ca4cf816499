package throughput

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"sigs.k8s.io/yaml"
)

// profile is one scheduler profile under test.
type profile struct {
	label         string // "stock" or "gpuslice", in the report
	schedulerName string // the profile's schedulerName, set on the pods
}

const (
	stockLabel        = "stock"
	gpusliceLabel     = "gpuslice"
	stockScheduler    = "default-scheduler"
	gpusliceScheduler = "gpuslice-binpack"

	// The stock plugins without the system-default topology spreading
	// (--stock-batched): like gpuslice's packing profiles, its pods are
	// signed and the scheduler batches them. It shows what of gpuslice's
	// figure is batching, which any profile without default spreading gets.
	stockBatchedLabel     = "stock-batched"
	stockBatchedScheduler = "default-scheduler-batched"

	// heartbeatTimeout replaces the shipped 40s: the benchmark renews no
	// Lease (one heartbeat per node at setup), so the nodes must stay fresh
	// for the whole run. Freshness is still checked in every Filter call.
	heartbeatTimeout = time.Hour

	// clientQPS is the scheduler's client rate limit (QPS and burst), as in
	// scheduler_perf: the API server, not client-side throttling, limits.
	clientQPS = 5000

	// shippedConfig holds the ConfigMap with the shipped profiles.
	shippedConfig = "manifests/scheduler/config.yaml"
)

// profiles are the profiles of a round, in the order they run: stock and
// gpuslice, and with --stock-batched the stock plugins without default
// spreading last.
func (o *options) profiles() []profile {
	out := []profile{{stockLabel, stockScheduler}, {gpusliceLabel, gpusliceScheduler}}
	if o.stockBatched {
		out = append(out, profile{stockBatchedLabel, stockBatchedScheduler})
	}
	return out
}

// schedulerConfig returns the KubeSchedulerConfiguration of the run: one
// scheduler process with the stock default-scheduler profile (kube-scheduler's
// default plugins, nothing changed) and the gpuslice-binpack profile exactly
// as shipped in manifests/scheduler/config.yaml, except heartbeatTimeout
// (see the constant); with stockBatched, a third profile of the stock plugins
// with gpuslice-binpack's PodTopologySpread settings. Client QPS and burst
// are clientQPS; no leader election.
func schedulerConfig(repoRoot, kubeconfig string, stockBatched bool) (string, error) {
	path := filepath.Join(repoRoot, shippedConfig)
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading the shipped scheduler configuration: %w", err)
	}
	var cm struct {
		Data map[string]string `json:"data"`
	}
	if err := yaml.Unmarshal(data, &cm); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	var shipped map[string]any
	if err := yaml.Unmarshal([]byte(cm.Data["config.yaml"]), &shipped); err != nil {
		return "", fmt.Errorf("%s: data.config.yaml: %w", path, err)
	}
	gp, err := shippedProfile(shipped, gpusliceScheduler)
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	if err := setGPUSliceArg(gp, "heartbeatTimeout", heartbeatTimeout.String()); err != nil {
		return "", fmt.Errorf("%s: profile %s: %w", path, gpusliceScheduler, err)
	}
	profiles := []any{map[string]any{"schedulerName": stockScheduler}, gp}
	if stockBatched {
		// The stock plugins with the shipped profile's own PodTopologySpread
		// settings, so the two cannot drift apart.
		spread, ok := pluginConfig(gp, "PodTopologySpread")
		if !ok {
			return "", fmt.Errorf("%s: profile %s has no pluginConfig for PodTopologySpread to give %s", path, gpusliceScheduler, stockBatchedScheduler)
		}
		profiles = append(profiles, map[string]any{"schedulerName": stockBatchedScheduler, "pluginConfig": []any{spread}})
	}
	cfg := map[string]any{
		"apiVersion":       shipped["apiVersion"],
		"kind":             shipped["kind"],
		"clientConnection": map[string]any{"kubeconfig": kubeconfig, "qps": clientQPS, "burst": clientQPS},
		"leaderElection":   map[string]any{"leaderElect": false},
		"profiles":         profiles,
	}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		return "", fmt.Errorf("encoding the scheduler configuration: %w", err)
	}
	return string(out), nil
}

// shippedProfile returns the profile named name of a decoded configuration.
func shippedProfile(cfg map[string]any, name string) (map[string]any, error) {
	list, _ := cfg["profiles"].([]any)
	for _, p := range list {
		if m, ok := p.(map[string]any); ok && m["schedulerName"] == name {
			return m, nil
		}
	}
	return nil, fmt.Errorf("no profile %q", name)
}

// pluginConfig returns the pluginConfig entry for the plugin name in a
// decoded profile.
func pluginConfig(profile map[string]any, name string) (map[string]any, bool) {
	list, _ := profile["pluginConfig"].([]any)
	for _, pc := range list {
		if m, ok := pc.(map[string]any); ok && m["name"] == name {
			return m, true
		}
	}
	return nil, false
}

// setGPUSliceArg sets one of the GPUSlice plugin's args in a decoded profile.
func setGPUSliceArg(profile map[string]any, key string, value any) error {
	m, ok := pluginConfig(profile, "GPUSlice")
	if !ok {
		return fmt.Errorf("no pluginConfig for GPUSlice")
	}
	args, ok := m["args"].(map[string]any)
	if !ok {
		args = map[string]any{}
		m["args"] = args
	}
	args[key] = value
	return nil
}
