package sdk

import (
	"context"
	"fmt"
	"net"
	"os"
	"slices"
	"sync"

	"github.com/hackarena/hackarena/sdk/engine"
	"github.com/hackarena/hackarena/sdk/proto/pluginv1"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// GRPCPlugin adapts a Model to go-plugin's gRPC transport.
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	// Impl is the plugin's model (plugin side).
	Impl Model
	// ServeEngine takes the listener of this run's Engine connection
	// (judge side) and owns it: it serves the Engine there, or hands the
	// connection to whatever does, and closes it when the run ends.
	ServeEngine func(net.Listener)
}

var _ plugin.GRPCPlugin = (*GRPCPlugin)(nil)

// GRPCServer registers the model's server side.
func (p *GRPCPlugin) GRPCServer(broker *plugin.GRPCBroker, s *grpc.Server) error {
	pluginv1.RegisterModelServer(s, &grpcServer{impl: p.Impl, broker: broker})
	return nil
}

// GRPCClient returns a Model that calls the plugin.
func (p *GRPCPlugin) GRPCClient(_ context.Context, broker *plugin.GRPCBroker, c *grpc.ClientConn) (interface{}, error) {
	return &grpcClient{client: pluginv1.NewModelClient(c), broker: broker, serveEngine: p.ServeEngine}, nil
}

type grpcServer struct {
	pluginv1.UnimplementedModelServer
	impl   Model
	broker *plugin.GRPCBroker

	mu       sync.Mutex
	attached bool
}

func (s *grpcServer) Describe(ctx context.Context, req *pluginv1.DescribeRequest) (*pluginv1.DescribeResponse, error) {
	if err := s.attachEngine(ctx, req.GetEngineBrokerId()); err != nil {
		return nil, err
	}
	info, err := s.impl.Describe(ctx)
	if err != nil {
		return nil, err
	}
	if info.SDKVersion == "" {
		info.SDKVersion = Version
	}
	markOutputs()
	return &pluginv1.DescribeResponse{Name: info.Name, Version: info.Version, SdkVersion: info.SDKVersion,
		EngineReadsBatches: info.EngineReadsBatches, OutputMarked: true}, nil
}

// OutputMarker is the line a plugin writes to each of its outputs as it
// answers Describe (DescribeResponse.output_marked): what the judge reads
// before it on an output was printed before any hidden input was sent.
// The judge takes it out of the log. Its NULs keep it from being anyone's
// words.
const OutputMarker = "\x00hackarena: Describe answered\x00\n"

// startStderr is the stderr the plugin was started with; go-plugin's
// Serve then points os.Stdout and os.Stderr at pipes it forwards over
// gRPC.
var startStderr = os.Stderr

// markOutputs writes OutputMarker once to each distinct output.
func markOutputs() {
	var marked []*os.File
	for _, f := range []*os.File{startStderr, os.Stdout, os.Stderr} {
		if f == nil || slices.Contains(marked, f) {
			continue
		}
		marked = append(marked, f)
		_, _ = f.WriteString(OutputMarker)
	}
}

func (s *grpcServer) Predict(ctx context.Context, req *pluginv1.PredictRequest) (*pluginv1.PredictResponse, error) {
	batch, err := batchFromProto(req.GetBatch())
	if err != nil {
		return nil, err
	}
	batch.ID = req.GetBatchId()
	preds, err := s.impl.Predict(ctx, batch)
	if err != nil {
		return nil, err
	}
	return predictionsToProto(preds)
}

