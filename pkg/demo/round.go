package demo

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/gpuslice/gpuslice/pkg/localcluster"
	"github.com/gpuslice/gpuslice/pkg/topology"
)

type slot struct {
	label string   // "1g.5gb" or "replica 2" or "whole"
	pods  []string // holders
}

type gpuView struct {
	index int
	slots []slot
}

type nodeView struct {
	name string
	gpus []gpuView
}

type roundResult struct {
	title               string
	bound, pending      int
	gpusUsed, gpusTotal int
	// shortGPUs counts GPUs pods asked for but did not get: a container
	// given N replicas on fewer than N physical GPUs (the device plugin's
	// pick under kube-scheduler on a time-sliced node).
	shortGPUs             int
	nodesUsed, nodesTotal int
	nodes                 []nodeView
	pendingPods           []string
}

// runRound creates the pods with the given scheduler, waits until each is
// Running or unschedulable, and reads where the kubelets put them.
func runRound(ctx context.Context, kube kubernetes.Interface, nodes map[string]*localcluster.SimNode, pods []*corev1.Pod, scheduler string) (roundResult, error) {
	for _, p := range pods {
		c := p.DeepCopy()
		c.Spec.SchedulerName = scheduler
		if _, err := kube.CoreV1().Pods("demo").Create(ctx, c, metav1.CreateOptions{}); err != nil {
			return roundResult{}, err
		}
	}
	var list *corev1.PodList
	stable, last := time.Now(), ""
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		l, err := kube.CoreV1().Pods("demo").List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		running, pending := 0, 0
		for _, p := range l.Items {
			switch {
			case p.Status.Phase == corev1.PodRunning || p.Status.Phase == corev1.PodFailed:
				running++
			case p.Spec.NodeName == "" && localcluster.Unschedulable(&p) != "":
				pending++
			default:
				return false, nil
			}
		}
		if s := fmt.Sprint(running, pending); s != last {
			last, stable = s, time.Now()
		}
		list = l
		return time.Since(stable) > 2*time.Second, nil
	})
	if err != nil {
		return roundResult{}, fmt.Errorf("pods under %s did not settle: %w", scheduler, err)
	}
	return observe(nodes, list)
}

// observe reads where the kubelets put the listed pods, GPU by GPU.
func observe(nodes map[string]*localcluster.SimNode, list *corev1.PodList) (roundResult, error) {
	res := roundResult{nodesTotal: len(nodes)}
	holder := map[string]map[string][]string{} // node -> resource/deviceID -> pods
	for _, p := range list.Items {
		if p.Spec.NodeName == "" {
			res.pending++
			res.pendingPods = append(res.pendingPods, p.Name)
			continue
		}
		res.bound++
		sn := nodes[p.Spec.NodeName]
		if sn == nil {
			continue
		}
		cds, ok := sn.Kubelet.Devices(p.UID)
		if !ok {
			continue
		}
		if holder[p.Spec.NodeName] == nil {
			holder[p.Spec.NodeName] = map[string][]string{}
		}
		for _, cd := range cds {
			for _, d := range cd.Devices {
				physical := map[string]bool{}
				for _, id := range d.DeviceIDs {
					base, _, _ := topology.SplitReplicaID(id)
					physical[base] = true
				}
				res.shortGPUs += len(d.DeviceIDs) - len(physical)
				for _, id := range d.DeviceIDs {
					base, _, _ := topology.SplitReplicaID(id)
					k := base
					holder[p.Spec.NodeName][k] = appendUnique(holder[p.Spec.NodeName][k], p.Name)
				}
			}
		}
	}
	names := make([]string, 0, len(nodes))
	for n := range nodes {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		topo, err := nodes[n].Topology()
		if err != nil {
			return res, err
		}
		nv := nodeView{name: n}
		nodeUsed := false
		for _, g := range topo.GPUs {
			gv := gpuView{index: g.Index}
			used := false
			if g.MIGEnabled {
				for _, in := range g.Instances {
					h := holder[n][in.DeviceID]
					gv.slots = append(gv.slots, slot{label: in.Profile, pods: h})
					used = used || len(h) > 0
				}
			} else {
				h := holder[n][g.UUID]
				label := "whole GPU"
				if topo.TimeSlicing != nil && len(topo.TimeSlicing.Resources) > 0 {
					label = "time-sliced"
				}
				gv.slots = append(gv.slots, slot{label: label, pods: h})
				used = len(h) > 0
			}
			res.gpusTotal++
			if used {
				res.gpusUsed++
				nodeUsed = true
			}
			nv.gpus = append(nv.gpus, gv)
		}
		if nodeUsed {
			res.nodesUsed++
		}
		res.nodes = append(res.nodes, nv)
	}
	return res, nil
}

func (r roundResult) print(w io.Writer) {
	for _, n := range r.nodes {
		n.print(w)
	}
	if len(r.pendingPods) > 0 {
		fmt.Fprintf(w, "pending: %s\n", strings.Join(r.pendingPods, ", "))
	}
	fmt.Fprintf(w, "(· = GPU with nothing on it)\n")
}

// print writes the node's name and a line per GPU: what each slot holds.
func (n nodeView) print(w io.Writer) {
	fmt.Fprintf(w, "%s\n", n.name)
	for _, g := range n.gpus {
		mark := "  "
		if g.empty() {
			mark = "· "
		}
		fmt.Fprintf(w, "  %sGPU %d %s\n", mark, g.index, g.slotsText())
	}
}

// empty reports whether no pod holds any slot of the GPU.
func (g gpuView) empty() bool {
	for _, s := range g.slots {
		if len(s.pods) > 0 {
			return false
		}
	}
	return true
}

// slotsText reads "[1g.5gb: pod-a] [3g.20gb: free]".
func (g gpuView) slotsText() string {
	parts := make([]string, 0, len(g.slots))
	for _, s := range g.slots {
		who := "free"
		if len(s.pods) > 0 {
			who = strings.Join(s.pods, ",")
		}
		parts = append(parts, fmt.Sprintf("[%s: %s]", s.label, who))
	}
	return strings.Join(parts, " ")
}

func appendUnique(a []string, s string) []string {
	for _, x := range a {
		if x == s {
			return a
		}
	}
	return append(a, s)
}
