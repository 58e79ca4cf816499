package throughput

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/gpuslice/gpuslice/pkg/assignment"
	"github.com/gpuslice/gpuslice/pkg/localcluster/controlplane"
)

// TestTinyRun runs the whole benchmark at a tiny size against a real
// control plane with the shipped gpuslice profile: every pod of both
// profiles is bound, gpuslice's pods carry their assignment, and the output
// ends with a parsable ratio.
func TestTinyRun(t *testing.T) {
	args := []string{"--nodes=20", "--pods=40", "--pod-gpus=1,2", "--warmup=4", "--timeout=2m", "--stall=30s", "--json"}
	o, err := parseFlags(args, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	inspected := map[string]bool{}
	o.inspect = func(ctx context.Context, kube kubernetes.Interface, ph phaseSpec) error {
		inspected[ph.profile.label] = true
		list, err := kube.CoreV1().Pods(ph.namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		if len(list.Items) != ph.pods {
			t.Errorf("%s: %d pods, want %d", ph.namespace, len(list.Items), ph.pods)
		}
		for _, p := range list.Items {
			if p.Spec.NodeName == "" {
				t.Errorf("%s/%s (%s) is not bound", p.Namespace, p.Name, p.Spec.SchedulerName)
			}
			a, err := assignment.FromPod(&p)
			switch {
			case err != nil:
				t.Errorf("%s/%s: %v", p.Namespace, p.Name, err)
			case ph.profile.label == gpusliceLabel && (a == nil || a.Node != p.Spec.NodeName):
				t.Errorf("%s/%s bound to %q by %s: assignment %+v, want one on its node", p.Namespace, p.Name, p.Spec.NodeName, p.Spec.SchedulerName, a)
			case ph.profile.label == stockLabel && a != nil:
				t.Errorf("%s/%s bound by the stock profile carries %s", p.Namespace, p.Name, assignment.Annotation)
			}
		}
		return nil
	}
	var out bytes.Buffer
	err = run(context.Background(), o, &out)
	if errors.Is(err, controlplane.ErrBinariesMissing) && os.Getenv("CI") != "true" {
		t.Skip(err)
	}
	t.Logf("output:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	if !inspected[stockLabel] || !inspected[gpusliceLabel] {
		t.Errorf("phases inspected: %v, want both profiles", inspected)
	}

	var lines []string
	for sc := bufio.NewScanner(&out); sc.Scan(); {
		lines = append(lines, sc.Text())
	}
	last := lines[len(lines)-1]
	ratio, err := strconv.ParseFloat(strings.TrimPrefix(last, "throughput_ratio="), 64)
	if !strings.HasPrefix(last, "throughput_ratio=") || err != nil || ratio <= 0 || math.IsInf(ratio, 0) {
		t.Errorf("last line %q: want throughput_ratio=<positive number>", last)
	}
	var summaries []profileSummary
	for _, l := range lines {
		if strings.HasPrefix(l, "{") {
			var s profileSummary
			if err := json.Unmarshal([]byte(l), &s); err != nil {
				t.Fatalf("JSON line %q: %v", l, err)
			}
			summaries = append(summaries, s)
		}
	}
	if len(summaries) != 2 {
		t.Fatalf("%d JSON objects, want one per profile", len(summaries))
	}
	for _, s := range summaries {
		if s.Pods != 40 || len(s.PerRound) != 1 || s.PerRound[0].Attempts["scheduled"] != 40 || s.PodsPerSecond <= 0 {
			t.Errorf("%s: pods %d, rounds %d, attempts %v, pods/s %v: want 40 pods scheduled in one round",
				s.Profile, s.Pods, len(s.PerRound), s.PerRound[0].Attempts, s.PodsPerSecond)
		}
	}
	// 40 pods of 1 and 2 GPUs (60 GPUs) need at least 8 of the 8-GPU nodes:
	// gpuslice-binpack, some of whose cycles are batched, packs them.
	stock, gs := summaries[0].PerRound[0], summaries[1].PerRound[0]
	if gs.NodesUsed < minNodes(o) || gs.NodesUsed > minNodes(o)+2 {
		t.Errorf("gpuslice used %d nodes, want within 2 of the %d needed", gs.NodesUsed, minNodes(o))
	}
	// The stock profile has the system-default spreading: it signs no pod,
	// and nothing is batched. gpuslice-binpack signs every pod; consecutive
	// pods alike (1, 2, 1, ... GPUs are not) are batched when the informers
	// deliver them back to back.
	if stock.Batch["hint_used"] != 0 || stock.Batch["flushed/pod_not_batchable"] != 40 {
		t.Errorf("stock batching %v, want every pod unbatchable", stock.Batch)
	}
	if gs.Batch["flushed/pod_not_batchable"] != 0 {
		t.Errorf("gpuslice batching %v, want every pod signed", gs.Batch)
	}
	if got := summaries[1].PodsPerSecond / summaries[0].PodsPerSecond; math.Abs(got-ratio) > 0.001 {
		t.Errorf("ratio line %v, JSON figures give %v", ratio, got)
	}
	// With 20 nodes (under kube-scheduler's 100-node floor) every full cycle
	// examines every node; a batched one filters the previous pick and its
	// hint.
	if got := stock.NodesFilteredPerPod; got != 20 {
		t.Errorf("stock: %v nodes filtered per pod, want all 20", got)
	}
	if got, batched := gs.NodesFilteredPerPod, gs.Batch["hint_used"]; got > 20 || (batched > 0 && got >= 20) {
		t.Errorf("gpuslice: %v nodes filtered per pod with %d of 40 cycles batched", got, batched)
	}
	// What binding costs the API server: both profiles create and bind each
	// pod and write nothing else to it (GPUSlice binds first, with its
	// assignment in the Binding).
	for _, s := range summaries {
		got := s.PerRound[0].APIRequestsPerPod
		wantPatches := 0.0
		near := func(key string, want float64) bool { return math.Abs(got[key]-want) < 0.25 } // retries happen
		if !near("POST pods", 1) || !near("POST pods/binding", 1) || !near("PATCH pods", wantPatches) || !near("PATCH pods/status", wantPatches) {
			t.Errorf("%s: API requests per pod %v, want one create, one binding and %v patches of the pod and of its status", s.Profile, got, wantPatches)
		}
	}
}

func TestHistogramQuantile(t *testing.T) {
	// 10 samples ≤ 1, 30 in (1, 2], 50 in (2, 4], 10 above 4.
	h := histogram{bounds: []float64{1, 2, 4}, cum: []uint64{10, 40, 90}, count: 100}
	for _, tc := range []struct{ q, want float64 }{
		{0.05, 0.5},   // rank 5 of the first bucket, which starts at 0
		{0.25, 1.5},   // rank 25: 15 of 30 into (1, 2]
		{0.5, 2.4},    // rank 50: 10 of 50 into (2, 4]
		{0.9, 4},      // rank 90: the end of (2, 4]
		{0.99, 4},     // rank 99 falls into +Inf: the highest finite bound
		{0, 0},        // rank 0: the start of the first bucket
		{0.1, 1},      // rank 10: the end of the first bucket
		{0.4, 2},      // rank 40: the end of the second
		{0.65, 3},     // rank 65: 25 of 50 into (2, 4]
		{0.895, 3.98}, // rank 89.5
	} {
		if got := h.quantile(tc.q); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("quantile(%v) = %v, want %v", tc.q, got, tc.want)
		}
	}
	if h.beyondBuckets(0.9) || !h.beyondBuckets(0.91) {
		t.Errorf("beyondBuckets: 90 of 100 samples are within the buckets")
	}
	if got := (histogram{bounds: []float64{1}, cum: []uint64{0}}).quantile(0.99); got != 0 {
		t.Errorf("quantile of an empty histogram = %v, want 0", got)
	}
	later := histogram{bounds: []float64{1, 2, 4}, cum: []uint64{15, 50, 120}, count: 140, sum: 9}
	d := later.sub(h)
	if d.count != 40 || d.cum[0] != 5 || d.cum[1] != 10 || d.cum[2] != 30 || d.sum != 9 {
		t.Errorf("sub = %+v, want count 40, cum [5 10 30]", d)
	}
	if d := later.sub(histogram{}); d.count != 140 || d.cum[2] != 120 {
		t.Errorf("sub of a missing series = %+v, want the series itself", d)
	}
}

func TestExactQuantile(t *testing.T) {
	s := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	if got := exactQuantile(s, 0.99); got != 10 {
		t.Errorf("p99 = %v, want 10", got)
	}
	if got := exactQuantile(s, 0.5); got != 5 {
		t.Errorf("p50 = %v, want 5", got)
	}
}

func TestSchedulerConfig(t *testing.T) {
	root, err := controlplane.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	text, err := schedulerConfig(root, "/tmp/kubeconfig", false)
	if err != nil {
		t.Fatal(err)
	}
	type config struct {
		APIVersion     string `json:"apiVersion"`
		Kind           string `json:"kind"`
		LeaderElection struct {
			LeaderElect bool `json:"leaderElect"`
		} `json:"leaderElection"`
		ClientConnection struct {
			Kubeconfig string  `json:"kubeconfig"`
			QPS        float64 `json:"qps"`
			Burst      int     `json:"burst"`
		} `json:"clientConnection"`
		Profiles []struct {
			SchedulerName string         `json:"schedulerName"`
			Plugins       map[string]any `json:"plugins"`
			PluginConfig  []struct {
				Name string         `json:"name"`
				Args map[string]any `json:"args"`
			} `json:"pluginConfig"`
		} `json:"profiles"`
	}
	var cfg config
	if err := yaml.UnmarshalStrict([]byte(text), &cfg); err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	if cfg.Kind != "KubeSchedulerConfiguration" || cfg.LeaderElection.LeaderElect {
		t.Errorf("kind %q, leaderElect %v: want a KubeSchedulerConfiguration without leader election", cfg.Kind, cfg.LeaderElection.LeaderElect)
	}
	if cfg.ClientConnection.Kubeconfig != "/tmp/kubeconfig" || cfg.ClientConnection.QPS != clientQPS || cfg.ClientConnection.Burst != clientQPS {
		t.Errorf("clientConnection = %+v", cfg.ClientConnection)
	}
	if len(cfg.Profiles) != 2 || cfg.Profiles[0].SchedulerName != stockScheduler || cfg.Profiles[0].Plugins != nil || cfg.Profiles[1].SchedulerName != gpusliceScheduler {
		t.Fatalf("profiles: %+v, want the untouched %s and %s", cfg.Profiles, stockScheduler, gpusliceScheduler)
	}
	found := false
	for _, pc := range cfg.Profiles[1].PluginConfig {
		if pc.Name == "GPUSlice" {
			found = true
			d, err := time.ParseDuration(pc.Args["heartbeatTimeout"].(string))
			if err != nil || d != heartbeatTimeout {
				t.Errorf("heartbeatTimeout = %v, want %s", pc.Args["heartbeatTimeout"], heartbeatTimeout)
			}
			if st, _ := pc.Args["scoringStrategy"].(map[string]any); st["type"] != "binpack" {
				t.Errorf("scoringStrategy = %v, want the shipped binpack", pc.Args["scoringStrategy"])
			}
		}
	}
	if !found {
		t.Errorf("no GPUSlice pluginConfig in %s", text)
	}
	bind, _ := cfg.Profiles[1].Plugins["bind"].(map[string]any)
	enabled, _ := bind["enabled"].([]any)
	first, _ := func() (map[string]any, bool) {
		if len(enabled) == 0 {
			return nil, false
		}
		m, ok := enabled[0].(map[string]any)
		return m, ok
	}()
	if first["name"] != "GPUSlice" {
		t.Errorf("the shipped profile should bind with GPUSlice first: plugins %v", cfg.Profiles[1].Plugins)
	}

	// --stock-batched adds the stock plugins without default spreading, last.
	text, err = schedulerConfig(root, "/tmp/kubeconfig", true)
	if err != nil {
		t.Fatal(err)
	}
	var batched config
	if err := yaml.UnmarshalStrict([]byte(text), &batched); err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	if len(batched.Profiles) != 3 || batched.Profiles[2].SchedulerName != stockBatchedScheduler || batched.Profiles[2].Plugins != nil {
		t.Fatalf("profiles with --stock-batched: %+v", batched.Profiles)
	}
	if pc := batched.Profiles[2].PluginConfig; len(pc) != 1 || pc[0].Name != "PodTopologySpread" || pc[0].Args["defaultingType"] != "List" {
		t.Errorf("%s pluginConfig = %+v, want only PodTopologySpread with defaultingType List", stockBatchedScheduler, pc)
	}
}

func TestParseFlags(t *testing.T) {
	var usage bytes.Buffer
	o, err := parseFlags(nil, &usage)
	if err != nil {
		t.Fatal(err)
	}
	if o.nodes != 5000 || o.gpusPerNode != 8 || o.pods != 10000 || o.rounds != 1 || len(o.podGPUs) != 1 || o.podGPUs[0] != 1 {
		t.Errorf("defaults: %+v", o)
	}
	for _, tc := range []struct {
		args []string
		ok   bool
	}{
		{[]string{"--pods=0"}, false},
		{[]string{"--pod-gpus=1,x"}, false},
		{[]string{"--pod-gpus=16"}, false},                          // more than a node has
		{[]string{"--nodes=1", "--pods=9"}, false},                  // more GPUs than the cluster has
		{[]string{"--nodes=2", "--pods=5", "--pod-gpus=4,2"}, true}, // 4+2+4+2+4 = 16 of 16
		{[]string{"--nodes=2", "--pods=6", "--pod-gpus=4,2"}, false},
		{[]string{"extra"}, false},
	} {
		if _, err := parseFlags(tc.args, &usage); (err == nil) != tc.ok {
			t.Errorf("parseFlags(%q): err = %v, want ok %v", tc.args, err, tc.ok)
		}
	}
}

func TestParseRequests(t *testing.T) {
	text := []byte(`# HELP apiserver_request_total [STABLE] Counter of apiserver requests
# TYPE apiserver_request_total counter
apiserver_request_total{code="201",component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="",verb="POST",version="v1"} 40
apiserver_request_total{code="409",component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="",verb="POST",version="v1"} 2
apiserver_request_total{code="201",component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="binding",verb="POST",version="v1"} 40
apiserver_request_total{code="200",component="apiserver",dry_run="",group="events.k8s.io",resource="events",scope="resource",subresource="",verb="POST",version="v1"} 40
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="pods",scope="cluster",subresource="",verb="WATCH",version="v1"} 3
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="",scope="",subresource="/metrics",verb="GET",version=""} 5
apiserver_request_duration_seconds_bucket{verb="POST",le="0.1"} 7
`)
	got := parseRequests(text)
	want := map[string]float64{"POST pods": 42, "POST pods/binding": 40, "POST events.events.k8s.io": 40}
	if len(got) != len(want) {
		t.Fatalf("parseRequests = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
	if pp := perPod(map[string]float64{"POST pods": 2}, got, 40); pp["POST pods"] != 1 || pp["POST pods/binding"] != 1 {
		t.Errorf("perPod = %v", pp)
	}
}
