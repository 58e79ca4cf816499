package assignment

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gpuslice/gpuslice/pkg/allocator"
	"github.com/gpuslice/gpuslice/pkg/podrequest"
)

func TestRoundTrip(t *testing.T) {
	p := &allocator.Placement{Node: "n1", Containers: []allocator.ContainerDevices{
		{Name: "init", Devices: []allocator.ResourceDevices{{Resource: "nvidia.com/gpu", DeviceIDs: []string{"GPU-a", "GPU-b"}}}},
		{Name: "app", Devices: []allocator.ResourceDevices{{Resource: "nvidia.com/gpu", DeviceIDs: []string{"GPU-a"}}, {Resource: "nvidia.com/mig-1g.5gb", DeviceIDs: []string{"MIG-x"}}}},
	}}
	a := FromPlacement(p)
	v, err := a.Encode()
	if err != nil {
		t.Fatal(err)
	}
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{Annotation: v}}}
	back, err := FromPod(pod)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back.Placement(), p) {
		t.Fatalf("round trip %+v != %+v", back.Placement(), p)
	}
	patch, err := a.Patch()
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]map[string]map[string]string
	if err := json.Unmarshal(patch, &m); err != nil || m["metadata"]["annotations"][Annotation] != v {
		t.Fatalf("patch %s: %v", patch, err)
	}
}

func TestDecodeRejectsBadInput(t *testing.T) {
	for _, bad := range []string{"", "{", `{"containers":[]}`, `{"node":"n","containers":[{"name":"c","devices":[{"resource":"","deviceIDs":["x"]}]}]}`, `{"node":"n","containers":[{"name":"c","devices":[{"resource":"r"}]}]}`} {
		if _, err := Decode(bad); err == nil || !strings.Contains(err.Error(), Annotation) {
			t.Errorf("Decode(%q) = %v, want an error naming the annotation", bad, err)
		}
	}
	if a, err := FromPod(&v1.Pod{}); a != nil || err != nil {
		t.Fatalf("pod without annotation: %v %v", a, err)
	}
}

func TestSource(t *testing.T) {
	p := &allocator.Placement{Node: "n", Containers: []allocator.ContainerDevices{{Name: "c", Devices: []allocator.ResourceDevices{{Resource: "r", DeviceIDs: []string{"x"}}}}}}
	v, err := FromPlacement(p).Encode()
	if err != nil || !strings.HasPrefix(v, `{"source":"predicted",`) {
		t.Fatalf("prediction encoded as %s, %v", v, err)
	}
	if a, _ := Decode(v); a.Held() {
		t.Fatal("a prediction reads as held")
	}
	v, _ = Observed(p).Encode()
	if a, err := Decode(v); err != nil || !a.Held() {
		t.Fatalf("kubelet assignment %s: %+v %v", v, a, err)
	}
	// Written by an older gpuslice: a prediction.
	if a, err := Decode(`{"node":"n","containers":[]}`); err != nil || a.Source != Predicted || a.Held() {
		t.Fatalf("annotation without source: %+v %v", a, err)
	}
	if _, err := Decode(`{"source":"guess","node":"n","containers":[]}`); err == nil || !strings.Contains(err.Error(), `unknown source "guess"`) {
		t.Fatalf("unknown source: %v", err)
	}
	patch, err := Observed(p).PatchFor("uid-1")
	if err != nil || !strings.Contains(string(patch), `"uid":"uid-1"`) {
		t.Fatalf("patch %s: %v", patch, err)
	}
}

func TestSharingAnnotation(t *testing.T) {
	pod := &v1.Pod{}
	if s, err := Sharing(pod, podrequest.SharingDistinct); err != nil || s != podrequest.SharingDistinct {
		t.Fatalf("no annotation: %s %v", s, err)
	}
	pod.Annotations = map[string]string{SharingAnnotation: "Exclusive"}
	if s, err := Sharing(pod, podrequest.SharingDistinct); err != nil || s != podrequest.SharingExclusive {
		t.Fatalf("Exclusive: %s %v", s, err)
	}
	pod.Annotations[SharingAnnotation] = "exclusive"
	if _, err := Sharing(pod, podrequest.SharingDistinct); err == nil || !strings.Contains(err.Error(), SharingAnnotation) || !strings.Contains(err.Error(), "Exclusive") {
		t.Fatalf("bad value: %v", err)
	}
}
