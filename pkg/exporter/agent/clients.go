package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/flowcontrol"

	gpusliceapi "github.com/gpuslice/gpuslice/pkg/apis/gpuslice/v1alpha1"
)

// Clients are REST clients of the three API groups the agent calls. It
// encodes and decodes the objects itself (JSON), so any REST client of the
// right group and version does: those of client-go's clientsets (the
// exporter package's New) or NewClients'.
//
// The agent reads nodes and pods as metadata only (PartialObjectMetadata):
// it needs their names, UIDs and labels, not their specs. That keeps
// k8s.io/api/core/v1 and client-go's typed clients, whose scheme registers
// every API group, out of the exporter's binary, and whole Pod objects out
// of its memory.
type Clients struct {
	// Core is a client of the core group, v1 (APIPath /api): the metadata
	// of this node and of the pods bound to it.
	Core rest.Interface
	// Coordination is a client of coordination.k8s.io/v1: the heartbeat
	// Lease.
	Coordination rest.Interface
	// GPUSlice is a client of gpuslice.io/v1alpha1: the GPUNode.
	GPUSlice rest.Interface
}

func (c Clients) validate() error {
	switch {
	case c.Core == nil:
		return errors.New("no REST client for the core API group")
	case c.Coordination == nil:
		return errors.New("no REST client for coordination.k8s.io/v1")
	case c.GPUSlice == nil:
		return errors.New("no REST client for gpuslice.io/v1alpha1")
	}
	return nil
}

// NewClients builds the agent's clients from a config, as
// kubernetes.NewForConfig would: the default user agent, one HTTP client
// and one rate limiter shared by the three groups. Their serializer knows
// only the API machinery's own types (Status for errors, the options).
func NewClients(c *rest.Config) (Clients, error) {
	cfg := *c
	if cfg.UserAgent == "" {
		cfg.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	if cfg.RateLimiter == nil && cfg.QPS > 0 {
		if cfg.Burst <= 0 {
			return Clients{}, errors.New("burst is required to be greater than 0 when RateLimiter is not set and QPS is set to greater than 0")
		}
		cfg.RateLimiter = flowcontrol.NewTokenBucketRateLimiter(cfg.QPS, cfg.Burst)
	}
	// The responses are small (metadata, one Lease, one GPUNode): gzip
	// would save little and keep a decompressor (its window and buffers,
	// some 80 KiB) alive for each watch.
	cfg.DisableCompression = true
	httpClient, err := rest.HTTPClientFor(&cfg)
	if err != nil {
		return Clients{}, err
	}
	scheme := runtime.NewScheme()
	metav1.AddToGroupVersion(scheme, schema.GroupVersion{Version: "v1"})
	codecs := serializer.NewCodecFactory(scheme).WithoutConversion()
	client := func(gv schema.GroupVersion, apiPath string) (rest.Interface, error) {
		gc := cfg
		gc.GroupVersion = &gv
		gc.APIPath = apiPath
		gc.ContentType = runtime.ContentTypeJSON
		gc.AcceptContentTypes = runtime.ContentTypeJSON
		gc.NegotiatedSerializer = codecs
		rc, err := rest.RESTClientForConfigAndClient(&gc, httpClient)
		if err != nil {
			return nil, fmt.Errorf("REST client for %s: %w", gv, err)
		}
		return rc, nil
	}
	var out Clients
	if out.Core, err = client(schema.GroupVersion{Version: "v1"}, "/api"); err != nil {
		return Clients{}, err
	}
	if out.Coordination, err = client(coordinationv1.SchemeGroupVersion, "/apis"); err != nil {
		return Clients{}, err
	}
	if out.GPUSlice, err = client(gpusliceapi.SchemeGroupVersion, "/apis"); err != nil {
		return Clients{}, err
	}
	return out, nil
}

// resource reads and writes objects of one resource as JSON.
type resource struct {
	client    rest.Interface
	namespace string // empty: cluster-scoped
	name      string // plural, e.g. "leases"
	kind      schema.GroupVersionKind
}

func (r resource) get(ctx context.Context, name string, into runtime.Object) error {
	return r.do(ctx, r.client.Get().Name(name), nil, into)
}

// create and update set obj's apiVersion and kind.
func (r resource) create(ctx context.Context, obj, into runtime.Object) error {
	return r.do(ctx, r.client.Post().Param("fieldManager", fieldManager), obj, into)
}

func (r resource) update(ctx context.Context, name string, obj, into runtime.Object) error {
	return r.do(ctx, r.client.Put().Name(name).Param("fieldManager", fieldManager), obj, into)
}

func (r resource) do(ctx context.Context, req *rest.Request, body, into runtime.Object) error {
	if r.namespace != "" {
		req = req.Namespace(r.namespace)
	}
	req = req.Resource(r.name).SetHeader("Accept", runtime.ContentTypeJSON)
	if body != nil {
		body.GetObjectKind().SetGroupVersionKind(r.kind)
		data, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encoding %s: %w", r.kind.Kind, err)
		}
		req = req.SetHeader("Content-Type", runtime.ContentTypeJSON).Body(data)
	}
	raw, err := responseBody(req.Do(ctx))
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, into); err != nil {
		return fmt.Errorf("decoding %s from the API server: %w", r.kind.Kind, err)
	}
	return nil
}

