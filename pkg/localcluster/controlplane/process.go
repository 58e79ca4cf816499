package controlplane

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// launcher starts processes from one goroutine locked to its OS thread.
//
// Every process is started with Pdeathsig=SIGKILL, so the kernel kills it
// when the thread that forked it exits: when the test binary dies without
// running its cleanups (go test -timeout, os.Exit, SIGINT, a crash), no
// etcd or kube-apiserver is left behind. Pdeathsig is tied to the forking
// thread, not the process, so the forks must come from a thread that lives as
// long as the processes: this goroutine's, which runs until close and never
// unlocks (its thread exits with it, after the processes were stopped).
type launcher struct {
	reqs chan launchReq
	quit chan struct{}
	once sync.Once
}

type launchReq struct {
	cmd  *exec.Cmd
	done chan error
}

func newLauncher() *launcher {
	l := &launcher{reqs: make(chan launchReq), quit: make(chan struct{})}
	go func() {
		runtime.LockOSThread()
		for {
			select {
			case r := <-l.reqs:
				r.done <- r.cmd.Start()
			case <-l.quit:
				return
			}
		}
	}()
	return l
}

func (l *launcher) start(cmd *exec.Cmd) error {
	done := make(chan error, 1)
	select {
	case l.reqs <- launchReq{cmd: cmd, done: done}:
		return <-done
	case <-l.quit:
		return errors.New("control plane is stopped")
	}
}

func (l *launcher) close() { l.once.Do(func() { close(l.quit) }) }

// process is one running binary. Its output goes to logPath.
type process struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	exited  chan struct{} // closed once cmd.Wait returned
	waitErr error         // cmd.Wait's result, valid once exited is closed

	mu       sync.Mutex
	stopping bool // Stop began: an exit from now on is expected
}

// startProcess starts bin with args in its own process group, output to
// logPath (appended to, so a retried start keeps the earlier attempt's log).
func startProcess(l *launcher, name, bin string, args []string, dir, logPath string) (*process, error) {
	return startProcessEnv(l, name, bin, args, nil, dir, logPath)
}

// startProcessEnv is startProcess with extra environment variables
// ("NAME=value") on top of this process's environment.
func startProcessEnv(l *launcher, name, bin string, args, env []string, dir, logPath string) (*process, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child has its own descriptor
	fmt.Fprintf(logFile, "### %s %s\n", bin, strings.Join(args, " "))

	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid:   true, // own group: Stop kills everything it may have spawned
		Pdeathsig: syscall.SIGKILL,
	}
	if err := l.start(cmd); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &process{name: name, logPath: logPath, cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// hasExited reports whether the process is gone, and why.
func (p *process) hasExited() (bool, error) {
	select {
	case <-p.exited:
		return true, p.waitErr
	default:
		return false, nil
	}
}

// unexpectedExit describes an exit that happened before stop was called, or
// returns "".
func (p *process) unexpectedExit() string {
	p.mu.Lock()
	stopping := p.stopping
	p.mu.Unlock()
	if exited, err := p.hasExited(); exited && !stopping {
		return fmt.Sprintf("%s exited unexpectedly: %v", p.name, exitDesc(err))
	}
	return ""
}

// stop sends SIGTERM to the process group, SIGKILL after grace, and waits
// until the process is reaped. Whatever else is left in its group is killed.
func (p *process) stop(grace time.Duration) {
	p.mu.Lock()
	p.stopping = true
	p.mu.Unlock()
	pgid := p.cmd.Process.Pid // Setpgid with Pgid 0: the group id is the pid
	if exited, _ := p.hasExited(); !exited {
		sig := syscall.SIGTERM
		if grace <= 0 {
			sig = syscall.SIGKILL
		}
		_ = syscall.Kill(-pgid, sig)
		if sig != syscall.SIGKILL {
			t := time.NewTimer(grace)
			select {
			case <-p.exited:
			case <-t.C:
				_ = syscall.Kill(-pgid, syscall.SIGKILL)
			}
			t.Stop()
		}
		<-p.exited
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL) // stragglers of the group, if any
}

func exitDesc(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// tailFile returns the last n lines of the file at path.
func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	return tailLines(b, n)
}

func tailLines(b []byte, n int) string {
	b = bytes.TrimRight(b, "\n")
	if n <= 0 {
		return ""
	}
	i := len(b)
	for lines := 0; i > 0; {
		j := bytes.LastIndexByte(b[:i], '\n')
		lines++
		if lines == n || j < 0 {
			i = j + 1
			break
		}
		i = j
	}
	return string(b[i:])
}
