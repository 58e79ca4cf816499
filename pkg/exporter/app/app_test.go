package app

import (
	"errors"
	"flag"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gpuslice/gpuslice/pkg/version"
)

func TestParseFlags(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		want    Flags
		wantErr error
	}{
		{
			name: "equals and separate values",
			args: []string{"--node-name=gpu-0", "--heartbeat-interval", "2s", "-resync=1m"},
			want: Flags{NodeName: "gpu-0", HeartbeatInterval: 2 * time.Second, Resync: time.Minute},
		},
		{
			name: "underscores in names, not in values",
			args: []string{"--node_name=gpu_0", "--pod_resources_socket", "/run/a_b.sock"},
			want: Flags{NodeName: "gpu_0", PodResourcesSocket: "/run/a_b.sock"},
		},
		{
			name: "flags after a positional argument",
			args: []string{"extra", "--node-name=gpu-0"},
			want: Flags{NodeName: "gpu-0"},
		},
		{
			name: "nothing after --",
			args: []string{"--lease-namespace=ns", "--", "--node-name=gpu-0"},
			want: Flags{LeaseNamespace: "ns"},
		},
		{name: "version", args: []string{"--version"}, want: Flags{Version: true}},
		{name: "help", args: []string{"--help"}, wantErr: flag.ErrHelp},
		{name: "unknown", args: []string{"--bogus=1"}, wantErr: errors.New("flag provided but not defined: -bogus")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("NODE_NAME", "")
			var got Flags
			fs := NewFlagSet(&got)
			err := parseFlags(fs, tc.args)
			if tc.wantErr != nil {
				if err == nil || err.Error() != tc.wantErr.Error() {
					t.Fatalf("error %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			// Only the flags a case sets are compared; the others keep their defaults.
			set := map[string]bool{}
			fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
			check := func(name string, got, want any) {
				if set[name] && got != want {
					t.Errorf("--%s = %v, want %v", name, got, want)
				}
			}
			check("node-name", got.NodeName, tc.want.NodeName)
			check("pod-resources-socket", got.PodResourcesSocket, tc.want.PodResourcesSocket)
			check("lease-namespace", got.LeaseNamespace, tc.want.LeaseNamespace)
			check("heartbeat-interval", got.HeartbeatInterval, tc.want.HeartbeatInterval)
			check("resync", got.Resync, tc.want.Resync)
			if got.Version != tc.want.Version {
				t.Errorf("--version = %v, want %v", got.Version, tc.want.Version)
			}
			if tc.want.NodeName == "" && got.NodeName != "" {
				t.Errorf("--node-name = %q, want unset", got.NodeName)
			}
		})
	}
}

func TestUsage(t *testing.T) {
	t.Setenv("NODE_NAME", "")
	var b strings.Builder
	printUsage(&b, NewFlagSet(&Flags{}))
	for _, want := range []string{
		"  gpuslice-exporter [flags]",
		"  -h, --help ",
		`      --lease-namespace string         namespace of the heartbeat Lease (default "gpuslice-system")`,
		"      --heartbeat-interval duration    how often the Lease is renewed (default 10s)",
		"  -v, --v Level ",
		"      --vmodule moduleSpec ",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("usage lacks %q:\n%s", want, b.String())
		}
	}
}

func TestMainVersion(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout := os.Stdout
	os.Stdout = w
	code := Main([]string{"--version"})
	os.Stdout = stdout
	w.Close()
	out, _ := io.ReadAll(r)
	if code != 0 || string(out) != "gpuslice-exporter "+version.Version+"\n" {
		t.Fatalf("exit %d, output %q", code, out)
	}
}