// responseBody is a response's body, or its error with the API server's Status
// (reason, message) when it sent one.
func responseBody(r rest.Result) ([]byte, error) {
	if err := r.Error(); err != nil {
		return nil, err
	}
	return r.Raw()
}

// Media types of metadata-only reads. A server that cannot transform
// answers with whole objects (the plain JSON fallback), whose metadata
// decodes the same.
const (
	acceptMetadataList = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
	acceptMetadata     = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"
)

// metadataListWatch lists and watches the metadata of a core v1 resource
// ("pods", "nodes") across namespaces, filtered by a field selector.
func metadataListWatch(client rest.Interface, name, fieldSelector string) *toolscache.ListWatch {
	return &toolscache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			opts.FieldSelector = fieldSelector
			raw, err := responseBody(client.Get().Resource(name).VersionedParams(&opts, metav1.ParameterCodec).
				SetHeader("Accept", acceptMetadataList).Do(ctx))
			if err != nil {
				return nil, err
			}
			list := &metav1.PartialObjectMetadataList{}
			if err := json.Unmarshal(raw, list); err != nil {
				return nil, fmt.Errorf("decoding the list of %s: %w", name, err)
			}
			return list, nil
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			opts.FieldSelector = fieldSelector
			opts.Watch = true
			var timeout time.Duration
			if opts.TimeoutSeconds != nil {
				timeout = time.Duration(*opts.TimeoutSeconds) * time.Second
			}
			body, err := client.Get().Resource(name).VersionedParams(&opts, metav1.ParameterCodec).
				SetHeader("Accept", acceptMetadata).Timeout(timeout).Stream(ctx)
			if err != nil {
				return nil, err
			}
			return watch.NewStreamWatcher(newMetadataDecoder(body), apierrors.NewClientErrorReporter(http.StatusInternalServerError, "GET", "ClientWatchDecoding")), nil
		},
	}
}

// keepIdentity is the informers' transform: it keeps of an object's
// metadata what the agent reads (name, namespace, UID, labels) and the
// resource version, and drops the rest (managed fields, annotations,
// owners), which can be most of it.
func keepIdentity(obj any) (any, error) {
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return obj, nil // a tombstone
	}
	return &metav1.PartialObjectMetadata{
		TypeMeta: m.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{
			Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion, Labels: m.Labels,
		},
	}, nil
}

// metadataDecoder decodes a JSON watch stream of PartialObjectMetadata:
// one {"type": ..., "object": ...} document per event.
type metadataDecoder struct {
	body io.ReadCloser
	dec  *json.Decoder
}

func newMetadataDecoder(body io.ReadCloser) *metadataDecoder {
	return &metadataDecoder{body: body, dec: json.NewDecoder(body)}
}

func (d *metadataDecoder) Decode() (watch.EventType, runtime.Object, error) {
	var ev struct {
		Type   watch.EventType `json:"type"`
		Object json.RawMessage `json:"object"`
	}
	if err := d.dec.Decode(&ev); err != nil {
		return "", nil, err
	}
	var obj runtime.Object
	switch ev.Type {
	case watch.Added, watch.Modified, watch.Deleted, watch.Bookmark:
		obj = &metav1.PartialObjectMetadata{}
	case watch.Error:
		obj = &metav1.Status{}
	default:
		return "", nil, fmt.Errorf("watch event of unknown type %q", ev.Type)
	}
	if len(ev.Object) == 0 {
		return "", nil, fmt.Errorf("%s watch event without an object", ev.Type)
	}
	if err := json.Unmarshal(ev.Object, obj); err != nil {
		return "", nil, fmt.Errorf("decoding a %s watch event: %w", ev.Type, err)
	}
	return ev.Type, obj, nil
}

func (d *metadataDecoder) Close() { _ = d.body.Close() }
