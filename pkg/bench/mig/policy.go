package mig

import (
	"fmt"
	"strings"

	schedconfig "k8s.io/kubernetes/pkg/scheduler/apis/config"

	"github.com/gpuslice/gpuslice/pkg/sim"
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
//   - gpuslice-fragmentation-aware: the shipped profile of that name
//     (GPUSlice fragmentation-aware with weight 20, NodeResourcesFit
//     MostAllocated on cpu and memory);
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
		prof, err := sim.Profile(cfg, name)
		if err != nil {
			return Policy{}, err
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
