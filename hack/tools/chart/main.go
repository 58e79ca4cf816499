// Command chart lints and renders gpuslice's Helm chart with Helm's Go SDK
// (pinned in this module's go.mod), and installs or upgrades it:
//
//	chart lint CHART [-f VALUES]...
//	chart template CHART [-namespace NS] [-name NAME] [-f VALUES]...
//	chart install|upgrade CHART -kubeconfig FILE [-namespace NS] [-name NAME] [-f VALUES]...
//
// template prints the rendered objects, CRDs first, as one YAML stream.
// It is a module of its own (hack/tools/chart) so that Helm's dependencies
// stay out of the product's go.mod; test/chart runs it and checks what it
// renders and installs against the product's own schemes and manifests.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/common/util"
	chartv2 "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/kube"
	release "helm.sh/helm/v4/pkg/release/v1"
	"helm.sh/helm/v4/pkg/storage"
	"helm.sh/helm/v4/pkg/storage/driver"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"sigs.k8s.io/yaml"
)

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "chart:", err)
		os.Exit(1)
	}
}

func run(args []string, out io.Writer) error {
	if len(args) < 2 {
		return fmt.Errorf("usage: chart lint|template|install|upgrade CHART [flags]")
	}
	cmd, dir := args[0], args[1]
	fs := flag.NewFlagSet("chart "+cmd, flag.ContinueOnError)
	var valueFiles listFlag
	ns := fs.String("namespace", "gpuslice-system", "release namespace")
	name := fs.String("name", "gpuslice", "release name")
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig (install, upgrade)")
	fs.Var(&valueFiles, "f", "values file (repeat)")
	if err := fs.Parse(args[2:]); err != nil {
		return err
	}
	vals, err := values(valueFiles)
	if err != nil {
		return err
	}
	switch cmd {
	case "lint":
		return lintChart(dir, vals, *ns, out)
	case "template":
		ch, err := loader.LoadDir(dir)
		if err != nil {
			return err
		}
		return template(ch, vals, *ns, *name, out)
	case "install", "upgrade":
		if *kubeconfig == "" {
			return fmt.Errorf("%s needs -kubeconfig", cmd)
		}
		ch, err := loader.LoadDir(dir)
		if err != nil {
			return err
		}
		return apply(cmd, ch, vals, *kubeconfig, *ns, *name, out)
	}
	return fmt.Errorf("unknown command %q", cmd)
}

// values merges the values files, later ones winning.
func values(files []string) (map[string]any, error) {
	out := map[string]any{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var v map[string]any
		if err := yaml.Unmarshal(b, &v); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		out = util.CoalesceTables(v, out)
	}
	return out, nil
}

// lintChart runs helm lint's rules; any finding of warning severity or
// worse fails.
func lintChart(dir string, vals map[string]any, ns string, out io.Writer) error {
	l := lint.RunAll(dir, vals, ns)
	bad := 0
	for _, m := range l.Messages {
		fmt.Fprintf(out, "%s\n", m)
		if m.Severity >= support.WarningSev {
			bad++
		}
	}
	if bad > 0 {
		return fmt.Errorf("lint: %d findings of warning severity or worse", bad)
	}
	fmt.Fprintf(out, "lint: %d messages, none of warning severity\n", len(l.Messages))
	return nil
}

// template renders the chart as helm template does (client only), CRDs
// included.
func template(ch *chartv2.Chart, vals map[string]any, ns, name string, out io.Writer) error {
	cfg := &action.Configuration{Releases: storage.Init(driver.NewMemory())}
	inst := action.NewInstall(cfg)
	inst.DryRunStrategy = action.DryRunClient
	inst.ReleaseName, inst.Namespace = name, ns
	inst.Replace = true
	inst.IncludeCRDs = true
	inst.KubeVersion = &common.KubeVersion{Version: "v1.37.1", Major: "1", Minor: "37"}
	r, err := inst.Run(ch, vals)
	if err != nil {
		return err
	}
	rel, ok := r.(*release.Release)
	if !ok {
		return fmt.Errorf("release of type %T", r)
	}
	_, err = fmt.Fprintln(out, strings.TrimSpace(rel.Manifest))
	return err
}

// apply installs or upgrades the release in the cluster of kubeconfig and
// waits for nothing (the test checks the objects).
func apply(cmd string, ch *chartv2.Chart, vals map[string]any, kubeconfig, ns, name string, out io.Writer) error {
	flags := genericclioptions.NewConfigFlags(false)
	flags.KubeConfig = &kubeconfig
	flags.Namespace = &ns
	cfg := &action.Configuration{}
	if err := cfg.Init(flags, ns, "secret"); err != nil {
		return err
	}
	var r any
	var err error
	if cmd == "install" {
		inst := action.NewInstall(cfg)
		inst.ReleaseName, inst.Namespace = name, ns
		inst.WaitStrategy = kube.HookOnlyStrategy
		r, err = inst.Run(ch, vals)
	} else {
		up := action.NewUpgrade(cfg)
		up.Namespace = ns
		up.WaitStrategy = kube.HookOnlyStrategy
		r, err = up.Run(name, ch, vals)
	}
	if err != nil {
		return err
	}
	rel, ok := r.(*release.Release)
	if !ok {
		return fmt.Errorf("release of type %T", r)
	}
	_, err = fmt.Fprintf(out, "%s %s: revision %d, %s\n", cmd, rel.Name, rel.Version, rel.Info.Status)
	return err
}
