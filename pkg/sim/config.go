package sim

import (
	"fmt"
	"os"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/yaml"
	schedconfig "k8s.io/kubernetes/pkg/scheduler/apis/config"
	configscheme "k8s.io/kubernetes/pkg/scheduler/apis/config/scheme"

	// Registers GPUSliceArgs with kube-scheduler's config scheme.
	_ "github.com/gpuslice/gpuslice/pkg/apis/config/scheme"
)

// LoadConfig decodes a KubeSchedulerConfiguration (kubescheduler.config.k8s.io/v1,
// YAML) with kube-scheduler's defaulting, as the scheduler binary does.
func LoadConfig(data []byte) (*schedconfig.KubeSchedulerConfiguration, error) {
	obj, _, err := configscheme.Codecs.UniversalDecoder().Decode(data, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("decode scheduler configuration: %w", err)
	}
	cfg, ok := obj.(*schedconfig.KubeSchedulerConfiguration)
	if !ok {
		return nil, fmt.Errorf("decode scheduler configuration: got %T, want KubeSchedulerConfiguration", obj)
	}
	return cfg, nil
}

// LoadConfigMapFile reads the scheduler configuration from a ConfigMap
// manifest (key config.yaml), such as manifests/scheduler/config.yaml.
func LoadConfigMapFile(path string) (*schedconfig.KubeSchedulerConfiguration, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	cfg, err := LoadConfigMap(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// LoadConfigMap decodes the scheduler configuration held by a ConfigMap
// manifest (key config.yaml), such as manifests.SchedulerConfigMap().
func LoadConfigMap(data []byte) (*schedconfig.KubeSchedulerConfiguration, error) {
	var cm corev1.ConfigMap
	if err := yaml.UnmarshalStrict(data, &cm); err != nil {
		return nil, err
	}
	inner, ok := cm.Data["config.yaml"]
	if !ok {
		return nil, fmt.Errorf("ConfigMap has no config.yaml key")
	}
	return LoadConfig([]byte(inner))
}

// StockConfig is kube-scheduler's default configuration (profile
// default-scheduler, NodeResourcesFit LeastAllocated), optionally with
// NodeResourcesFit's scoring strategy replaced (e.g. MostAllocated with GPU
// weights).
func StockConfig(fitArgs string) (*schedconfig.KubeSchedulerConfiguration, error) {
	doc := "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\n"
	if fitArgs != "" {
		doc += "profiles:\n- schedulerName: default-scheduler\n  pluginConfig:\n  - name: NodeResourcesFit\n    args:\n" + fitArgs
	}
	return LoadConfig([]byte(doc))
}

// Profile returns the named profile of a configuration.
func Profile(cfg *schedconfig.KubeSchedulerConfiguration, name string) (*schedconfig.KubeSchedulerProfile, error) {
	for i := range cfg.Profiles {
		if cfg.Profiles[i].SchedulerName == name {
			p := cfg.Profiles[i]
			if p.PercentageOfNodesToScore == nil {
				p.PercentageOfNodesToScore = cfg.PercentageOfNodesToScore
			}
			return &p, nil
		}
	}
	return nil, fmt.Errorf("no profile %q in the scheduler configuration", name)
}
