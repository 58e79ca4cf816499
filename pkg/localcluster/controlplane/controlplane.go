// Package controlplane runs a real Kubernetes control plane (etcd and
// kube-apiserver) on this machine, from the binaries that
// `hack/control-plane.sh build` puts into the repository's bin/: for the demo,
// the benchmarks against an API server and (through test/framework, which
// ties one to a testing.TB) the integration and end-to-end tests. Start
// starts:
//
//   - etcd and kube-apiserver on free 127.0.0.1 ports, state and logs in one
//     directory (etcd.log, kube-apiserver.log);
//   - TLS from a CA generated per start, a static admin token in the group
//     system:masters, Node and RBAC authorization;
//   - service-account signing keys (RSA, PEM), so the TokenRequest API works
//     and tokens authenticate;
//   - ValidatingAdmissionPolicy on (GA), the ServiceAccount admission plugin
//     off (no controller-manager creates the "default" ServiceAccounts).
//
// There is no controller-manager, scheduler or kubelet: namespaces are not
// finalized on deletion, no garbage collection runs, Pods stay Pending and
// Nodes are whatever the test writes (see CreateReadyNode).
package controlplane

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Options configure a control plane. The zero value is the default.
type Options struct {
	// APIServerFlags are extra kube-apiserver flags, each "--name=value" (or
	// "--name" for a boolean). A flag replaces the default of the same name
	// (for example --disable-admission-plugins, whose default is
	// "ServiceAccount"); others are appended. Examples:
	// "--feature-gates=DRAPartitionableDevices=true",
	// "--enable-admission-plugins=NodeRestriction", "--v=4".
	APIServerFlags []string

	// EtcdFlags are extra etcd flags, merged the same way.
	EtcdFlags []string

	// DisableValidatingAdmissionPolicy turns the ValidatingAdmissionPolicy
	// admission plugin off. It is on by default (GA), as in a real cluster.
	DisableValidatingAdmissionPolicy bool

	// BinDir is where etcd, kube-apiserver and kubectl are; default: bin/
	// in the repository root (the nearest directory with a go.mod at or
	// above the working directory).
	BinDir string

	// StartTimeout bounds the start, from launching etcd to a ready
	// kube-apiserver; default 60s (it usually takes 3-5 s).
	StartTimeout time.Duration

	// StopGracePeriod is how long Stop waits after SIGTERM before it sends
	// SIGKILL; default 0: SIGKILL at once (the state is thrown away anyway).
	StopGracePeriod time.Duration
}

// ControlPlane is a running etcd and kube-apiserver.
type ControlPlane struct {
	dir            string
	bins           binaries
	etcdURL        string
	host           string // https://127.0.0.1:port
	caPEM          []byte
	adminToken     string
	kubeconfigPath string
	client         kubernetes.Interface
	grace          time.Duration

	launcher  *launcher
	etcd      *process
	apiserver *process
	// etcdArgs and apiArgs start the processes again (Restart*).
	etcdArgs, apiArgs []string
	// extras are the processes started with StartProcess, stopped first.
	extrasMu sync.Mutex
	extras   []*process
	ownDir   bool // dir was created by the start: Stop removes it
	warning  string

	stopOnce sync.Once
}

// ServiceAccountIssuer is the issuer (and API audience) of the
// service-account tokens the control plane signs.
const ServiceAccountIssuer = "https://kubernetes.default.svc.cluster.local"

const (
	adminUser = "gpuslice-admin"
	logLines  = 50 // log lines shown on failure
)

