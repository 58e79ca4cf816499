package agent

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
)

func TestMetadataDecoder(t *testing.T) {
	stream := `{"type":"ADDED","object":{"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1","metadata":{"name":"gpu-0","uid":"u1","resourceVersion":"7","labels":{"nvidia.com/mig.config.state":"success"}}}}
{"type":"BOOKMARK","object":{"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1","metadata":{"resourceVersion":"9","annotations":{"k8s.io/initial-events-end":"true"}}}}
{"type":"MODIFIED","object":{"kind":"Node","apiVersion":"v1","metadata":{"name":"gpu-0","uid":"u1","resourceVersion":"10"},"spec":{"unschedulable":true}}}
{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","status":"Failure","message":"too old resource version: 1 (9)","reason":"Expired","code":410}}
{"type":"SURPRISE","object":{}}
`
	d := newMetadataDecoder(io.NopCloser(strings.NewReader(stream)))
	next := func() (watch.EventType, any, error) {
		t.Helper()
		typ, obj, err := d.Decode()
		return typ, obj, err
	}
	typ, obj, err := next()
	if m, ok := obj.(*metav1.PartialObjectMetadata); err != nil || typ != watch.Added || !ok || m.Name != "gpu-0" || m.UID != "u1" || m.Labels["nvidia.com/mig.config.state"] != "success" {
		t.Fatalf("ADDED: %s %#v %v", typ, obj, err)
	}
	typ, obj, err = next()
	if m, ok := obj.(*metav1.PartialObjectMetadata); err != nil || typ != watch.Bookmark || !ok || m.ResourceVersion != "9" || m.Annotations["k8s.io/initial-events-end"] != "true" {
		t.Fatalf("BOOKMARK: %s %#v %v", typ, obj, err)
	}
	// A server that cannot send metadata only sends whole objects: their
	// metadata decodes the same.
	typ, obj, err = next()
	if m, ok := obj.(*metav1.PartialObjectMetadata); err != nil || typ != watch.Modified || !ok || m.ResourceVersion != "10" {
		t.Fatalf("MODIFIED: %s %#v %v", typ, obj, err)
	}
	typ, obj, err = next()
	st, ok := obj.(*metav1.Status)
	if err != nil || typ != watch.Error || !ok || !apierrors.IsResourceExpired(apierrors.FromObject(st)) {
		t.Fatalf("ERROR: %s %#v %v", typ, obj, err)
	}
	if _, _, err := next(); err == nil || !strings.Contains(err.Error(), `unknown type "SURPRISE"`) {
		t.Fatalf("unknown event type: %v", err)
	}
	if _, _, err := next(); err != io.EOF {
		t.Fatalf("end of stream: %v", err)
	}

	d = newMetadataDecoder(io.NopCloser(strings.NewReader(`{"type":"ADDED","object":{"metadata":{"name":`)))
	if _, _, err := d.Decode(); err == nil {
		t.Fatal("a truncated event decoded")
	}
	d = newMetadataDecoder(io.NopCloser(strings.NewReader(`{"type":"ADDED"}`)))
	if _, _, err := d.Decode(); err == nil || !strings.Contains(err.Error(), "without an object") {
		t.Fatalf("event without an object: %v", err)
	}
}

