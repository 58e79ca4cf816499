package gpuslice

import (
	"context"
	"strings"
	"testing"

	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"

	"github.com/gpuslice/gpuslice/pkg/assignment"
	"github.com/gpuslice/gpuslice/pkg/topology"
	"github.com/gpuslice/gpuslice/pkg/topology/fixtures"
)

// TestSharing: on a time-sliced node whose device plugin packs replicas, a
// container asking for nvidia.com/gpu: 2 would get two replicas of one GPU.
// By default Filter refuses that node; the pod lands on whole GPUs, or on
// one GPU's replicas only when it opts in.
func TestSharing(t *testing.T) {
	packed := fixtures.Spec{Name: "packed", Product: "NVIDIA H100 80GB HBM3", GPUs: 4, Replicas: 4, Policy: topology.PolicyPacked}
	whole := fixtures.Spec{Name: "whole", Product: "NVIDIA H200", GPUs: 4}
	for _, tc := range []struct {
		name, annotation string
		defaultSharing   string
		node             string
		code             fwk.Code
		msg              string
	}{
		{"default refuses one GPU's replicas", "", "DistinctGPUs", "packed", fwk.Unschedulable,
			`gpuslice: container "main" would get its 2 nvidia.com/gpu replicas on 1 physical device(s) (packed policy); it needs 2 distinct devices (set annotation gpuslice.io/sharing: Any`},
		{"default takes whole GPUs", "", "DistinctGPUs", "whole", fwk.Success, ""},
		{"opted in", "Any", "DistinctGPUs", "packed", fwk.Success, ""},
		{"profile default Any", "", "Any", "packed", fwk.Success, ""},
		{"exclusive refuses time-sliced", "Exclusive", "DistinctGPUs", "packed", fwk.UnschedulableAndUnresolvable,
			"gpuslice: nvidia.com/gpu is time-sliced on this node, and the pod asks for exclusive devices"},
		{"exclusive takes whole GPUs", "Exclusive", "Any", "whole", fwk.Success, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := testArgs("binpack")
			args.DefaultSharing = tc.defaultSharing
			pl := newPlugin(t, testShared(newCache(t, packed, whole), args), args, nil)
			pod := gpuPod("trainer", map[string]int64{"nvidia.com/gpu": 2})
			if tc.annotation != "" {
				pod.Annotations = map[string]string{assignment.SharingAnnotation: tc.annotation}
			}
			cs := cycle(t, pl, pod)
			st := pl.Filter(context.Background(), cs, pod, nodeInfo(tc.node))
			if st.Code() != tc.code || !strings.Contains(st.Message(), tc.msg) {
				t.Fatalf("Filter = %v %q, want %v %q", st.Code(), st.Message(), tc.code, tc.msg)
			}
			if !st.IsSuccess() {
				return
			}
			if st := pl.Reserve(context.Background(), cs, pod, tc.node); !st.IsSuccess() {
				t.Fatal(st)
			}
			info, ok := pl.shared.cache.Pod(pod.UID)
			if !ok || len(info.Devices) != 1 || len(info.Devices[0].DeviceIDs) != 2 {
				t.Fatalf("reserved %+v", info)
			}
			gpus := map[string]bool{}
			for _, id := range info.Devices[0].DeviceIDs {
				base, _, _ := topology.SplitReplicaID(id)
				gpus[base] = true
			}
			wantGPUs := 2
			if tc.annotation == "Any" || tc.defaultSharing == "Any" && tc.node == "packed" {
				wantGPUs = 1 // packed: the plugin's pick, accepted
			}
			if len(gpus) != wantGPUs {
				t.Fatalf("reserved %v: %d GPUs, want %d", info.Devices[0].DeviceIDs, len(gpus), wantGPUs)
			}
		})
	}
	t.Run("bad annotation", func(t *testing.T) {
		args := testArgs("binpack")
		pl := newPlugin(t, testShared(newCache(t, packed), args), args, nil)
		pod := gpuPod("trainer", map[string]int64{"nvidia.com/gpu": 2})
		pod.Annotations = map[string]string{assignment.SharingAnnotation: "shared"}
		_, st := pl.PreFilter(context.Background(), framework.NewCycleState(), pod, nil)
		if st.Code() != fwk.UnschedulableAndUnresolvable || !strings.Contains(st.Message(), `unknown GPU sharing "shared"`) {
			t.Fatalf("PreFilter = %v", st)
		}
	})
}
