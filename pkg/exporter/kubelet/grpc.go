package kubelet

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"

	"golang.org/x/net/http2"
	"strconv"
	"strings"
	"time"
)

// Code is a gRPC status code, numbered as google.golang.org/grpc/codes.
type Code uint32

// The gRPC status codes.
const (
	CodeOK Code = iota
	CodeCanceled
	CodeUnknown
	CodeInvalidArgument
	CodeDeadlineExceeded
	CodeNotFound
	CodeAlreadyExists
	CodePermissionDenied
	CodeResourceExhausted
	CodeFailedPrecondition
	CodeAborted
	CodeOutOfRange
	CodeUnimplemented
	CodeInternal
	CodeUnavailable
	CodeDataLoss
	CodeUnauthenticated
)

func (c Code) String() string {
	switch c {
	case CodeOK:
		return "OK"
	case CodeCanceled:
		return "Canceled"
	case CodeUnknown:
		return "Unknown"
	case CodeInvalidArgument:
		return "InvalidArgument"
	case CodeDeadlineExceeded:
		return "DeadlineExceeded"
	case CodeNotFound:
		return "NotFound"
	case CodeAlreadyExists:
		return "AlreadyExists"
	case CodePermissionDenied:
		return "PermissionDenied"
	case CodeResourceExhausted:
		return "ResourceExhausted"
	case CodeFailedPrecondition:
		return "FailedPrecondition"
	case CodeAborted:
		return "Aborted"
	case CodeOutOfRange:
		return "OutOfRange"
	case CodeUnimplemented:
		return "Unimplemented"
	case CodeInternal:
		return "Internal"
	case CodeUnavailable:
		return "Unavailable"
	case CodeDataLoss:
		return "DataLoss"
	case CodeUnauthenticated:
		return "Unauthenticated"
	}
	return "Code(" + strconv.FormatUint(uint64(c), 10) + ")"
}

// RPCError is a gRPC status other than OK: the one the kubelet answered
// with (grpc-status, grpc-message), or the one gRPC's own client would
// report for a response this client cannot use (too large, malformed).
type RPCError struct {
	Code    Code
	Message string
}

func (e *RPCError) Error() string {
	return fmt.Sprintf("rpc error: code = %s desc = %s", e.Code, e.Message)
}

// Is reports a DEADLINE_EXCEEDED status as context.DeadlineExceeded: a call
// the server timed out failed as one this client's context timed out.
func (e *RPCError) Is(target error) bool {
	return target == context.DeadlineExceeded && e.Code == CodeDeadlineExceeded
}

// unaryClient makes unary gRPC calls the way gRPC does on a unix socket:
// HTTP/2 without TLS, with prior knowledge (no upgrade). Its HTTP/2 client
// is golang.org/x/net/http2's, which client-go uses for the API server
// anyway, so that the exporter's binary can leave out net/http's own copy
// (build tag nethttpomithttp2).
type unaryClient struct {
	transport  *http2.Transport
	client     *http.Client
	maxMsgSize int
}

func newUnaryClient(dial func(context.Context) (net.Conn, error), maxMsgSize int) *unaryClient {
	t := &http2.Transport{
		AllowHTTP:          true,
		DialTLSContext:     func(ctx context.Context, _, _ string, _ *tls.Config) (net.Conn, error) { return dial(ctx) },
		DisableCompression: true,
	}
	return &unaryClient{transport: t, client: &http.Client{Transport: t}, maxMsgSize: maxMsgSize}
}

func (u *unaryClient) close() { u.transport.CloseIdleConnections() }

// call sends req (a serialized request message) to method ("/package.Service/Method")
// and returns the serialized response message.
func (u *unaryClient) call(ctx context.Context, method string, req []byte) ([]byte, error) {
	body := make([]byte, 5+len(req))
	binary.BigEndian.PutUint32(body[1:5], uint32(len(req))) // body[0] = 0: not compressed
	copy(body[5:], req)
	// The authority is arbitrary on a unix socket; gRPC sends "localhost".
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://localhost"+method, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	hreq.Header.Set("Content-Type", "application/grpc")
	hreq.Header.Set("Te", "trailers")
	if deadline, ok := ctx.Deadline(); ok {
		hreq.Header.Set("Grpc-Timeout", encodeTimeout(time.Until(deadline)))
	}
	resp, err := u.client.Do(hreq)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the method and socket are named by the caller
		}
		return nil, pastDeadline(ctx, err)
	}
	defer resp.Body.Close()
	msg, err := readResponse(resp, u.maxMsgSize)
	if err != nil {
		return nil, pastDeadline(ctx, err)
	}
	return msg, nil
}

// pastDeadline reports a call that failed after its deadline as
// DEADLINE_EXCEEDED, whatever the transport said. The server enforces the
// grpc-timeout it was sent, which ends no earlier than this client's
// deadline, and it may end the stream (RST_STREAM CANCEL) before this
// client's own context timer has fired: gRPC's clients make the same
// correction.
func pastDeadline(ctx context.Context, err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	deadline, ok := ctx.Deadline()
	if !ok || time.Now().Before(deadline) {
		return err
	}
	return &RPCError{Code: CodeDeadlineExceeded, Message: "deadline exceeded: " + err.Error()}
}

