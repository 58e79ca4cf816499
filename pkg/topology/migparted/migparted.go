// Package migparted embeds NVIDIA mig-parted's default configuration
// (config-default.yaml: the named MIG layouts, such as all-balanced and
// all-1g.10gb, that the GPU operator's MIG manager applies and names in the
// nvidia.com/mig.config node label), so that product commands can resolve a
// layout name without a file.
//
// Source: github.com/NVIDIA/mig-parted, deployments/systemd/config-default.yaml
// at commit bd7160f43f16462eeb21e1eda5e67b5b6b03fd7d (last changed upstream in
// 219e780dc4a53d391985d6a4844c91bc89db8210), verbatim. Licence: Apache-2.0.
package migparted

import (
	_ "embed"

	"github.com/gpuslice/gpuslice/pkg/topology"
)

//go:embed config-default.yaml
var configDefault []byte

// DefaultYAML returns the embedded config-default.yaml.
func DefaultYAML() []byte { return append([]byte(nil), configDefault...) }

// Default parses the embedded config-default.yaml.
func Default() (*topology.MIGParted, error) { return topology.ParseMIGParted(configDefault) }
