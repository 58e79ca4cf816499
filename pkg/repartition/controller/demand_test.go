package controller

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	"github.com/gpuslice/gpuslice/pkg/assignment"
	"github.com/gpuslice/gpuslice/pkg/podrequest"
	"github.com/gpuslice/gpuslice/pkg/topology"
)

func TestMIGDemandNeedsTheSchedulersRecord(t *testing.T) {
	since := time.Unix(1_800_000_000, 0).UTC()
	annotation := func(profiles map[string]int) string {
		v, err := (&assignment.Demand{Profiles: profiles, Since: since}).Encode()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	pod := func(ann string, nominated string) *corev1.Pod {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p"},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{
				Limits: corev1.ResourceList{"nvidia.com/mig-3g.40gb": resource.MustParse("1")}}}}},
			Status: corev1.PodStatus{NominatedNodeName: nominated, Conditions: []corev1.PodCondition{{
				Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable}}},
		}
		if ann != "" {
			p.Annotations = map[string]string{assignment.DemandAnnotation: ann}
		}
		return p
	}
	tests := []struct {
		name string
		pod  *corev1.Pod
		want bool
	}{
		{"Unschedulable without the record", pod("", ""), false},
		{"recorded", pod(annotation(map[string]int{"3g.40gb": 1}), ""), true},
		{"nominated by preemption", pod(annotation(map[string]int{"3g.40gb": 1}), "n1"), false},
		{"names a profile the pod does not ask for", pod(annotation(map[string]int{"1g.10gb": 1}), ""), false},
		{"malformed", pod(`{"profiles":{}}`, ""), false},
	}
	cat := topology.NewCatalog()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := podrequest.Parse(tc.pod, podrequest.Options{Catalog: cat})
			if err != nil {
				t.Fatal(err)
			}
			d, ok := migDemand(klog.Background(), tc.pod, req)
			if ok != tc.want {
				t.Fatalf("migDemand = %v, want %v", ok, tc.want)
			}
			if ok && !d.Since.Equal(since) {
				t.Fatalf("since %v, want %v", d.Since, since)
			}
		})
	}
}