// readResponse reads a unary call's one message and its status.
func readResponse(resp *http.Response, maxMsgSize int) ([]byte, error) {
	if resp.StatusCode != http.StatusOK {
		// gRPC answers 200 even to failed calls: this is not a gRPC server.
		return nil, &RPCError{Code: codeFromHTTPStatus(resp.StatusCode), Message: "unexpected HTTP status " + resp.Status}
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/grpc" && !strings.HasPrefix(ct, "application/grpc+") && !strings.HasPrefix(ct, "application/grpc;") {
		return nil, &RPCError{Code: CodeInternal, Message: fmt.Sprintf("unexpected content-type %q", ct)}
	}
	// A call that fails before its response has begun is answered with
	// headers only: the status is among them.
	if s := resp.Header.Get("Grpc-Status"); s != "" {
		if err := status(s, resp.Header.Get("Grpc-Message")); err != nil {
			return nil, err
		}
		return nil, &RPCError{Code: CodeInternal, Message: "no response message"}
	}
	msg, err := readMessage(resp.Body, maxMsgSize)
	switch {
	case err == io.EOF:
		msg = nil // no message: the trailers say why
	case err != nil:
		return nil, err
	default:
		// A unary call has one response message; only the trailers follow.
		var b [1]byte
		if n, err := io.ReadFull(resp.Body, b[:]); n > 0 {
			return nil, &RPCError{Code: CodeInternal, Message: "more than one response message"}
		} else if err != io.EOF {
			return nil, err
		}
	}
	// The body has been read to its end: the trailers are in.
	s := resp.Trailer.Get("Grpc-Status")
	if s == "" {
		return nil, &RPCError{Code: CodeInternal, Message: "the server closed the stream without a grpc-status trailer"}
	}
	if err := status(s, resp.Trailer.Get("Grpc-Message")); err != nil {
		return nil, err
	}
	if msg == nil {
		return nil, &RPCError{Code: CodeInternal, Message: "no response message"}
	}
	return msg, nil
}

// readMessage reads one length-prefixed message: a compression flag, a
// 4-byte big-endian length, the message. It returns io.EOF when the stream
// ends before a message begins.
func readMessage(r io.Reader, maxMsgSize int) ([]byte, error) {
	var hdr [5]byte
	if n, err := io.ReadFull(r, hdr[:]); err != nil {
		if err == io.EOF {
			return nil, io.EOF
		}
		if err == io.ErrUnexpectedEOF {
			return nil, &RPCError{Code: CodeInternal, Message: fmt.Sprintf("truncated message header: %d of 5 bytes", n)}
		}
		return nil, err
	}
	switch hdr[0] {
	case 0:
	case 1:
		// Compression is used only when the client offers it (grpc-accept-encoding).
		return nil, &RPCError{Code: CodeInternal, Message: "compressed response message, but no compression was negotiated"}
	default:
		return nil, &RPCError{Code: CodeInternal, Message: fmt.Sprintf("invalid message flag %#x", hdr[0])}
	}
	size := binary.BigEndian.Uint32(hdr[1:])
	if uint64(size) > uint64(maxMsgSize) {
		return nil, &RPCError{Code: CodeResourceExhausted, Message: fmt.Sprintf("received message larger than max (%d vs. %d)", size, maxMsgSize)}
	}
	msg := make([]byte, size)
	if n, err := io.ReadFull(r, msg); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil, &RPCError{Code: CodeInternal, Message: fmt.Sprintf("truncated message: %d of %d bytes", n, size)}
		}
		return nil, err
	}
	return msg, nil
}

// status returns the error of a grpc-status (nil for OK) with its
// percent-encoded grpc-message.
func status(code, msg string) error {
	c, err := strconv.ParseUint(code, 10, 32)
	if err != nil {
		return &RPCError{Code: CodeInternal, Message: fmt.Sprintf("malformed grpc-status %q", code)}
	}
	if c == 0 {
		return nil
	}
	return &RPCError{Code: Code(c), Message: decodeMessage(msg)}
}

// decodeMessage undoes grpc-message's percent-encoding; malformed escapes
// are kept as they are.
func decodeMessage(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(v))
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// codeFromHTTPStatus maps an HTTP status that is not 200 to a gRPC code, as
// gRPC's HTTP/2 transport specification does.
func codeFromHTTPStatus(s int) Code {
	switch s {
	case http.StatusBadRequest:
		return CodeInternal
	case http.StatusUnauthorized:
		return CodeUnauthenticated
	case http.StatusForbidden:
		return CodePermissionDenied
	case http.StatusNotFound:
		return CodeUnimplemented
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return CodeUnavailable
	}
	return CodeUnknown
}

// encodeTimeout writes a grpc-timeout: at most 8 digits and a unit, rounded
// up to the finest unit that fits.
func encodeTimeout(d time.Duration) string {
	const maxValue = 1e8 - 1
	if d <= 0 {
		return "0n"
	}
	for _, u := range []struct {
		unit time.Duration
		name string
	}{{time.Nanosecond, "n"}, {time.Microsecond, "u"}, {time.Millisecond, "m"}, {time.Second, "S"}, {time.Minute, "M"}} {
		if v := (d + u.unit - 1) / u.unit; v <= maxValue {
			return strconv.FormatInt(int64(v), 10) + u.name
		}
	}
	return strconv.FormatInt(int64(min((d+time.Hour-1)/time.Hour, maxValue)), 10) + "H"
}
