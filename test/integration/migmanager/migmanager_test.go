// Package migmanager runs the simulated cluster's fake MIG manager against a
// real etcd and kube-apiserver: label-driven runs, the mig-parted ConfigMap,
// the device plugin's resources during a run, failures.
package migmanager

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/gpuslice/gpuslice/pkg/localcluster"
	"github.com/gpuslice/gpuslice/pkg/localcluster/controlplane"
	"github.com/gpuslice/gpuslice/pkg/topology"
	"github.com/gpuslice/gpuslice/pkg/topology/fixtures"
	"github.com/gpuslice/gpuslice/test/framework/gpucluster"
)

const (
	nodeName = "h100-0"
	cmNS     = "gpu-operator"
	cmName   = "custom-mig-parted-config"
)

func writeConfigs(t *testing.T, ctx context.Context, kube kubernetes.Interface, configs map[string][]topology.MIGPartedEntry) {
	t.Helper()
	data, err := (&topology.MIGParted{Version: "v1", Configs: configs}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: cmNS, Name: cmName}, Data: map[string]string{"config.yaml": string(data)}}
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := kube.CoreV1().ConfigMaps(cmNS).Get(ctx, cmName, metav1.GetOptions{})
		if err != nil {
			_, err = kube.CoreV1().ConfigMaps(cmNS).Create(ctx, cm, metav1.CreateOptions{})
			return err
		}
		cur.Data = cm.Data
		_, err = kube.CoreV1().ConfigMaps(cmNS).Update(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func setLabel(t *testing.T, ctx context.Context, kube kubernetes.Interface, key, value string) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := kube.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		n.Labels[key] = value
		_, err = kube.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// watchNode samples the node every 10 ms until stop is closed: the first
// time state became success, the first time allocatable showed want, and
// whether allocatable of mig-1g.10gb was ever 0.
type sample struct {
	success, allocatable time.Time
	sawZero              bool
}

func watchNode(ctx context.Context, kube kubernetes.Interface, res string, want int64, stop <-chan struct{}) <-chan sample {
	out := make(chan sample, 1)
	go func() {
		var s sample
		defer func() { out <- s }()
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			n, err := kube.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
			if err != nil {
				continue
			}
			if q, ok := n.Status.Allocatable["nvidia.com/mig-1g.10gb"]; ok && q.Value() == 0 {
				s.sawZero = true
			}
			if n.Labels[topology.MIGConfigStateLabel] == "success" && s.success.IsZero() {
				s.success = time.Now()
			}
			if q, ok := n.Status.Allocatable[corev1.ResourceName(res)]; ok && q.Value() == want && s.allocatable.IsZero() {
				s.allocatable = time.Now()
			}
		}
	}()
	return out
}

func waitRuns(t *testing.T, ctx context.Context, m *localcluster.FakeMIGManager, n int) []localcluster.MIGRun {
	t.Helper()
	err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		return len(m.Runs()) >= n && !m.Running(), nil
	})
	if err != nil {
		t.Fatalf("waiting for %d runs: %v (runs %+v)", n, err, m.Runs())
	}
	return m.Runs()
}