// attachEngine dials the judge's Engine and hands it to a model that uses
// one, once.
func (s *grpcServer) attachEngine(ctx context.Context, id uint32) error {
	user, ok := s.impl.(EngineUser)
	if !ok {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.attached {
		return nil
	}
	if id == 0 {
		return fmt.Errorf("this model runs a network on the judge's Engine, but the judge offered none (it runs without an Engine, or predates plugin protocol 2)")
	}
	conn, err := s.broker.DialWithOptions(id, DialOptions()...)
	if err != nil {
		return fmt.Errorf("connect to the judge's engine: %w", err)
	}
	if err := user.UseEngine(ctx, engine.NewClient(conn)); err != nil {
		conn.Close()
		return err
	}
	s.attached = true
	return nil
}

type grpcClient struct {
	client      pluginv1.ModelClient
	broker      *plugin.GRPCBroker
	serveEngine func(net.Listener)

	mu       sync.Mutex
	engineID uint32
}

// offerEngine opens the Engine's listener on a new broker id, once per
// run, and hands it to the judge's ServeEngine; the plugin learns the
// address through the broker.
func (c *grpcClient) offerEngine() uint32 {
	if c.serveEngine == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.engineID == 0 {
		id := c.broker.NextId()
		l, err := c.broker.Accept(id)
		if err != nil {
			return 0
		}
		c.engineID = id
		c.serveEngine(l)
	}
	return c.engineID
}

func (c *grpcClient) Describe(ctx context.Context) (Info, error) {
	resp, err := c.client.Describe(ctx, &pluginv1.DescribeRequest{EngineBrokerId: c.offerEngine()})
	if err != nil {
		return Info{}, err
	}
	return Info{Name: resp.GetName(), Version: resp.GetVersion(), SDKVersion: resp.GetSdkVersion(),
		EngineReadsBatches: resp.GetEngineReadsBatches(), OutputMarked: resp.GetOutputMarked()}, nil
}

func (c *grpcClient) Predict(ctx context.Context, batch Batch) (Predictions, error) {
	resp, err := c.client.Predict(ctx, &pluginv1.PredictRequest{Batch: batchToProto(batch), BatchId: batch.ID})
	if err != nil {
		return Predictions{}, err
	}
	return predictionsFromProto(resp, batch.Size)
}

// ReplyShapeError is a Predict reply whose sizes do not fit the batch it
// answers, found before anything is built from them.
type ReplyShapeError struct{ Msg string }

func (e *ReplyShapeError) Error() string { return e.Msg }

func batchToProto(b Batch) *pluginv1.Batch {
	pb := &pluginv1.Batch{Size: int64(b.Size), Texts: b.Texts}
	if b.Images != nil {
		pb.Images = tensorToProto(b.Images)
	}
	for _, c := range b.Columns {
		pb.Columns = append(pb.Columns, &pluginv1.Column{Name: c.Name, Numbers: c.Numbers, Strings: c.Strings})
	}
	return pb
}

func batchFromProto(pb *pluginv1.Batch) (Batch, error) {
	if pb == nil {
		return Batch{}, fmt.Errorf("predict: request has no batch")
	}
	b := Batch{Size: int(pb.GetSize()), Texts: pb.GetTexts()}
	if pb.GetImages() != nil {
		t, err := tensorFromProto(pb.GetImages())
		if err != nil {
			return Batch{}, fmt.Errorf("predict: images: %w", err)
		}
		b.Images = t
	}
	for _, c := range pb.GetColumns() {
		b.Columns = append(b.Columns, Column{Name: c.GetName(), Numbers: c.GetNumbers(), Strings: c.GetStrings()})
	}
	return b, nil
}

func tensorToProto(t *Tensor) *pluginv1.Tensor {
	shape := make([]int64, len(t.Shape))
	for i, d := range t.Shape {
		shape[i] = int64(d)
	}
	return &pluginv1.Tensor{Shape: shape, Dtype: pluginv1.DType(t.DType), Data: t.Data}
}

func tensorFromProto(pt *pluginv1.Tensor) (*Tensor, error) {
	shape := make([]int, len(pt.GetShape()))
	for i, d := range pt.GetShape() {
		shape[i] = int(d)
	}
	t := &Tensor{Shape: shape, DType: DType(pt.GetDtype()), Data: pt.GetData()}
	if err := t.Validate(); err != nil {
		return nil, err
	}
	return t, nil
}

func predictionsToProto(p Predictions) (*pluginv1.PredictResponse, error) {
	resp := &pluginv1.PredictResponse{Values: p.Values}
	resp.Classes = make([]int64, len(p.Classes))
	for i, c := range p.Classes {
		resp.Classes[i] = int64(c)
	}
	if len(p.Probabilities) > 0 {
		k := len(p.Probabilities[0])
		resp.NumClasses = int64(k)
		if flat, ok := rowsInOne(p.Probabilities, k); ok {
			resp.Probabilities = flat
			return resp, nil
		}
		resp.Probabilities = make([]float32, 0, k*len(p.Probabilities))
		for i, row := range p.Probabilities {
			if len(row) != k {
				return nil, fmt.Errorf("predict: probability row %d has %d classes, row 0 has %d", i, len(row), k)
			}
			resp.Probabilities = append(resp.Probabilities, row...)
		}
	}
	return resp, nil
}

// rowsInOne returns the rows as the one slice they are cut from, in
// order, each k long (a network's outputs, row by row), so the reply need
// not copy them; ok is false for rows in any other form.
func rowsInOne(rows [][]float32, k int) (flat []float32, ok bool) {
	n := len(rows) * k
	if k == 0 || cap(rows[0]) < n {
		return nil, false
	}
	flat = rows[0][:n]
	for i, row := range rows {
		if len(row) != k || &row[0] != &flat[i*k] {
			return nil, false
		}
	}
	return flat, true
}

// predictionsFromProto checks the reply's declared sizes against the
// batch of size examples before it expands anything: a reply of 64 MiB
// that declares one class must not become millions of rows.
func predictionsFromProto(resp *pluginv1.PredictResponse, size int) (Predictions, error) {
	classes, values, probs := resp.GetClasses(), resp.GetValues(), resp.GetProbabilities()
	if len(classes) > size {
		return Predictions{}, &ReplyShapeError{fmt.Sprintf("the reply to a batch of %d examples has %d class predictions: return one per example", size, len(classes))}
	}
	if len(values) > size {
		return Predictions{}, &ReplyShapeError{fmt.Sprintf("the reply to a batch of %d examples has %d values: return one per example", size, len(values))}
	}
	if len(probs) > 0 {
		k := resp.GetNumClasses()
		if k <= 0 || int64(len(probs))%k != 0 || int64(len(probs))/k > int64(size) {
			return Predictions{}, &ReplyShapeError{fmt.Sprintf("the reply to a batch of %d examples has %d probabilities in rows of %d classes: return one row per example", size, len(probs), k)}
		}
	}
	p := Predictions{Values: values}
	p.Classes = make([]int, len(classes))
	for i, c := range classes {
		p.Classes[i] = int(c)
	}
	if len(probs) > 0 {
		k := int(resp.GetNumClasses())
		p.Probabilities = make([][]float32, 0, len(probs)/k)
		for i := 0; i < len(probs); i += k {
			p.Probabilities = append(p.Probabilities, probs[i:i+k:i+k])
		}
	}
	return p, nil
}
