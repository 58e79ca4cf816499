package podrequest

import (
	"reflect"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
)

func TestParse(t *testing.T) {
	for _, tc := range parseCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(tc.pod, tc.opts)
			if tc.wantErr != nil || tc.wantExact != "" {
				if err == nil {
					t.Fatalf("Parse succeeded with %q, want an error", got.String())
				}
				if got != nil {
					t.Errorf("Parse returned %+v with its error, want nil", got)
				}
				if tc.wantExact != "" && err.Error() != tc.wantExact {
					t.Errorf("error:\n got %s\nwant %s", err, tc.wantExact)
				}
				for _, s := range tc.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not contain %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !reflect.DeepEqual(got.Effective, tc.want) && (len(got.Effective) != 0 || len(tc.want) != 0) {
				t.Errorf("Effective = %+v, want %+v", got.Effective, tc.want)
			}
			if got.Empty() != (len(tc.want) == 0) {
				t.Errorf("Empty() = %v, want %v", got.Empty(), len(tc.want) == 0)
			}
			for _, w := range tc.want {
				if n := got.Count(w.Name); n != w.Count {
					t.Errorf("Count(%s) = %d, want %d", w.Name, n, w.Count)
				}
			}
			if tc.wantContainers != nil && !reflect.DeepEqual(got.Containers, tc.wantContainers) {
				t.Errorf("Containers = %+v, want %+v", got.Containers, tc.wantContainers)
			}
			if len(tc.want) == 0 && len(got.Containers) != 0 {
				t.Errorf("Containers = %+v for a pod without GPU request", got.Containers)
			}
			if tc.wantString != "" || len(tc.want) == 0 {
				if s := got.String(); s != tc.wantString {
					t.Errorf("String() = %q, want %q", s, tc.wantString)
				}
			}
		})
	}
}

// TestEffectiveMatchesKubernetes cross-checks Effective against a port of
// component-helpers' PodRequests on every table case that parses.
func TestEffectiveMatchesKubernetes(t *testing.T) {
	checked := 0
	for _, tc := range parseCases {
		got, err := Parse(tc.pod, tc.opts)
		if err != nil {
			continue
		}
		checked++
		want := referenceEffective(tc.pod, tc.opts)
		if len(want) == 0 && len(got.Effective) == 0 {
			continue
		}
		if !reflect.DeepEqual(got.Effective, want) {
			t.Errorf("%s: Effective = %+v, PodRequests gives %+v", tc.name, got.Effective, want)
		}
	}
	if checked < 15 {
		t.Errorf("only %d table cases parsed; the cross-check covers too little", checked)
	}
}

func TestIsGPUResource(t *testing.T) {
	opts := Options{ExtraResources: []string{"example.com/gpu-shared", ""}}
	for name, want := range map[string]bool{
		"nvidia.com/gpu":                true,
		"nvidia.com/gpu.shared":         true,
		"nvidia.com/gpu.anything":       true,
		"nvidia.com/gpu.":               false,
		"nvidia.com/gpus":               false,
		"nvidia.com/mig-1g.5gb":         true,
		"nvidia.com/mig-3g.41gb":        true, // Parse rejects the profile
		"nvidia.com/mig-1g.10gb.shared": true,
		"nvidia.com/mig-":               false,
		"example.com/gpu-shared":        true,
		"example.com/gpu":               false,
		"cpu":                           false,
		"memory":                        false,
		"":                              false,
		"amd.com/gpu":                   false,
	} {
		if got := IsGPUResource(name, opts); got != want {
			t.Errorf("IsGPUResource(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestString(t *testing.T) {
	var nilReq *Request
	for _, tc := range []struct {
		r    *Request
		want string
	}{
		{nilReq, ""},
		{&Request{}, ""},
		{&Request{Effective: []ResourceCount{rc(gpu, 1)}}, "nvidia.com/gpu=1"},
		{&Request{Effective: []ResourceCount{rc(gpu, 1), rc(mig1g5, 2)}}, "nvidia.com/gpu=1,nvidia.com/mig-1g.5gb=2"},
		{&Request{
			Containers: []Container{{Name: "x", Resources: []ResourceCount{rc(gpu, 5)}}},
			Effective:  []ResourceCount{rc(gpu, 12)},
		}, "nvidia.com/gpu=12"},
	} {
		if got := tc.r.String(); got != tc.want {
			t.Errorf("String() = %q, want %q", got, tc.want)
		}
	}
}

// TestParseDoesNotModifyPod guards against sorting or defaulting in place.
func TestParseDoesNotModifyPod(t *testing.T) {
	p := mkPod([]v1.Container{sidecar(ctr("proxy", nil, res{gpu: "1"}))}, ctr("main", res{mig1g5: "2"}, nil))
	before := p.DeepCopy()
	if _, err := Parse(p, Options{}); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(p, before) {
		t.Errorf("Parse modified the pod")
	}
}

func TestKeyAddsSharing(t *testing.T) {
	r := &Request{Effective: []ResourceCount{{Name: "nvidia.com/gpu", Count: 2}}}
	if r.Key() != "nvidia.com/gpu=2" {
		t.Fatalf("key %q", r.Key())
	}
	r.Sharing = SharingExclusive
	if r.Key() != "nvidia.com/gpu=2;sharing=Exclusive" || r.String() != "nvidia.com/gpu=2" {
		t.Fatalf("key %q string %q", r.Key(), r.String())
	}
	if (&Request{Sharing: SharingExclusive}).Key() != "" {
		t.Fatal("an empty request has a key")
	}
}
