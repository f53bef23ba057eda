// Package engine is a plugin's side of the judge's Engine: load a network
// once, then run batches on the slot the judge lent this run. The plugin
// stays a small static binary; the judge owns the devices.
package engine

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"unsafe"

	"google.golang.org/grpc"

	"github.com/hackarena/hackarena/sdk/network"
	"github.com/hackarena/hackarena/sdk/onnx"
	"github.com/hackarena/hackarena/sdk/proto/enginev1"
)

// Client calls the judge's Engine.
type Client struct {
	rpc enginev1.EngineClient
}

// NewClient wraps a connection to an Engine (sdk.Serve dials it for you).
func NewClient(conn grpc.ClientConnInterface) *Client {
	return &Client{rpc: enginev1.NewEngineClient(conn)}
}

// Network is a network loaded on the engine.
type Network struct {
	c      *Client
	handle string
	// Input is the shape of one example; OutputSize is the values one
	// example's output has.
	Input      []int
	OutputSize int
	// IDs: the network starts with an Embedding, so its inputs are token
	// ids.
	IDs bool
	// Device, Charged and Budget say where it runs and how much of the
	// slot's memory the run holds.
	Device          string
	Charged, Budget int64
}

// Load sends a network and its weights to the engine.
func (c *Client) Load(ctx context.Context, net *network.Network, w network.Weights) (*Network, error) {
	js, err := net.Encode()
	if err != nil {
		return nil, err
	}
	var npz bytes.Buffer
	if err := network.WriteNPZ(&npz, w); err != nil {
		return nil, err
	}
	return c.LoadFiles(ctx, js, npz.Bytes())
}

// LoadFiles sends a network's JSON and .npz as they are, e.g. files
// embedded in the plugin.
func (c *Client) LoadFiles(ctx context.Context, networkJSON, weightsNPZ []byte) (*Network, error) {
	net, err := network.Decode(networkJSON)
	if err != nil {
		return nil, err
	}
	return c.load(ctx, net, &enginev1.LoadRequest{NetworkJson: networkJSON, WeightsNpz: weightsNPZ}, "network")
}

// LoadONNX sends an ONNX model (what torch.onnx.export and tf2onnx
// write). It is imported here first, with the Engine's own importer
// (sdk/onnx), so a model the Engine cannot run fails with the importer's
// message before anything travels; the Engine imports it again, as it
// checks every network it is sent.
func (c *Client) LoadONNX(ctx context.Context, model []byte) (*Network, error) {
	net, _, err := onnx.Load(model)
	if err != nil {
		return nil, err
	}
	return c.load(ctx, net, &enginev1.LoadRequest{NetworkJson: model}, "ONNX model")
}

// load sends req for net, which the caller has checked.
func (c *Client) load(ctx context.Context, net *network.Network, req *enginev1.LoadRequest, what string) (*Network, error) {
	shapes, err := net.Shapes()
	if err != nil {
		return nil, err
	}
	out := 1
	for _, d := range shapes[len(shapes)-1] {
		out *= d
	}
	resp, err := c.rpc.Load(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("engine: load %s: %w", what, err)
	}
	return &Network{c: c, handle: resp.GetHandle(), Input: net.Input, OutputSize: out, IDs: net.Layers[0].Kind == network.Embedding,
		Device: resp.GetDevice(), Charged: resp.GetChargedBytes(), Budget: resp.GetBudgetBytes()}, nil
}

// Handle is the engine's name for this network in this run.
func (n *Network) Handle() string { return n.handle }

// Run computes the outputs of batch examples whose inputs are laid end to
// end in x; it returns batch × OutputSize values.
func (n *Network) Run(ctx context.Context, batch int, x []float32) ([]float32, error) {
	return n.c.Run(ctx, n.handle, batch, len(x)/max(batch, 1), x)
}

// RunBytes is Run for inputs of one byte per value (raw pixels, say),
// which the engine turns into float32: a network that starts with a
// Rescaling layer takes them as they come, and they travel at a quarter
// of the size.
func (n *Network) RunBytes(ctx context.Context, batch int, x []byte) ([]float32, error) {
	return n.c.run(ctx, &enginev1.RunRequest{Handle: n.handle, Shape: []int64{int64(batch), int64(len(x) / max(batch, 1))}, Data: x, Type: enginev1.InputType_INPUT_TYPE_UINT8})
}

// RunJudgeBatch runs the network on the images of the batch the judge is
// asking about (sdk.Batch.ID), as the judge sent them (uint8): nothing
// travels back but the outputs. The network must take the images as they
// are, e.g. starting with a Rescaling layer.
func (n *Network) RunJudgeBatch(ctx context.Context, batchID uint64) ([]float32, error) {
	return n.c.run(ctx, &enginev1.RunRequest{Handle: n.handle, BatchId: batchID})
}

// Run calls the engine with a handle as it is; Network.Run is the usual
// way.
func (c *Client) Run(ctx context.Context, handle string, batch, exampleSize int, x []float32) ([]float32, error) {
	return c.run(ctx, &enginev1.RunRequest{Handle: handle, Shape: []int64{int64(batch), int64(exampleSize)}, Data: Float32Bytes(x)})
}

// run sends one request and decodes the outputs.
func (c *Client) run(ctx context.Context, req *enginev1.RunRequest) ([]float32, error) {
	resp, err := c.rpc.Run(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("engine: run: %w", err)
	}
	out, err := float32sOf(resp.GetData())
	if err != nil {
		return nil, fmt.Errorf("engine: run: %w", err)
	}
	return out, nil
}

// Release frees the network on the engine.
func (n *Network) Release(ctx context.Context) error {
	if _, err := n.c.rpc.Release(ctx, &enginev1.ReleaseRequest{Handle: n.handle}); err != nil {
		return fmt.Errorf("engine: release: %w", err)
	}
	return nil
}

// Float32Bytes is the wire form of float32 values: little-endian.
func Float32Bytes(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(f))
	}
	return b
}

// BytesFloat32 decodes Float32Bytes.
func BytesFloat32(b []byte) ([]float32, error) {
	if len(b)%4 != 0 {
		return nil, fmt.Errorf("%d bytes are not a whole number of float32 values", len(b))
	}
	v := make([]float32, len(b)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v, nil
}

// littleEndian is whether this machine orders a float32's bytes as the
// wire does.
var littleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// float32sOf is BytesFloat32 for bytes nothing else holds (a reply just
// decoded): it reads them in place where the machine's byte order is the
// wire's, rather than copy every batch's outputs.
func float32sOf(b []byte) ([]float32, error) {
	if len(b)%4 != 0 || len(b) == 0 || !littleEndian || uintptr(unsafe.Pointer(&b[0]))%4 != 0 {
		return BytesFloat32(b)
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&b[0])), len(b)/4), nil
}