// Start starts a control plane for a program. Its state,
// logs and kubeconfig go into dir (created if needed); with dir "" into a new
// temporary directory that Stop removes. ctx bounds the start only: the
// control plane runs until Stop, which the caller must call (defer it). The
// processes die with the calling process in any case. opts: at most one.
//
// When the binaries are missing, the error wraps ErrBinariesMissing. When the
// start fails, the error includes the last lines of the logs.
func Start(ctx context.Context, dir string, opts ...Options) (*ControlPlane, error) {
	var o Options
	switch len(opts) {
	case 0:
	case 1:
		o = opts[0]
	default:
		return nil, errors.New("controlplane.Start: more than one Options")
	}
	bins, stale, err := findBinaries(o.BinDir)
	if err != nil {
		return nil, err
	}
	ownDir := false
	if dir == "" {
		if dir, err = os.MkdirTemp("", "gpuslice-control-plane-"); err != nil {
			return nil, err
		}
		ownDir = true
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	cp, err := start(ctx, bins, dir, ownDir, o)
	if err != nil {
		if ownDir {
			_ = os.RemoveAll(dir)
		}
		return nil, err
	}
	cp.warning = stale
	return cp, nil
}

// Warning says why the binaries may be out of date (built for another
// go.sum), or is "".
func (cp *ControlPlane) Warning() string { return cp.warning }

// Host is the kube-apiserver's URL (https://127.0.0.1:port).
func (cp *ControlPlane) Host() string { return cp.host }

// Config returns a new admin (system:masters) client configuration.
func (cp *ControlPlane) Config() *rest.Config {
	return cp.TokenConfig(cp.adminToken)
}

// TokenConfig returns a client configuration for the same server that
// authenticates with token, for example a ServiceAccount's from the
// TokenRequest API.
func (cp *ControlPlane) TokenConfig(token string) *rest.Config {
	return &rest.Config{
		Host:            cp.host,
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{CAData: append([]byte(nil), cp.caPEM...)},
		// Tests create objects in bursts: client-go's default limit
		// (5 QPS) would dominate their run time.
		QPS:   1000,
		Burst: 2000,
	}
}

// Client returns an admin clientset.
func (cp *ControlPlane) Client() kubernetes.Interface { return cp.client }

// KubeconfigPath returns the path of an admin kubeconfig file, for
// bin/kubectl (see KubectlPath) and other programs.
func (cp *ControlPlane) KubeconfigPath() string { return cp.kubeconfigPath }

// KubectlPath returns the path of the kubectl binary built with the control
// plane.
func (cp *ControlPlane) KubectlPath() string { return cp.bins.kubectl }

// Dir returns the directory holding the state and the logs (etcd.log,
// kube-apiserver.log).
func (cp *ControlPlane) Dir() string { return cp.dir }

// EtcdURL returns etcd's client URL.
func (cp *ControlPlane) EtcdURL() string { return cp.etcdURL }

// Stop kills kube-apiserver and etcd (their whole process groups) and waits
// for them. It can be called more than once; StartControlPlane registers it
// with t.Cleanup.
func (cp *ControlPlane) Stop() {
	cp.stopOnce.Do(func() {
		cp.extrasMu.Lock()
		extras := cp.extras
		cp.extrasMu.Unlock()
		for i := len(extras) - 1; i >= 0; i-- {
			extras[i].stop(cp.grace)
		}
		if cp.apiserver != nil {
			cp.apiserver.stop(cp.grace)
		}
		if cp.etcd != nil {
			cp.etcd.stop(cp.grace)
		}
		cp.launcher.close()
		if cp.ownDir {
			_ = os.RemoveAll(cp.dir)
		}
	})
}

// RestartAPIServer kills kube-apiserver (SIGKILL, as a crash would) and
// starts it again with the same flags and port, and returns once it is
// ready. Meanwhile clients get connection errors and their watches end;
// etcd keeps the state. Not safe for concurrent use with Stop.
func (cp *ControlPlane) RestartAPIServer(ctx context.Context) error {
	cp.apiserver.stop(0)
	p, err := startProcess(cp.launcher, "kube-apiserver", cp.bins.apiserver, cp.apiArgs, cp.dir, filepath.Join(cp.dir, "kube-apiserver.log"))
	if err != nil {
		return err
	}
	cp.apiserver = p
	httpClient, err := rest.HTTPClientFor(cp.Config())
	if err != nil {
		return err
	}
	return waitHTTP(ctx, p, httpClient, cp.host+"/readyz", cp.adminToken)
}

// RestartEtcd kills etcd (SIGKILL) and starts it again on its data, with
// the same flags, and returns once it is healthy and the API server answers
// again. Not safe for concurrent use with Stop.
func (cp *ControlPlane) RestartEtcd(ctx context.Context) error {
	cp.etcd.stop(0)
	p, err := startProcess(cp.launcher, "etcd", cp.bins.etcd, cp.etcdArgs, cp.dir, filepath.Join(cp.dir, "etcd.log"))
	if err != nil {
		return err
	}
	cp.etcd = p
	if err := waitHTTP(ctx, p, http.DefaultClient, cp.etcdURL+"/health", ""); err != nil {
		return err
	}
	httpClient, err := rest.HTTPClientFor(cp.Config())
	if err != nil {
		return err
	}
	return waitHTTP(ctx, cp.apiserver, httpClient, cp.host+"/readyz", cp.adminToken)
}

// CompactEtcd compacts etcd's history up to its current revision, as the
// API server's periodic compaction does (every 5 minutes by default), and
// returns that revision. A watch resumed from an older resource version then
// fails with "too old resource version" (410 Gone) once the API server's
// watch cache no longer holds it (after a restart, at once), and the
// watcher must list again. It uses etcd's JSON gateway (no client library).
func (cp *ControlPlane) CompactEtcd(ctx context.Context) (int64, error) {
	post := func(path string, body any, out any) error {
		data, err := json.Marshal(body)
		if err != nil {
			return err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, cp.etcdURL+path, bytes.NewReader(data))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		got, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("etcd %s: %s: %s", path, resp.Status, got)
		}
		return json.Unmarshal(got, out)
	}
	var rng struct {
		Header struct {
			Revision string `json:"revision"`
		} `json:"header"`
	}
	// Any key: the response's header carries the store's revision.
	if err := post("/v3/kv/range", map[string]any{"key": base64.StdEncoding.EncodeToString([]byte("/"))}, &rng); err != nil {
		return 0, err
	}
	rev, err := strconv.ParseInt(rng.Header.Revision, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("etcd revision %q: %w", rng.Header.Revision, err)
	}
	var ignored map[string]any
	if err := post("/v3/kv/compaction", map[string]any{"revision": strconv.FormatInt(rev, 10), "physical": true}, &ignored); err != nil {
		return 0, err
	}
	return rev, nil
}

