// Package version holds gpuslice's release version, set at link time:
//
//	go build -ldflags "-X github.com/gpuslice/gpuslice/pkg/version.Version=v0.1.0"
//
// (make scheduler, make exporter and make images do).
package version

// Version is the release this binary was built as; "dev" when built
// without the linker flag.
var Version = "dev"
