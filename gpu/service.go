package gpu

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	"github.com/hackarena/hackarena/sdk/engine"
	"github.com/hackarena/hackarena/sdk/proto/enginev1"
)

// MaxMessageBytes bounds one engine request or reply: a batch in, its
// outputs back, or a network's weights.
const MaxMessageBytes = 64 << 20

// Register serves s as the Engine on a gRPC server built with
// ServerOptions(s) (admission then happens at the transport too).
func Register(srv *grpc.Server, s *Session) {
	enginev1.RegisterEngineServer(srv, &service{s: s})
}

// NewServer is a gRPC server of s's Engine that admits calls at the
// transport, before their messages are read.
func NewServer(s *Session, opts ...grpc.ServerOption) *grpc.Server {
	srv := grpc.NewServer(append(opts, ServerOptions(s)...)...)
	Register(srv, s)
	return srv
}

// ServerOptions bound what one engine connection may send or make the
// engine do at once. Calls are admitted when their headers arrive
// (InTapHandle), before a byte of their message is buffered: at most the
// session's concurrent-call limit, at most one Load at a time, none after
// the run is over, nothing but the Engine's three methods. So the most a
// connection can make the engine buffer is that many messages.
func ServerOptions(s *Session) []grpc.ServerOption {
	a := &admission{s: s}
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(MaxMessageBytes), grpc.MaxSendMsgSize(MaxMessageBytes),
		grpc.MaxConcurrentStreams(uint32(cap(s.calls)) + 1),
		grpc.InTapHandle(a.tap),
		grpc.StatsHandler(a),
	}
}

// admission counts the calls a session's connection has in flight, from
// their headers to their end.
type admission struct {
	s *Session

	mu           sync.Mutex
	calls, loads int
}

type admittedKey struct{}

// admitted is one call let in; done frees it once.
type admitted struct {
	load bool
	once sync.Once
}

func (a *admission) tap(ctx context.Context, info *tap.Info) (context.Context, error) {
	load := info.FullMethodName == enginev1.Engine_Load_FullMethodName
	switch info.FullMethodName {
	case enginev1.Engine_Load_FullMethodName, enginev1.Engine_Run_FullMethodName, enginev1.Engine_Release_FullMethodName:
	default:
		return nil, status.Errorf(codes.Unimplemented, "the engine has no method %s", info.FullMethodName)
	}
	if a.s.ctx.Err() != nil {
		return nil, statusOf(a.s.refuse(ErrClosed))
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.calls >= cap(a.s.calls) {
		return nil, statusOf(a.s.refuse(fmt.Errorf("%w (at most %d): wait for one to return", ErrBusy, cap(a.s.calls))))
	}
	if load && a.loads > 0 {
		return nil, statusOf(a.s.refuse(fmt.Errorf("%w: one Load at a time: wait for it to return", ErrBusy)))
	}
	a.calls++
	if load {
		a.loads++
	}
	return context.WithValue(ctx, admittedKey{}, &admitted{load: load}), nil
}

func (a *admission) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (a *admission) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}
func (a *admission) HandleConn(context.Context, stats.ConnStats) {}

// HandleRPC frees a call's admission when it ends, whether it got its
// whole message or not.
func (a *admission) HandleRPC(ctx context.Context, st stats.RPCStats) {
	if _, end := st.(*stats.End); !end {
		return
	}
	c, ok := ctx.Value(admittedKey{}).(*admitted)
	if !ok {
		return
	}
	c.once.Do(func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		a.calls--
		if c.load {
			a.loads--
		}
	})
}

type service struct {
	enginev1.UnimplementedEngineServer
	s *Session
}

func (v *service) Load(ctx context.Context, req *enginev1.LoadRequest) (*enginev1.LoadResponse, error) {
	info, err := v.s.Load(ctx, req.GetNetworkJson(), req.GetWeightsNpz())
	if err != nil {
		return nil, statusOf(err)
	}
	return &enginev1.LoadResponse{Handle: info.Handle, ChargedBytes: info.Charged, BudgetBytes: info.Budget, Device: info.Device}, nil
}

func (v *service) Run(ctx context.Context, req *enginev1.RunRequest) (*enginev1.RunResponse, error) {
	if id := req.GetBatchId(); id != 0 {
		outShape, out, err := v.s.RunBatch(ctx, req.GetHandle(), id)
		if err != nil {
			return nil, statusOf(err)
		}
		return runResponse(outShape, out), nil
	}
	shape := make([]int, len(req.GetShape()))
	for i, d := range req.GetShape() {
		if d < 0 || d > MaxMessageBytes {
			return nil, status.Errorf(codes.InvalidArgument, "input shape %v has a dimension out of range", req.GetShape())
		}
		shape[i] = int(d)
	}
	var in Input
	switch req.GetType() {
	case enginev1.InputType_INPUT_TYPE_UINT8:
		in.Uint8 = req.GetData()
	case enginev1.InputType_INPUT_TYPE_FLOAT32:
		if len(req.GetData())%4 != 0 {
			return nil, status.Errorf(codes.InvalidArgument, "input: %d bytes are not a whole number of float32 values", len(req.GetData()))
		}
		in.LE = req.GetData()
	default:
		return nil, status.Errorf(codes.InvalidArgument, "input type %v is not float32 or uint8", req.GetType())
	}
	if in.len() == 0 {
		in.LE, in.Uint8 = nil, nil
	}
	outShape, out, err := v.s.RunInput(ctx, req.GetHandle(), shape, in)
	if err != nil {
		return nil, statusOf(err)
	}
	return runResponse(outShape, out), nil
}

func runResponse(shape []int, out []float32) *enginev1.RunResponse {
	resp := &enginev1.RunResponse{Data: engine.Float32Bytes(out)}
	for _, d := range shape {
		resp.Shape = append(resp.Shape, int64(d))
	}
	return resp
}

func (v *service) Release(_ context.Context, req *enginev1.ReleaseRequest) (*enginev1.ReleaseResponse, error) {
	if err := v.s.Release(req.GetHandle()); err != nil {
		return nil, statusOf(err)
	}
	return &enginev1.ReleaseResponse{}, nil
}

func statusOf(err error) error {
	var budget *BudgetError
	var input *InputError
	var compute *ComputeError
	switch {
	case errors.As(err, &budget), errors.As(err, &compute), errors.Is(err, ErrBusy), errors.Is(err, ErrTooMany):
		return status.Error(codes.ResourceExhausted, err.Error())
	case errors.Is(err, ErrUnknownHandle):
		return status.Error(codes.NotFound, err.Error())
	case errors.As(err, &input):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, ErrClosed):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}