// Logs returns the last n lines of the etcd and the kube-apiserver log.
func (cp *ControlPlane) Logs(n int) string { return cp.LogTails(n) }

// LogTails returns the last n lines of the etcd and kube-apiserver logs.
func (cp *ControlPlane) LogTails(n int) string {
	var b strings.Builder
	for _, p := range []*process{cp.etcd, cp.apiserver} {
		if p == nil {
			continue
		}
		fmt.Fprintf(&b, "----- %s (last %d lines of %s) -----\n%s\n", p.name, n, p.logPath, tailFile(p.logPath, n))
	}
	return b.String()
}

// UnexpectedExits describes the control-plane processes that exited before
// Stop, or returns "".
func (cp *ControlPlane) UnexpectedExits() string {
	var msgs []string
	for _, p := range []*process{cp.etcd, cp.apiserver} {
		if p == nil {
			continue
		}
		if m := p.unexpectedExit(); m != "" {
			msgs = append(msgs, m)
		}
	}
	return strings.Join(msgs, "; ")
}

// start is the one implementation behind Start. Free ports are found by binding port 0 and
// closing it, so another process can take one before etcd or kube-apiserver
// binds it: such a start is retried with new ports.
func start(ctx context.Context, bins binaries, dir string, ownDir bool, opts Options) (*ControlPlane, error) {
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 60 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, opts.StartTimeout)
	defer cancel()

	const attempts = 3
	var err error
	for i := 1; i <= attempts; i++ {
		var cp *ControlPlane
		cp, err = startOnce(ctx, bins, dir, opts)
		if err == nil {
			cp.ownDir = ownDir
			return cp, nil
		}
		if !errors.Is(err, errPortInUse) || ctx.Err() != nil {
			break
		}
	}
	return nil, err
}