// apiServer records the requests it gets and answers each with the
// response its handler writes.
func apiServer(t *testing.T, handler http.HandlerFunc) Clients {
	t.Helper()
	// TLS, as an API server: client-go uses its own transport (with the
	// config's settings) only for TLS.
	srv := httptest.NewTLSServer(handler)
	t.Cleanup(srv.Close)
	c, err := NewClients(&rest.Config{Host: srv.URL, TLSClientConfig: rest.TLSClientConfig{Insecure: true}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestResourceRequests(t *testing.T) {
	type request struct {
		method, path, query, accept, contentType string
		body                                     map[string]any
	}
	var got []request
	clients := apiServer(t, func(w http.ResponseWriter, r *http.Request) {
		req := request{method: r.Method, path: r.URL.Path, query: r.URL.RawQuery, accept: r.Header.Get("Accept"), contentType: r.Header.Get("Content-Type")}
		if r.Body != nil {
			data, _ := io.ReadAll(r.Body)
			if len(data) > 0 {
				if err := json.Unmarshal(data, &req.body); err != nil {
					t.Errorf("request body %q: %v", data, err)
				}
			}
		}
		got = append(got, req)
		w.Header().Set("Content-Type", "application/json")
		if r.Method == http.MethodGet {
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404,"message":"leases.coordination.k8s.io \"gpu-0\" not found"}`))
			return
		}
		_, _ = w.Write([]byte(`{"kind":"Lease","apiVersion":"coordination.k8s.io/v1","metadata":{"name":"gpu-0","namespace":"ns","resourceVersion":"5"},"spec":{"holderIdentity":"gpuslice-exporter/gpu-0"}}`))
	})
	h := newHeartbeat(clients.Coordination, "ns", "gpu-0", 40*time.Second)
	if err := h.renew(context.Background(), time.Unix(1_800_000_000, 0), "42"); err != nil {
		t.Fatal(err)
	}
	if h.lease == nil || h.lease.ResourceVersion != "5" || *h.lease.Spec.HolderIdentity != "gpuslice-exporter/gpu-0" {
		t.Fatalf("created Lease decoded as %+v", h.lease)
	}
	if len(got) != 2 {
		t.Fatalf("requests %+v", got)
	}
	if g := got[0]; g.method != http.MethodGet || g.path != "/apis/coordination.k8s.io/v1/namespaces/ns/leases/gpu-0" || g.accept != "application/json" {
		t.Errorf("GET %+v", g)
	}
	c := got[1]
	if c.method != http.MethodPost || c.path != "/apis/coordination.k8s.io/v1/namespaces/ns/leases" || c.query != "fieldManager=gpuslice-exporter" || c.contentType != "application/json" {
		t.Errorf("POST %+v", c)
	}
	if c.body["apiVersion"] != "coordination.k8s.io/v1" || c.body["kind"] != "Lease" {
		t.Errorf("created Lease without its type: %v", c.body)
	}
	meta, _ := c.body["metadata"].(map[string]any)
	if ann, _ := meta["annotations"].(map[string]any); ann["gpuslice.io/gpunode-version"] != "42" {
		t.Errorf("created Lease does not name the GPUNode version: %v", meta)
	}
	spec, _ := c.body["spec"].(map[string]any)
	if spec["leaseDurationSeconds"] != 40.0 || spec["renewTime"] != "2027-01-15T08:00:00.000000Z" {
		t.Errorf("created Lease spec %v", spec)
	}

	// Errors keep the API server's status.
	var lease coordinationv1.Lease
	err := h.leases.get(context.Background(), "gpu-0", &lease)
	if !apierrors.IsNotFound(err) || !strings.Contains(err.Error(), `"gpu-0" not found`) {
		t.Fatalf("GET of a missing Lease: %v", err)
	}
}

func TestMetadataListWatchRequests(t *testing.T) {
	var accepts, queries []string
	clients := apiServer(t, func(w http.ResponseWriter, r *http.Request) {
		accepts = append(accepts, r.Header.Get("Accept"))
		if enc := r.Header.Get("Accept-Encoding"); enc != "" {
			t.Errorf("Accept-Encoding %q: responses should not be compressed", enc)
		}
		queries = append(queries, r.URL.Path+"?"+r.URL.RawQuery)
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Query().Get("watch") == "true" {
			_, _ = w.Write([]byte(`{"type":"ADDED","object":{"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1","metadata":{"name":"p","namespace":"ns","uid":"u"}}}` + "\n"))
			return
		}
		_, _ = w.Write([]byte(`{"kind":"PartialObjectMetadataList","apiVersion":"meta.k8s.io/v1","metadata":{"resourceVersion":"3"},"items":[{"metadata":{"name":"p","namespace":"ns","uid":"u"}}]}`))
	})
	lw := metadataListWatch(clients.Core, "pods", "spec.nodeName=gpu-0")
	list, err := lw.ListWithContext(context.Background(), metav1.ListOptions{Limit: 500})
	if err != nil {
		t.Fatal(err)
	}
	l, ok := list.(*metav1.PartialObjectMetadataList)
	if !ok || l.ResourceVersion != "3" || len(l.Items) != 1 || l.Items[0].UID != "u" {
		t.Fatalf("list %#v", list)
	}
	w, err := lw.WatchWithContext(context.Background(), metav1.ListOptions{ResourceVersion: "3"})
	if err != nil {
		t.Fatal(err)
	}
	ev := <-w.ResultChan()
	w.Stop()
	if m, ok := ev.Object.(*metav1.PartialObjectMetadata); ev.Type != watch.Added || !ok || m.UID != "u" {
		t.Fatalf("watch event %#v", ev)
	}
	for i, want := range []string{
		"/api/v1/pods?fieldSelector=spec.nodeName%3Dgpu-0&limit=500",
		"/api/v1/pods?fieldSelector=spec.nodeName%3Dgpu-0&resourceVersion=3&watch=true",
	} {
		if queries[i] != want {
			t.Errorf("request %d: %s, want %s", i, queries[i], want)
		}
		if !strings.HasPrefix(accepts[i], "application/json;as=PartialObjectMetadata") {
			t.Errorf("request %d: Accept %s", i, accepts[i])
		}
	}
}

func TestKeepIdentity(t *testing.T) {
	in := &metav1.PartialObjectMetadata{
		TypeMeta: metav1.TypeMeta{Kind: "PartialObjectMetadata", APIVersion: "meta.k8s.io/v1"},
		ObjectMeta: metav1.ObjectMeta{
			Name: "gpu-0", UID: "u1", ResourceVersion: "7", Generation: 3,
			Labels:          map[string]string{MIGConfigStateLabel: "success"},
			Annotations:     map[string]string{"kubectl.kubernetes.io/last-applied-configuration": strings.Repeat("x", 4096)},
			ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "kubelet", Operation: metav1.ManagedFieldsOperationUpdate}},
			OwnerReferences: []metav1.OwnerReference{{Kind: "Machine", Name: "m"}},
			Finalizers:      []string{"f"},
		},
	}
	out, err := keepIdentity(in)
	if err != nil {
		t.Fatal(err)
	}
	want := &metav1.PartialObjectMetadata{
		TypeMeta:   in.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{Name: "gpu-0", UID: "u1", ResourceVersion: "7", Labels: in.Labels},
	}
	if !reflect.DeepEqual(out, want) {
		t.Fatalf("kept %+v, want %+v", out, want)
	}
	if again, _ := keepIdentity(out); !reflect.DeepEqual(again, want) {
		t.Fatal("not idempotent")
	}
	tomb := toolscache.DeletedFinalStateUnknown{Key: "gpu-0", Obj: in}
	if got, err := keepIdentity(tomb); err != nil || !reflect.DeepEqual(got, tomb) {
		t.Fatalf("tombstone became %+v, %v", got, err)
	}
}
