package controlplane

import (
	"fmt"
	"path/filepath"
	"time"
)

// Process is a binary run next to the control plane (Karpenter,
// kube-controller-manager): started like etcd and kube-apiserver (its own
// process group, killed when the starting process dies), logged into the
// control plane's directory, and stopped by Stop before the control plane.
type Process struct {
	p *process
}

// StartProcess starts bin with args and extra environment variables
// ("NAME=value"), output to <Dir>/<name>.log.
func (cp *ControlPlane) StartProcess(name, bin string, args, env []string) (*Process, error) {
	p, err := startProcessEnv(cp.launcher, name, bin, args, env, cp.dir, filepath.Join(cp.dir, name+".log"))
	if err != nil {
		return nil, err
	}
	cp.extrasMu.Lock()
	cp.extras = append(cp.extras, p)
	cp.extrasMu.Unlock()
	return &Process{p: p}, nil
}

// Stop stops the process (SIGTERM, SIGKILL after grace; at once with 0) and
// waits for it.
func (p *Process) Stop(grace time.Duration) { p.p.stop(grace) }

// Exited reports whether the process is gone, and how.
func (p *Process) Exited() (bool, error) { return p.p.hasExited() }

// UnexpectedExit describes an exit before Stop, or returns "".
func (p *Process) UnexpectedExit() string { return p.p.unexpectedExit() }

// LogPath is where its output goes.
func (p *Process) LogPath() string { return p.p.logPath }

// Tail returns the last n lines of its log.
func (p *Process) Tail(n int) string {
	return fmt.Sprintf("----- %s (last %d lines of %s) -----\n%s\n", p.p.name, n, p.p.logPath, tailFile(p.p.logPath, n))
}
