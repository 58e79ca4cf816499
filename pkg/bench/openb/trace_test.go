package openb

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestReadPodsVariants(t *testing.T) {
	// The multigpu variants have only the first five columns; other
	// variants carry gpu_spec, qos and times. Column order is the header's.
	p := writeFile(t, "pods.csv", "gpu_milli,name,num_gpu,cpu_milli,memory_mib\n500,a,1,4000,8192\n1000,b,2,8000,16384\n0,c,0,1000,1024\n")
	pods, err := ReadPods(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(pods) != 3 || pods[0].GPUMilli != 500 || pods[1].NumGPU != 2 || pods[1].GPURequest() != 2000 || pods[2].NumGPU != 0 || !pods[0].Sharing() || pods[1].Sharing() {
		t.Fatalf("pods %+v", pods)
	}
	p = writeFile(t, "spec.csv", "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos\nx,1000,1024,1,1000,V100M16|V100M32,LS\ny,1000,1024,1,1000,,BE\n")
	pods, err = ReadPods(p)
	if err != nil {
		t.Fatal(err)
	}
	if !pods[0].Accepts("V100M32") || pods[0].Accepts("T4") || !pods[1].Accepts("T4") {
		t.Fatalf("gpu_spec: %+v", pods)
	}
	// The shared trace itself, when present.
	if pods, err := ReadPods("../../../../shared/data/openb/csv/openb_pod_list_default.csv"); err == nil && len(pods) != 8152 {
		t.Errorf("default trace: %d pods, want 8152", len(pods))
	}
}

func TestReadBadInput(t *testing.T) {
	for _, tc := range []struct {
		name, body, want string
		nodes            bool
	}{
		{name: "missing column", body: "name,cpu_milli,memory_mib,num_gpu\na,1,1,0\n", want: "missing column(s) gpu_milli"},
		{name: "not a number", body: "name,cpu_milli,memory_mib,num_gpu,gpu_milli\na,lots,1,0,0\n", want: `:2: cpu_milli: "lots" is not an integer`},
		{name: "share over a GPU", body: "name,cpu_milli,memory_mib,num_gpu,gpu_milli\na,1,1,1,1500\n", want: "gpu_milli 1500 outside 1..1000"},
		{name: "shared multi-GPU", body: "name,cpu_milli,memory_mib,num_gpu,gpu_milli\na,1,1,2,500\n", want: "only single-GPU pods may share"},
		{name: "negative", body: "name,cpu_milli,memory_mib,num_gpu,gpu_milli\na,-1,1,0,0\n", want: "negative request"},
		{name: "empty", body: "name,cpu_milli,memory_mib,num_gpu,gpu_milli\n", want: "no pods"},
		{name: "node without model", nodes: true, body: "sn,cpu_milli,memory_mib,gpu,model\nn,1000,1000,8,\n", want: "8 GPUs but no model"},
	} {
		p := writeFile(t, "x.csv", tc.body)
		var err error
		if tc.nodes {
			_, err = ReadNodes(p)
		} else {
			_, err = ReadPods(p)
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want it to contain %q", tc.name, err, tc.want)
		}
	}
}

func TestWorkloadProtocol(t *testing.T) {
	var pods []Pod
	for _, n := range []string{"d", "b", "a", "c"} {
		pods = append(pods, Pod{Name: n, NumGPU: 1, GPUMilli: 500})
	}
	capacity := int64(2000) // two GPUs: the four pods are 100 %
	w1, err := Workload(pods, capacity, 42, 1.3)
	if err != nil {
		t.Fatal(err)
	}
	total := int64(0)
	for _, p := range w1 {
		total += p.GPURequest()
	}
	if total < 2600 || len(w1) != 6 {
		t.Fatalf("inflated to %d milli in %d pods, want 2600 in 6", total, len(w1))
	}
	for _, p := range w1[4:] {
		if !strings.Contains(p.Name, "-copy") {
			t.Errorf("appended pod %s is not named a copy", p.Name)
		}
	}
	// The file order does not matter (sorted by name first); the seed does.
	reversed := []Pod{pods[3], pods[2], pods[1], pods[0]}
	w2, _ := Workload(reversed, capacity, 42, 1.3)
	for i := range w1 {
		if w1[i].Name != w2[i].Name {
			t.Fatalf("same seed, other file order: %v vs %v", names2(w1), names2(w2))
		}
	}
	differs := false
	for seed := int64(43); seed < 53 && !differs; seed++ {
		w3, _ := Workload(pods, capacity, seed, 1.3)
		for i := range w3 {
			differs = differs || w3[i].Name != w1[i].Name
		}
	}
	if !differs {
		t.Error("ten other seeds all gave seed 42's order")
	}
	// A list larger than the target is cut.
	w4, _ := Workload(pods, capacity, 42, 0.5)
	if len(w4) != 2 {
		t.Errorf("tune 0.5 of 2000 milli: %d pods, want 2", len(w4))
	}
}

func names2(ps []Pod) []string {
	out := make([]string, len(ps))
	for i := range ps {
		out[i] = ps[i].Name
	}
	return out
}

func TestClusterBindRefusesBadPlacements(t *testing.T) {
	c, err := NewCluster([]Node{{Name: "n", CPUMilli: 8000, MemMiB: 1024, GPUs: 2, Model: "T4"}})
	if err != nil {
		t.Fatal(err)
	}
	share := &Pod{Name: "s", CPUMilli: 1000, MemMiB: 10, NumGPU: 1, GPUMilli: 700}
	if err := c.Bind(share, 0, []int{0}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		p    *Pod
		gpus []int
		want string
	}{
		{share, []int{0}, "GPU 0 has 300 left"},
		{&Pod{Name: "w", NumGPU: 2, GPUMilli: 1000}, []int{1, 1}, "bad or repeated GPU 1"},
		{&Pod{Name: "w", NumGPU: 2, GPUMilli: 1000}, []int{1}, "1 GPUs given, wants 2"},
		{&Pod{Name: "m", NumGPU: 1, GPUMilli: 1000, Models: []string{"V100M16"}}, []int{1}, "GPU model T4 not in V100M16"},
		{&Pod{Name: "c", CPUMilli: 9000}, nil, "cpu 9000/7000"},
	} {
		before := c.AllocatedMilli
		if err := c.Bind(tc.p, 0, tc.gpus); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %v: %v, want %q", tc.p.Name, tc.gpus, err, tc.want)
		}
		if c.AllocatedMilli != before || c.Nodes[0].GPULeft[1] != 1000 {
			t.Errorf("a refused bind changed the ledger")
		}
	}
	if got := c.UnallocatedGPUPct(); got != 65 {
		t.Errorf("unallocated %v%%, want 65", got)
	}
}