func TestFakeMIGManager(t *testing.T) {
	gc := gpucluster.Start(t, controlplane.Options{}, cmNS, "default")
	ctx, kube, gpu := gc.Ctx, gc.Kube, gc.GPU
	var err error
	ones := []string{"1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb"}
	sn, err := localcluster.StartSimNode(ctx, kube, gpu, fixtures.Spec{Name: nodeName, Product: "NVIDIA H100 80GB HBM3", GPUs: 2, MIG: ones},
		localcluster.SimOptions{HeartbeatInterval: time.Second, PollInterval: 200 * time.Millisecond, Resync: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	m := sn.StartMIGManager(ctx, localcluster.MIGManagerOptions{RunTime: 300 * time.Millisecond, PluginDelay: 400 * time.Millisecond})
	before, err := sn.Topology()
	if err != nil {
		t.Fatal(err)
	}

	// 1. GPU 1 becomes 2×3g; GPU 0 is listed unchanged and is not touched.
	writeConfigs(t, ctx, kube, map[string][]topology.MIGPartedEntry{
		"c1": topology.PerGPUConfig(map[int]map[string]int{0: {"1g.10gb": 7}, 1: {"3g.40gb": 2}}, nil),
		"c2": topology.PerGPUConfig(map[int]map[string]int{0: {"1g.10gb": 7}, 1: {"1g.10gb": 7}}, nil),
	})
	time.Sleep(200 * time.Millisecond) // the informer's view of the ConfigMap
	stop := make(chan struct{})
	samples := watchNode(ctx, kube, "nvidia.com/mig-3g.40gb", 2, stop)
	setLabel(t, ctx, kube, topology.MIGConfigLabel, "c1")
	runs := waitRuns(t, ctx, m, 1)
	time.Sleep(100 * time.Millisecond)
	close(stop)
	s := <-samples
	r := runs[0]
	if r.State != "success" || len(r.Changed) != 1 || r.Changed[0] != 1 {
		t.Fatalf("run 1: %+v", r)
	}
	if !s.sawZero {
		t.Error("allocatable never dropped to 0 during the run")
	}
	if s.success.IsZero() || s.allocatable.IsZero() || !s.success.Before(s.allocatable) {
		t.Errorf("state success at %v, new allocatable at %v: success must come first", s.success, s.allocatable)
	}
	if r.Ended.Sub(r.Started) < 300*time.Millisecond {
		t.Errorf("run took %v, configured 300ms", r.Ended.Sub(r.Started))
	}
	after, err := sn.Topology()
	if err != nil {
		t.Fatal(err)
	}
	for i, in := range before.GPUs[0].Instances {
		if after.GPUs[0].Instances[i].DeviceID != in.DeviceID {
			t.Fatalf("unchanged GPU 0 was rebuilt: %v -> %v", before.GPUs[0].Instances, after.GPUs[0].Instances)
		}
	}
	if got := after.GPUs[1].Instances; len(got) != 2 || got[0].Profile != "3g.40gb" || got[0].Start != 0 || got[1].Start != 4 {
		t.Fatalf("GPU 1 = %+v, want 3g at 0 and 4", got)
	}

	// 2. The same value again starts nothing (another label's update
	// wakes the informer).
	setLabel(t, ctx, kube, topology.MIGConfigLabel, "c1")
	setLabel(t, ctx, kube, "unrelated", "x")
	time.Sleep(500 * time.Millisecond)
	if n := len(m.Runs()); n != 1 {
		t.Fatalf("unchanged label started a run: %+v", m.Runs())
	}

	// 3. A pod holds a 3g device of GPU 1: rebuilding GPU 1 fails.
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "holder"},
		Spec: corev1.PodSpec{NodeName: nodeName, Containers: []corev1.Container{{Name: "c", Image: "x",
			Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{"nvidia.com/mig-3g.40gb": resource.MustParse("1")}}}}},
	}
	if _, err := kube.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var held string
	err = wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		pods, _ := sn.Kubelet.List(ctx)
		for _, p := range pods {
			if p.Name == "holder" && len(p.Containers) > 0 && len(p.Containers[0].Devices) > 0 {
				held = p.Containers[0].Devices[0].DeviceIDs[0]
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("holder pod never got a device: %v", err)
	}
	setLabel(t, ctx, kube, topology.MIGConfigLabel, "c2")
	runs = waitRuns(t, ctx, m, 2)
	if r := runs[1]; r.State != "failed" || !strings.Contains(r.Error, "in use") {
		t.Fatalf("run 2: %+v", r)
	}
	n, err := kube.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st := n.Labels[topology.MIGConfigStateLabel]; st != "failed" {
		t.Fatalf("state %q after a failed run", st)
	}
	after, err = sn.Topology()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, in := range after.GPUs[1].Instances {
		found = found || in.DeviceID == held
	}
	if !found {
		t.Fatalf("the device in use (%s) was destroyed: %+v", held, after.GPUs[1].Instances)
	}

	// 4. An unknown name fails at once.
	setLabel(t, ctx, kube, topology.MIGConfigLabel, "nope")
	runs = waitRuns(t, ctx, m, 3)
	if r := runs[2]; r.State != "failed" || !strings.Contains(r.Error, "unknown MIG config") {
		t.Fatalf("run 3: %+v", r)
	}

}
