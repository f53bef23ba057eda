// Command engine-onnx sends the Engine's Load hostile ONNX files straight,
// skipping the SDK's own import: a graph with a cycle, an initializer whose
// dims claim 2^40 values over 16 bytes, a convolution with stride 0, an
// example of 2^40 values, bytes that only start like a model, and an op
// the Engine does not have. Each must be refused as bad input, quickly;
// the run then fails with the last refusal, which names the op.
package main

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc/status"

	"github.com/hackarena/hackarena/plugins/hostile/internal/attack"
	"github.com/hackarena/hackarena/plugins/hostile/internal/rawengine"
	"github.com/hackarena/hackarena/sdk/onnx"
	"github.com/hackarena/hackarena/sdk/proto/enginev1"
)

// model is a small valid MNIST MLP for edit to break.
func model(edit func(g *onnx.Graph)) []byte {
	g := onnx.Graph{
		Nodes: []onnx.Node{
			{Name: "/Flatten", OpType: "Flatten", Inputs: []string{"input"}, Outputs: []string{"f"}},
			{Name: "/fc/Gemm", OpType: "Gemm", Inputs: []string{"f", "w", "b"}, Outputs: []string{"g"}},
			{Name: "/act", OpType: "Relu", Inputs: []string{"g"}, Outputs: []string{"output"}},
		},
		Initializers: []onnx.Tensor{
			{Name: "w", Dims: []int64{784, 10}, DataType: onnx.Float, Floats: make([]float32, 7840)},
			{Name: "b", Dims: []int64{10}, DataType: onnx.Float, Floats: make([]float32, 10)},
		},
		Inputs:  []onnx.ValueInfo{{Name: "input", ElemType: onnx.Float, Shape: []onnx.Dim{{Param: "batch", Value: -1}, {Value: 28}, {Value: 28}}}},
		Outputs: []onnx.ValueInfo{{Name: "output", ElemType: onnx.Float}},
	}
	edit(&g)
	return onnx.Encode(&onnx.Model{Opsets: map[string]int64{"": 17}, Graph: g})
}

func main() {
	rawengine.Serve("engine-onnx", func(ctx context.Context, e *rawengine.Engine) error {
		c, err := e.Client()
		if err != nil {
			return err
		}
		attacks := []struct {
			name string
			file []byte
		}{
			{"cycle", model(func(g *onnx.Graph) { g.Nodes[0].Inputs = []string{"output"} })},
			{"bomb", model(func(g *onnx.Graph) {
				g.Initializers[0] = onnx.Tensor{Name: "w", Dims: []int64{1 << 20, 1 << 20}, DataType: onnx.Float, Raw: make([]byte, 16)}
			})},
			{"stride", model(func(g *onnx.Graph) {
				g.Inputs[0].Shape = []onnx.Dim{{Param: "batch", Value: -1}, {Value: 1}, {Value: 28}, {Value: 28}}
				g.Nodes[0] = onnx.Node{Name: "/conv", OpType: "Conv", Inputs: []string{"input", "k"}, Outputs: []string{"f"},
					Attributes: []onnx.Attribute{{Name: "strides", Type: onnx.AttrInts, Ints: []int64{0, 0}}}}
				g.Initializers = append(g.Initializers, onnx.Tensor{Name: "k", Dims: []int64{1, 1, 3, 3}, DataType: onnx.Float, Floats: make([]float32, 9)})
			})},
			{"huge", model(func(g *onnx.Graph) {
				g.Inputs[0].Shape = []onnx.Dim{{Param: "batch", Value: -1}, {Value: 1 << 20}, {Value: 1 << 20}}
			})},
			{"garbage", append([]byte{0x08, 0x07, 0x3a, 0xff, 0xff, 0xff, 0xff, 0x0f}, make([]byte, 64)...)},
			{"op", model(func(g *onnx.Graph) { g.Nodes[2].OpType = "LeakyRelu" })},
		}
		var last error
		for _, a := range attacks {
			start := time.Now()
			_, err := c.Load(ctx, &enginev1.LoadRequest{NetworkJson: a.file})
			attack.Report(a.name+"_code", status.Code(err))
			attack.Report(a.name+"_fast", time.Since(start) < 2*time.Second)
			if err == nil {
				return fmt.Errorf("the engine loaded the %s model", a.name)
			}
			last = err
		}
		return last
	})
}
