package kubelet

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	podresourcesv1 "k8s.io/kubelet/pkg/apis/podresources/v1"

	"github.com/gpuslice/gpuslice/pkg/exporter/kubelet/kubelettest"
)

// fakeKubelet serves the PodResources API with gRPC's own server.
type fakeKubelet struct {
	podresourcesv1.UnimplementedPodResourcesListerServer
	mu   sync.Mutex
	resp *podresourcesv1.ListPodResourcesResponse
	err  error
	// headers are sent before a failure, so that the status comes in
	// trailers rather than in a headers-only response.
	headersFirst bool
}

func (f *fakeKubelet) List(ctx context.Context, _ *podresourcesv1.ListPodResourcesRequest) (*podresourcesv1.ListPodResourcesResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.headersFirst {
		if err := grpc.SendHeader(ctx, nil); err != nil {
			return nil, err
		}
	}
	return f.resp, f.err
}

func (f *fakeKubelet) GetAllocatableResources(context.Context, *podresourcesv1.AllocatableResourcesRequest) (*podresourcesv1.AllocatableResourcesResponse, error) {
	return &podresourcesv1.AllocatableResourcesResponse{Devices: []*podresourcesv1.ContainerDevices{
		{ResourceName: "nvidia.com/gpu", DeviceIds: []string{"GPU-b", "GPU-a"}},
		{ResourceName: "example.com/nic", DeviceIds: []string{"0000:3b:00.2"}},
	}}, nil
}

func socketPath(t *testing.T) string { return kubelettest.SocketPath(t) }

func serve(t *testing.T, f *fakeKubelet) string { return kubelettest.Serve(t, f) }

func dial(t *testing.T, sock string, opts ...Option) *Client {
	t.Helper()
	c, err := Dial(context.Background(), sock, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestListAndAllocatable(t *testing.T) {
	c := dial(t, serve(t, &fakeKubelet{resp: fullResponse()}))
	got, err := c.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []PodDevices{{Namespace: "team-a", Name: "train-0", Containers: []ContainerDevices{
		{Name: "trainer", Devices: []ResourceDevices{{Resource: "nvidia.com/gpu", DeviceIDs: []string{"GPU-a", "GPU-b"}}}},
	}}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("List = %+v, want %+v", got, want)
	}
	alloc, err := c.Allocatable(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := []ResourceDevices{{Resource: "nvidia.com/gpu", DeviceIDs: []string{"GPU-a", "GPU-b"}}}; !reflect.DeepEqual(alloc, want) {
		t.Fatalf("Allocatable = %+v, want %+v", alloc, want)
	}
}

// TestStatusSurfaced: a failed call's grpc-status and grpc-message reach
// the caller, whether the server sent them as a headers-only response or
// as trailers after headers.
func TestStatusSurfaced(t *testing.T) {
	for _, headersFirst := range []bool{false, true} {
		f := &fakeKubelet{err: grpcstatus.Error(codes.PermissionDenied, "pod resources: 100% not for you\nbye"), headersFirst: headersFirst}
		sock := serve(t, f)
		_, err := dial(t, sock).List(context.Background())
		var rpcErr *RPCError
		if !errors.As(err, &rpcErr) {
			t.Fatalf("headers first %v: error %v is not an RPCError", headersFirst, err)
		}
		if codes.Code(rpcErr.Code) != codes.PermissionDenied || rpcErr.Message != "pod resources: 100% not for you\nbye" {
			t.Errorf("headers first %v: code %s message %q", headersFirst, rpcErr.Code, rpcErr.Message)
		}
		for _, want := range []string{methodList, sock, "code = PermissionDenied", "100% not for you"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("headers first %v: error %q lacks %q", headersFirst, err, want)
			}
		}
	}

	// A server that does not know the method.
	sock := socketPath(t)
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer() // no service registered
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()
	_, err = dial(t, sock).List(context.Background())
	var rpcErr *RPCError
	if !errors.As(err, &rpcErr) || codes.Code(rpcErr.Code) != codes.Unimplemented {
		t.Fatalf("unknown service: %v", err)
	}
}

func TestServerDeadline(t *testing.T) {
	err := error(&RPCError{Code: CodeDeadlineExceeded, Message: "context deadline exceeded"})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatal("a DEADLINE_EXCEEDED status is not context.DeadlineExceeded")
	}
	if errors.Is(&RPCError{Code: CodeUnavailable}, context.DeadlineExceeded) {
		t.Fatal("an UNAVAILABLE status is context.DeadlineExceeded")
	}
}

// lateContext is a context whose deadline has passed but whose timer has not
// fired yet: what a call sees when the server's RST_STREAM for the same
// deadline arrives first.
type lateContext struct{ context.Context }

func (lateContext) Deadline() (time.Time, bool) { return time.Now().Add(-time.Millisecond), true }

func TestPastDeadline(t *testing.T) {
	cancel := http2.StreamError{StreamID: 1, Code: http2.ErrCodeCancel}
	if err := pastDeadline(lateContext{context.Background()}, cancel); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a stream reset after the deadline: %v, want DeadlineExceeded", err)
	} else if !strings.Contains(err.Error(), "CANCEL") {
		t.Errorf("error %q drops the transport's error", err)
	}
	ctx, stop := context.WithTimeout(context.Background(), time.Hour)
	defer stop()
	if err := pastDeadline(ctx, cancel); errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a stream reset before the deadline reported as %v", err)
	}
	if err := pastDeadline(context.Background(), cancel); errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a stream reset without a deadline reported as %v", err)
	}
	unavailable := &RPCError{Code: CodeUnavailable, Message: "down"}
	if err := pastDeadline(ctx, unavailable); err != unavailable {
		t.Errorf("an error before the deadline was changed to %v", err)
	}
}

