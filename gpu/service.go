package gpu

import (
	"context"
	"errors"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hackarena/hackarena/sdk/engine"
	"github.com/hackarena/hackarena/sdk/proto/enginev1"
)

// MaxMessageBytes bounds one engine request or reply: a batch in, its
// outputs back, or a network's weights.
const MaxMessageBytes = 64 << 20

// Register serves s as the Engine on a gRPC server.
func Register(srv *grpc.Server, s *Session) {
	enginev1.RegisterEngineServer(srv, &service{s: s})
}

// ServerOptions bound what one engine connection may send or make the
// judge do at once.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(MaxMessageBytes), grpc.MaxSendMsgSize(MaxMessageBytes),
		grpc.MaxConcurrentStreams(DefaultMaxConcurrentCalls * 2),
	}
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
	var x []float32
	switch req.GetType() {
	case enginev1.InputType_INPUT_TYPE_UINT8:
		x = widen(req.GetData())
	case enginev1.InputType_INPUT_TYPE_FLOAT32:
		var err error
		if x, err = engine.BytesFloat32(req.GetData()); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "input: %v", err)
		}
	default:
		return nil, status.Errorf(codes.InvalidArgument, "input type %v is not float32 or uint8", req.GetType())
	}
	outShape, out, err := v.s.Run(ctx, req.GetHandle(), shape, x)
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
	switch {
	case errors.As(err, &budget), errors.Is(err, ErrBusy), errors.Is(err, ErrTooMany):
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
