// Command kubectl-gpuslice is the kubectl plugin `kubectl gpuslice`
// (pkg/cli): put it on the PATH and run `kubectl gpuslice whatif`.
package main

import (
	"fmt"
	"os"

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/gpuslice/gpuslice/pkg/cli"
)

func main() {
	cmd := cli.NewCommand(genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr})
	if err := cmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}
