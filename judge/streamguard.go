package judge

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// go-plugin's own streams, which the plugin writes to and the judge reads
// without a bound of its own.
const (
	// brokerStream carries connection offers from the plugin; the judge
	// dials nothing the plugin serves, so a plugin has nothing to send on
	// it (go-plugin answers each message with a goroutine that waits 5 s).
	brokerStream = "/plugin.GRPCBroker/StartStream"
	// stdioStream carries the plugin's stdout and stderr, which go-plugin
	// sends in chunks of at most 1 KiB.
	stdioStream = "/plugin.GRPCStdio/StreamStdio"
)

// Bounds of those streams.
const (
	brokerMaxMessages = 8
	brokerMaxBytes    = 4 << 10
	stdioMaxBytes     = 64 << 10
)

// streamGuard bounds what a plugin may send on go-plugin's own streams and
// ends the run at the first message past a bound, before the judge keeps
// or answers it.
type streamGuard struct {
	// stop ends the run; it is called once, at the first violation.
	stop func()

	mu        sync.Mutex
	violation string
	brokerN   int
}

func (g *streamGuard) dialOption() grpc.DialOption {
	return grpc.WithStreamInterceptor(g.intercept)
}

// Violation is what the plugin did past a bound, or "".
func (g *streamGuard) Violation() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.violation
}

func (g *streamGuard) violate(format string, args ...any) error {
	g.mu.Lock()
	first := g.violation == ""
	if first {
		g.violation = fmt.Sprintf(format, args...)
	}
	msg := g.violation
	g.mu.Unlock()
	if first {
		g.stop()
	}
	return status.Error(codes.PermissionDenied, msg)
}

func (g *streamGuard) intercept(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	var limit int
	switch method {
	case brokerStream:
		limit = brokerMaxBytes
	case stdioStream:
		limit = stdioMaxBytes
	default:
		return streamer(ctx, desc, cc, method, opts...)
	}
	// A call option after the connection's defaults wins: gRPC refuses a
	// longer message before it allocates it. opts may be the connection's
	// own defaults (gRPC passes them as they are to a call without
	// options of its own): appended to in place, a spare capacity would be
	// written by every stream at once, each over the other's limit.
	cs, err := streamer(ctx, desc, cc, method, append(slices.Clip(opts), grpc.MaxCallRecvMsgSize(limit))...)
	if err != nil {
		return nil, err
	}
	return &guardedStream{ClientStream: cs, guard: g, method: method, limit: limit}, nil
}

type guardedStream struct {
	grpc.ClientStream
	guard  *streamGuard
	method string
	limit  int
}

func (s *guardedStream) RecvMsg(m any) error {
	if v := s.guard.Violation(); v != "" {
		return status.Error(codes.PermissionDenied, v)
	}
	err := s.ClientStream.RecvMsg(m)
	if status.Code(err) == codes.ResourceExhausted {
		return s.guard.violate("the plugin sent a message larger than %d KiB on go-plugin's %s stream", s.limit>>10, streamName(s.method))
	}
	if err != nil || s.method != brokerStream {
		return err
	}
	s.guard.mu.Lock()
	s.guard.brokerN++
	n := s.guard.brokerN
	s.guard.mu.Unlock()
	if n > brokerMaxMessages {
		return s.guard.violate("the plugin sent more than %d messages on go-plugin's broker stream, which the judge does not use", brokerMaxMessages)
	}
	return nil
}

func streamName(method string) string {
	if method == brokerStream {
		return "broker"
	}
	return "stdio"
}