func frame(flag byte, msg []byte) []byte {
	b := make([]byte, 5, 5+len(msg))
	b[0] = flag
	binary.BigEndian.PutUint32(b[1:], uint32(len(msg)))
	return append(b, msg...)
}

// response is an HTTP/2 response as net/http hands it over, with the
// trailers it has once the body has been read.
func response(status int, header, trailer http.Header, body []byte) *http.Response {
	if header == nil {
		header = http.Header{"Content-Type": {"application/grpc"}}
	}
	return &http.Response{
		StatusCode: status, Status: http.StatusText(status), Header: header, Trailer: trailer,
		Body: io.NopCloser(bytes.NewReader(body)),
	}
}

func TestReadResponse(t *testing.T) {
	msg, err := proto.Marshal(fullResponse())
	if err != nil {
		t.Fatal(err)
	}
	if len(msg) > 1024 {
		t.Fatalf("test message of %d bytes is over the 1 KiB limit", len(msg))
	}
	ok := http.Header{"Grpc-Status": {"0"}}
	for _, tc := range []struct {
		name string
		resp *http.Response
		code codes.Code // codes.OK: the message is returned
		want string
	}{
		{"one message", response(200, nil, ok, frame(0, msg)), codes.OK, ""},
		{"empty message", response(200, nil, ok, frame(0, nil)), codes.OK, ""},
		{"content subtype", response(200, http.Header{"Content-Type": {"application/grpc+proto"}}, ok, frame(0, msg)), codes.OK, ""},
		{"status in trailers", response(200, nil, http.Header{"Grpc-Status": {"14"}, "Grpc-Message": {"kubelet%20is%20restarting"}}, nil),
			codes.Unavailable, "kubelet is restarting"},
		{"status in headers only", response(200, http.Header{"Content-Type": {"application/grpc"}, "Grpc-Status": {"3"}, "Grpc-Message": {"bad %zz request"}}, nil, nil),
			codes.InvalidArgument, "bad %zz request"},
		{"error after a message", response(200, nil, http.Header{"Grpc-Status": {"13"}, "Grpc-Message": {"oops"}}, frame(0, msg)), codes.Internal, "oops"},
		{"no trailers", response(200, nil, nil, frame(0, msg)), codes.Internal, "without a grpc-status trailer"},
		{"malformed status", response(200, nil, http.Header{"Grpc-Status": {"ok"}}, frame(0, msg)), codes.Internal, `malformed grpc-status "ok"`},
		{"OK without a message", response(200, nil, ok, nil), codes.Internal, "no response message"},
		{"two messages", response(200, nil, ok, append(frame(0, msg), frame(0, msg)...)), codes.Internal, "more than one response message"},
		{"truncated header", response(200, nil, ok, []byte{0, 0, 0}), codes.Internal, "truncated message header: 3 of 5 bytes"},
		{"truncated message", response(200, nil, ok, frame(0, msg)[:20]), codes.Internal, "truncated message: 15 of"},
		{"compressed", response(200, nil, ok, frame(1, msg)), codes.Internal, "compressed response message"},
		{"bad flag", response(200, nil, ok, frame(7, msg)), codes.Internal, "invalid message flag 0x7"},
		{"too large", response(200, nil, ok, frame(0, make([]byte, 2048))), codes.ResourceExhausted, "received message larger than max (2048 vs. 1024)"},
		{"not gRPC", response(200, http.Header{"Content-Type": {"text/html"}}, nil, []byte("<html>")), codes.Internal, `unexpected content-type "text/html"`},
		{"HTTP 404", response(404, http.Header{"Content-Type": {"text/plain"}}, nil, nil), codes.Unimplemented, "unexpected HTTP status"},
		{"HTTP 503", response(503, nil, nil, nil), codes.Unavailable, "unexpected HTTP status"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readResponse(tc.resp, 1024)
			if tc.code == codes.OK {
				if err != nil {
					t.Fatal(err)
				}
				if got == nil {
					t.Fatal("no message")
				}
				return
			}
			var rpcErr *RPCError
			if !errors.As(err, &rpcErr) {
				t.Fatalf("error %v is not an RPCError", err)
			}
			if codes.Code(rpcErr.Code) != tc.code || !strings.Contains(rpcErr.Message, tc.want) {
				t.Fatalf("code %s message %q, want %s with %q", rpcErr.Code, rpcErr.Message, tc.code, tc.want)
			}
		})
	}
}

func TestEncodeTimeout(t *testing.T) {
	for d, want := range map[time.Duration]string{
		-time.Second:                     "0n",
		0:                                "0n",
		1500 * time.Nanosecond:           "1500n",
		99999999 * time.Nanosecond:       "99999999n",
		100000000 * time.Nanosecond:      "100000u",
		10 * time.Second:                 "10000000u",
		10*time.Second + time.Nanosecond: "10000001u",
		time.Hour:                        "3600000m",
		1000 * time.Hour:                 "3600000S",
		1e6 * time.Hour:                  "60000000M",
	} {
		if got := encodeTimeout(d); got != want {
			t.Errorf("encodeTimeout(%v) = %s, want %s", d, got, want)
		}
	}
}

func TestDecodeMessage(t *testing.T) {
	for in, want := range map[string]string{
		"plain":         "plain",
		"a%20b%25c":     "a b%c",
		"%E2%82%AC":     "€",
		"bad %zz and %": "bad %zz and %",
		"end %4":        "end %4",
	} {
		if got := decodeMessage(in); got != want {
			t.Errorf("decodeMessage(%q) = %q, want %q", in, got, want)
		}
	}
}
