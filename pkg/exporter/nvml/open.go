package nvml

import (
	"fmt"

	gonvml "github.com/NVIDIA/go-nvml/pkg/nvml"
)

// LibraryName is the NVML library Open loads.
const LibraryName = "libnvidia-ml.so.1"

// Open loads and initializes the real NVML library and returns a Reader that
// owns it (Close shuts NVML down). Without an NVIDIA driver the error wraps
// go-nvml's ERROR_LIBRARY_NOT_FOUND (errors.Is works on nvml.Return).
func Open() (Reader, error) {
	lib := gonvml.New(gonvml.WithLibraryPath(LibraryName))
	switch ret := lib.Init(); ret {
	case gonvml.SUCCESS:
		return newReader(lib, true), nil
	case gonvml.ERROR_LIBRARY_NOT_FOUND:
		return nil, fmt.Errorf("nvml: cannot load the NVML library %s (is the NVIDIA driver installed and its libraries mounted?): %w", LibraryName, ret)
	default:
		return nil, fmt.Errorf("nvml: initializing the NVML library %s: %w", LibraryName, ret)
	}
}
