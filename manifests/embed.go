// Package manifests embeds the shipped manifests that product commands need
// at run time, so that they use exactly what is deployed and never read a
// repository path.
package manifests

import _ "embed"

//go:embed scheduler/config.yaml
var schedulerConfigMap []byte

// SchedulerConfigMap returns manifests/scheduler/config.yaml: the
// gpuslice-scheduler ConfigMap whose config.yaml key holds the
// KubeSchedulerConfiguration with gpuslice's profiles.
func SchedulerConfigMap() []byte { return append([]byte(nil), schedulerConfigMap...) }
