package judge

import (
	"context"
	"errors"
	"testing"

	"google.golang.org/grpc"
)

// gRPC hands a call without options of its own the connection's default
// options as they are, spare capacity and all (the race detector caught
// go-plugin's broker and stdio streams writing the same slot when the
// defaults grew). Each stream must get its own limit, whatever the other
// streams do after it. The streamer records the options instead of
// opening a stream: what is under test is what the guard hands gRPC.
func TestStreamGuardKeepsEachStreamsLimitToItself(t *testing.T) {
	g := &streamGuard{stop: func() {}}
	defaults := make([]grpc.CallOption, 1, 8) // the connection's, with room
	defaults[0] = grpc.MaxCallRecvMsgSize(1 << 20)
	got := map[string][]grpc.CallOption{}
	streamer := func(_ context.Context, _ *grpc.StreamDesc, _ *grpc.ClientConn, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		got[method] = opts
		return nil, errors.New("recorded")
	}
	for _, method := range []string{brokerStream, stdioStream} {
		if _, err := g.intercept(context.Background(), &grpc.StreamDesc{}, nil, method, streamer, defaults...); err == nil {
			t.Fatalf("%s: the streamer's error was lost", method)
		}
	}
	for method, limit := range map[string]int{brokerStream: brokerMaxBytes, stdioStream: stdioMaxBytes} {
		opts := got[method]
		last, ok := opts[len(opts)-1].(grpc.MaxRecvMsgSizeCallOption)
		if !ok || last.MaxRecvMsgSize != limit {
			t.Errorf("%s ends with %#v, want its limit of %d bytes", method, opts[len(opts)-1], limit)
		}
	}
	if len(defaults) != 1 || defaults[:2][1] != nil {
		t.Error("the connection's default options were written to")
	}
}
