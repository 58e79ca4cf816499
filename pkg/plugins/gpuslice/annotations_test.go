package gpuslice

import (
	"fmt"
	"strings"
	"testing"

	"k8s.io/klog/v2/ktesting"

	"github.com/gpuslice/gpuslice/pkg/assignment"
)

// TestBadAnnotationLoggedOnce: a bound pod's malformed assignment is
// ignored (its devices are predicted), and the log says so once per value,
// with the value and the reason, however often the pod is updated.
func TestBadAnnotationLoggedOnce(t *testing.T) {
	logger := ktesting.NewLogger(t, ktesting.NewConfig(ktesting.BufferLogs(true)))
	buffer := logger.GetSink().(ktesting.Underlier).GetBuffer()
	logged := func() []string {
		var out []string
		for _, e := range buffer.Data() {
			out = append(out, fmt.Sprintf("%s %v", e.Message, e.ParameterKVList))
		}
		return out
	}
	args := testArgs("binpack")
	c := newCache(t, h100)
	s := testShared(c, args)
	pod := gpuPod("p", map[string]int64{"nvidia.com/gpu": 1})
	pod.Spec.NodeName = "h100"
	pod.Annotations = map[string]string{assignment.Annotation: `{"node":""}`}
	for i := 0; i < 3; i++ {
		s.onPod(logger, pod) // informer updates (status, labels...)
	}
	lines := logged()
	if len(lines) != 1 {
		t.Fatalf("%d log lines for one bad value, want 1: %q", len(lines), lines)
	}
	for _, want := range []string{assignment.Annotation, `{"node":""}`, "no node", "predicted from its request"} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("log %q lacks %q", lines[0], want)
		}
	}
	if info, ok := c.Pod(pod.UID); !ok || !info.Predicted {
		t.Fatalf("pod with an ignored annotation: %+v, %v; want tracked with predicted devices", info, ok)
	}
	pod.Annotations[assignment.Annotation] = "{"
	s.onPod(logger, pod)
	s.onPod(logger, pod)
	lines = logged()
	if len(lines) != 2 || !strings.Contains(lines[1], "unexpected end of JSON input") {
		t.Fatalf("a new bad value: %q", lines)
	}
	s.onPodDelete(pod)
	s.onPod(logger, pod) // recreated with the same UID: logged again
	if lines = logged(); len(lines) != 3 {
		t.Fatalf("after delete and re-add: %q", lines)
	}
}
