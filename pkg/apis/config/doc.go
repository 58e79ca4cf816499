// Package config holds the internal (unversioned) types of gpuslice's
// scheduler plugin arguments.
//
// +k8s:deepcopy-gen=package
// +groupName=kubescheduler.config.k8s.io
package config
