package mig

import (
	"fmt"
	"strings"

	schedconfig "k8s.io/kubernetes/pkg/scheduler/apis/config"

	"github.com/gpuslice/gpuslice/pkg/apis/config"
	"github.com/gpuslice/gpuslice/test/bench/sim"
)

// Policy names, in report order.
const (
	PolicyBinpack       = "gpuslice-binpack"
	PolicyFragmentation = "gpuslice-fragmentation-aware"
	PolicyKubeDefault   = "kube-default"
	PolicyKubeMost      = "kube-MostAllocated"
)

// PolicyNames lists every policy in report order.
func PolicyNames() []string {
	return []string{PolicyBinpack, PolicyFragmentation, PolicyKubeDefault, PolicyKubeMost}
}

// Policy is a kube-scheduler profile the workload is placed with.
type Policy struct {
	Name    string
	Profile *schedconfig.KubeSchedulerProfile
	// GPUSlice is true when the profile runs the GPUSlice plugin (its
	// predictions are checked: sim's Mispredicted must stay 0).
	GPUSlice bool
}

// Policies builds the named policies (nil or "all": every one):
//
//   - gpuslice-binpack: the shipped profile of schedulerConfig (GPUSlice
//     binpack, NodeResourcesFit MostAllocated on cpu and memory);
//   - gpuslice-fragmentation-aware: the same profile with GPUSlice's
//     scoringStrategy.type fragmentation-aware;
//   - kube-default: kube-scheduler's default profile (NodeResourcesFit
//     LeastAllocated on cpu and memory, weight 1 each);
//   - kube-MostAllocated: the default profile with NodeResourcesFit
//     MostAllocated, weight 1 on cpu, memory and each MIG resource the
//     cluster advertises (kube-scheduler's documented way to bin-pack
//     extended resources).
func Policies(names []string, schedulerConfig string, migResources []string) ([]Policy, error) {
	if len(names) == 0 || (len(names) == 1 && names[0] == "all") {
		names = PolicyNames()
	}
	var out []Policy
	for _, name := range names {
		p, err := newPolicy(name, schedulerConfig, migResources)
		if err != nil {
			return nil, fmt.Errorf("policy %s: %w", name, err)
		}
		out = append(out, p)
	}
	return out, nil
}

func newPolicy(name, schedulerConfig string, migResources []string) (Policy, error) {
	switch name {
	case PolicyBinpack, PolicyFragmentation:
		cfg, err := sim.LoadConfigMapFile(schedulerConfig)
		if err != nil {
			return Policy{}, err
		}
		prof, err := sim.Profile(cfg, "gpuslice-binpack")
		if err != nil {
			return Policy{}, err
		}
		if name == PolicyFragmentation {
			if err := setStrategy(prof, "fragmentation-aware"); err != nil {
				return Policy{}, err
			}
		}
		return Policy{Name: name, Profile: prof, GPUSlice: true}, nil
	case PolicyKubeDefault, PolicyKubeMost:
		fitArgs := ""
		if name == PolicyKubeMost {
			fitArgs = MostAllocatedArgs(migResources)
		}
		cfg, err := sim.StockConfig(fitArgs)
		if err != nil {
			return Policy{}, err
		}
		prof, err := sim.Profile(cfg, "default-scheduler")
		if err != nil {
			return Policy{}, err
		}
		return Policy{Name: name, Profile: prof}, nil
	}
	return Policy{}, fmt.Errorf("unknown policy (known: %s)", strings.Join(PolicyNames(), ", "))
}

// MostAllocatedArgs is NodeResourcesFit's args (indented for
// sim.StockConfig) for MostAllocated with weight 1 on cpu, memory and each
// of the given resources.
func MostAllocatedArgs(resources []string) string {
	var b strings.Builder
	b.WriteString("      scoringStrategy:\n        type: MostAllocated\n        resources:\n")
	for _, r := range append([]string{"cpu", "memory"}, resources...) {
		fmt.Fprintf(&b, "        - name: %s\n          weight: 1\n", r)
	}
	return b.String()
}

// setStrategy sets GPUSlice's scoringStrategy.type in a profile (a copy of
// the args; the profile's plugin config entry is replaced).
func setStrategy(prof *schedconfig.KubeSchedulerProfile, strategy string) error {
	for i := range prof.PluginConfig {
		pc := &prof.PluginConfig[i]
		if pc.Name != "GPUSlice" {
			continue
		}
		args, ok := pc.Args.(*config.GPUSliceArgs)
		if !ok {
			return fmt.Errorf("GPUSlice args are %T", pc.Args)
		}
		args = args.DeepCopy()
		args.ScoringStrategy.Type = strategy
		pc.Args = args
		return nil
	}
	return fmt.Errorf("profile %s has no GPUSlice args", prof.SchedulerName)
}
