package nn

import (
	"fmt"
	"hash"
	"math"
	"sync/atomic"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// forwardOp is an inference-only op written as a loop over float32s: the
// layers gorgonia has no op for (average pooling, pooling with ONNX's
// padding and ceil mode, asymmetric zero padding). It has no gradient, so
// a network that needs one runs but does not train.
type forwardOp struct {
	name  string
	id    int
	shape tensor.Shape
	do    func(in, out []float32)
}

var forwardOps atomic.Int64

func applyForward(x *G.Node, name string, shape []int, do func(in, out []float32)) (*G.Node, error) {
	op := &forwardOp{name: name, id: int(forwardOps.Add(1)), shape: tensor.Shape(shape).Clone(), do: do}
	return G.ApplyOp(op, x)
}

func (op *forwardOp) Arity() int { return 1 }

func (op *forwardOp) Type() hm.Type {
	a := hm.TypeVariable('a')
	return hm.NewFnType(a, a)
}

func (op *forwardOp) InferShape(...G.DimSizer) (tensor.Shape, error) { return op.shape.Clone(), nil }

func (op *forwardOp) Do(in ...G.Value) (G.Value, error) {
	x, ok := in[0].Data().([]float32)
	if !ok {
		return nil, fmt.Errorf("%s: want float32 input, got %T", op.name, in[0].Data())
	}
	out := make([]float32, op.shape.TotalSize())
	op.do(x, out)
	return tensor.New(tensor.WithShape(op.shape...), tensor.WithBacking(out)), nil
}

func (op *forwardOp) ReturnsPtr() bool      { return false }
func (op *forwardOp) CallsExtern() bool     { return false }
func (op *forwardOp) OverwritesInput() int  { return -1 }
func (op *forwardOp) WriteHash(h hash.Hash) { fmt.Fprintf(h, "%s%d", op.name, op.id) }
func (op *forwardOp) Hashcode() uint32      { return uint32(op.id) }
func (op *forwardOp) String() string        { return fmt.Sprintf("%s%d", op.name, op.id) }

// pool2d is a max or average pooling over NCHW with ONNX's options:
// pads [top, left, bottom, right], strides, dilations, ceil mode (the
// output shape, already computed, says how many windows) and, for an
// average, whether the padding counts in the divisor. Padding never wins a
// maximum; windows that ceil mode adds past the padding count only their
// real cells even with countPad (PyTorch's and ONNX's rule).
func pool2d(x *G.Node, max bool, inShape, outShape, k, stride, pads, dil []int, countPad bool) (*G.Node, error) {
	name := "avgpool"
	if max {
		name = "maxpool"
	}
	return applyForward(x, name, outShape, func(in, out []float32) {
		poolPlanes(in, out, inShape[0]*inShape[1], inShape[2], inShape[3], outShape[2], outShape[3], max, k, stride, pads, dil, countPad)
	})
}

// poolPlanes pools planes h×w planes of in into oh×ow planes of out (the
// graph's op and the inference plan share it).
func poolPlanes(in, out []float32, planes, h, w, oh, ow int, max bool, k, stride, pads, dil []int, countPad bool) {
	for plane := 0; plane < planes; plane++ {
		src := in[plane*h*w : (plane+1)*h*w]
		dst := out[plane*oh*ow : (plane+1)*oh*ow]
		for oy := 0; oy < oh; oy++ {
			y0 := oy*stride[0] - pads[0]
			for ox := 0; ox < ow; ox++ {
				x0 := ox*stride[1] - pads[1]
				best, sum, cells, padded := float32(math.Inf(-1)), float32(0), 0, 0
				for ky := 0; ky < k[0]; ky++ {
					y := y0 + ky*dil[0]
					for kx := 0; kx < k[1]; kx++ {
						xx := x0 + kx*dil[1]
						if y < -pads[0] || y >= h+pads[2] || xx < -pads[1] || xx >= w+pads[3] {
							continue // past the padding: ceil mode's extra cells
						}
						padded++
						if y < 0 || y >= h || xx < 0 || xx >= w {
							continue
						}
						v := src[y*w+xx]
						best = maxf(best, v)
						sum += v
						cells++
					}
				}
				switch {
				case max:
					dst[oy*ow+ox] = best
				case countPad:
					dst[oy*ow+ox] = sum / float32(padded)
				case cells > 0:
					dst[oy*ow+ox] = sum / float32(cells)
				}
			}
		}
	}
}

func maxf(a, b float32) float32 {
	if b > a || math.IsNaN(float64(b)) {
		return b
	}
	return a
}

// zeroPad2d pads NCHW with zeros [top, left, bottom, right]: a convolution
// with asymmetric padding, which gorgonia's Conv2d (one pad per axis) does
// not have.
func zeroPad2d(x *G.Node, inShape, pads []int) (*G.Node, error) {
	n, c, h, w := inShape[0], inShape[1], inShape[2], inShape[3]
	ph, pw := h+pads[0]+pads[2], w+pads[1]+pads[3]
	return applyForward(x, "zeropad", []int{n, c, ph, pw}, func(in, out []float32) {
		for plane := 0; plane < n*c; plane++ {
			for y := 0; y < h; y++ {
				copy(out[plane*ph*pw+(y+pads[0])*pw+pads[1]:], in[plane*h*w+y*w:plane*h*w+(y+1)*w])
			}
		}
	})
}