var errPortInUse = errors.New("address already in use")

func startOnce(ctx context.Context, bins binaries, dir string, opts Options) (_ *ControlPlane, err error) {
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	etcdPort, peerPort, apiPort := ports[0], ports[1], ports[2]

	keys, err := newPKI()
	if err != nil {
		return nil, err
	}
	p := func(name string) string { return filepath.Join(dir, name) }
	etcdData := p("etcd-data")
	if err := os.RemoveAll(etcdData); err != nil { // a failed attempt's
		return nil, err
	}
	token := randomToken()
	if err := writeFiles(map[string][]byte{
		p("ca.crt"):          keys.caPEM,
		p("apiserver.crt"):   keys.servingCertPEM,
		p("apiserver.key"):   keys.servingKeyPEM,
		p("sa.key"):          keys.saKeyPEM,
		p("sa.pub"):          keys.saPubPEM,
		p("admin-token.csv"): fmt.Appendf(nil, "%s,%s,%s,\"system:masters\"\n", token, adminUser, adminUser),
	}); err != nil {
		return nil, err
	}

	cp := &ControlPlane{
		dir:        dir,
		bins:       bins,
		etcdURL:    "http://127.0.0.1:" + strconv.Itoa(etcdPort),
		host:       "https://127.0.0.1:" + strconv.Itoa(apiPort),
		caPEM:      keys.caPEM,
		adminToken: token,
		grace:      opts.StopGracePeriod,
		launcher:   newLauncher(),
	}
	defer func() {
		if err != nil {
			if tails := cp.LogTails(logLines); tails != "" {
				err = fmt.Errorf("%w\n%s", err, tails)
			}
			cp.Stop()
		}
	}()

	peerURL := "http://127.0.0.1:" + strconv.Itoa(peerPort)
	etcdArgs := mergeFlags([]string{
		"--name=gpuslice-test",
		"--data-dir=" + etcdData,
		"--listen-client-urls=" + cp.etcdURL,
		"--advertise-client-urls=" + cp.etcdURL,
		"--listen-peer-urls=" + peerURL,
		"--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=gpuslice-test=" + peerURL,
		"--initial-cluster-state=new",
		"--unsafe-no-fsync",
		"--log-level=warn",
	}, opts.EtcdFlags)
	cp.etcdArgs = etcdArgs
	cp.etcd, err = startProcess(cp.launcher, "etcd", bins.etcd, etcdArgs, dir, p("etcd.log"))
	if err != nil {
		return nil, err
	}
	if err := waitHTTP(ctx, cp.etcd, http.DefaultClient, cp.etcdURL+"/health", ""); err != nil {
		return nil, err
	}

	disabled := "ServiceAccount"
	if opts.DisableValidatingAdmissionPolicy {
		disabled += ",ValidatingAdmissionPolicy"
	}
	apiArgs := mergeFlags([]string{
		"--etcd-servers=" + cp.etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(apiPort),
		"--endpoint-reconciler-type=none",
		"--cert-dir=" + dir,
		"--tls-cert-file=" + p("apiserver.crt"),
		"--tls-private-key-file=" + p("apiserver.key"),
		"--token-auth-file=" + p("admin-token.csv"),
		"--authorization-mode=Node,RBAC",
		"--service-account-issuer=" + ServiceAccountIssuer,
		"--service-account-key-file=" + p("sa.pub"),
		"--service-account-signing-key-file=" + p("sa.key"),
		"--service-cluster-ip-range=10.0.0.0/24",
		"--disable-admission-plugins=" + disabled,
		"--allow-privileged=true",
		"--profiling=false",
	}, opts.APIServerFlags)
	_ = os.WriteFile(p("kube-apiserver.args"), []byte(strings.Join(apiArgs, "\n")+"\n"), 0o600)
	cp.apiArgs = apiArgs
	cp.apiserver, err = startProcess(cp.launcher, "kube-apiserver", bins.apiserver, apiArgs, dir, p("kube-apiserver.log"))
	if err != nil {
		return nil, err
	}

	cfg := cp.Config()
	cp.client, err = kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	httpClient, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, err
	}
	if err := waitHTTP(ctx, cp.apiserver, httpClient, cp.host+"/readyz", token); err != nil {
		return nil, err
	}
	// The "default" namespace is created by a post-start hook of its own;
	// tests use it right away.
	if err := waitFor(ctx, cp.apiserver, func() (bool, string) {
		_, err := cp.client.CoreV1().Namespaces().Get(ctx, metav1.NamespaceDefault, metav1.GetOptions{})
		if err == nil {
			return true, ""
		}
		if apierrors.IsNotFound(err) {
			return false, "namespace default not created yet"
		}
		return false, err.Error()
	}); err != nil {
		return nil, err
	}

	cp.kubeconfigPath = p("kubeconfig")
	if err := clientcmd.WriteToFile(cp.kubeconfig(), cp.kubeconfigPath); err != nil {
		return nil, fmt.Errorf("writing kubeconfig: %w", err)
	}
	return cp, nil
}

func (cp *ControlPlane) kubeconfig() clientcmdapi.Config {
	const name = "gpuslice-test"
	c := clientcmdapi.NewConfig()
	c.Clusters[name] = &clientcmdapi.Cluster{Server: cp.host, CertificateAuthorityData: cp.caPEM}
	c.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: cp.adminToken}
	c.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name, Namespace: metav1.NamespaceDefault}
	c.CurrentContext = name
	return *c
}

// waitHTTP polls url until it answers 200, p exits or ctx ends.
func waitHTTP(ctx context.Context, p *process, c *http.Client, url, token string) error {
	return waitFor(ctx, p, func() (bool, string) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return false, err.Error()
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := c.Do(req)
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		body := make([]byte, 4096)
		n, _ := resp.Body.Read(body)
		if resp.StatusCode == http.StatusOK {
			return true, ""
		}
		return false, fmt.Sprintf("GET %s: %s: %s", url, resp.Status, body[:n])
	})
}

// waitFor polls cond every 50ms until it holds, p exits or ctx ends.
func waitFor(ctx context.Context, p *process, cond func() (bool, string)) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	last := ""
	for {
		ok, why := cond()
		if ok {
			return nil
		}
		if why != "" {
			last = why
		}
		if exited, err := p.hasExited(); exited {
			if strings.Contains(tailFile(p.logPath, logLines), "address already in use") {
				return fmt.Errorf("%s exited (%v): %w", p.name, exitDesc(err), errPortInUse)
			}
			return fmt.Errorf("%s exited before it was ready: %v", p.name, exitDesc(err))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %w (last: %s)", p.name, ctx.Err(), last)
		case <-tick.C:
		}
	}
}

// freePorts returns n distinct free TCP ports on 127.0.0.1.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close() // held until all are picked: they stay distinct
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// mergeFlags appends extra to defaults; an extra flag replaces the default
// flag of the same name.
func mergeFlags(defaults, extra []string) []string {
	override := map[string]bool{}
	for _, f := range extra {
		override[flagName(f)] = true
	}
	out := make([]string, 0, len(defaults)+len(extra))
	for _, f := range defaults {
		if !override[flagName(f)] {
			out = append(out, f)
		}
	}
	return append(out, extra...)
}

// flagName returns "name" of "--name=value", "-name=value" or "--name".
func flagName(f string) string {
	f = strings.TrimLeft(f, "-")
	if i := strings.IndexByte(f, '='); i >= 0 {
		f = f[:i]
	}
	return f
}
