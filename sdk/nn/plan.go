package nn

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"

	"gonum.org/v1/gonum/blas"
	G "gorgonia.org/gorgonia"

	"github.com/hackarena/hackarena/sdk/network"
)

// A plan runs a network for inference at one batch size without a graph:
// its buffers are allocated once, when it is made, and each layer is one
// kernel call on them. A Dense layer is its bias written into the output,
// one sgemm adding x·W on top and the activation in place; a convolution
// is im2col of a group of examples and one sgemm, the groups spread over
// the process's threads, with a max pooling after it folded in; a pooling,
// an activation and a softmax are loops;
// Flatten, Reshape and Dropout are nothing. Gorgonia's tape machine
// allocated every layer's output anew on each batch and copied the input
// into its own tensor. A network with a layer the plan does not have
// (Embedding, the averaging layers, Add and Multiply by a constant, a
// softmax on another axis than the last) runs on the graph instead.

// errNoPlan is a network the plan cannot run.
var errNoPlan = errors.New("no inference plan for this network")

type planStep struct {
	name string
	// inPlace steps rewrite their input; others write out.
	inPlace bool
	outLen  int
	run     func(in, out []float32)
}

type plan struct {
	batch, inLen, outLen int
	steps                []planStep
	// a and b hold activations in turn.
	a, b []float32
}

// newPlan compiles net (its weights w, already checked) for batches of
// batch examples, or errNoPlan.
func newPlan(net *network.Network, w network.Weights, batch int) (*plan, error) {
	shapes, err := net.Shapes()
	if err != nil {
		return nil, err
	}
	p := &plan{batch: batch, inLen: batch * size(net.Input)}
	// The buffers hold the steps' outputs, and the input only where the
	// first step rewrites its input in place (run copies it there).
	largest := 0
	in := net.Input
	for i := 0; i < len(net.Layers); i++ {
		l := &net.Layers[i]
		name := net.LayerName(i)
		out := shapes[i]
		var step planStep
		var err error
		if pool := pooling(net, i, shapes); pool != nil {
			// A convolution and the max pooling after it are one step.
			step = convStep(l, w[name+".kernel"].Data, w[name+".bias"].Data, batch, in, out, pool)
			i++
			out = shapes[i]
		} else if step, err = planLayer(l, name, w, batch, in, out); err != nil {
			return nil, err
		}
		if step.run != nil {
			step.name = name
			step.outLen = batch * size(out)
			largest = max(largest, step.outLen)
			p.steps = append(p.steps, step)
		}
		if act := l.Activation; act != "" && act != "linear" && l.Kind != network.Dense && l.Kind != network.Conv2D {
			if !planActivation(act) {
				return nil, errNoPlan
			}
			units := out[len(out)-1]
			p.steps = append(p.steps, planStep{name: name + "." + act, inPlace: true, outLen: batch * size(out),
				run: func(in, _ []float32) { activateRows(in, units, act) }})
		}
		in = out
	}
	p.outLen = batch * size(in)
	if len(p.steps) > 0 && p.steps[0].inPlace {
		largest = max(largest, p.inLen)
	}
	largest = max(largest, 1) // run compares their first elements' addresses
	p.a = make([]float32, largest)
	p.b = make([]float32, largest)
	return p, nil
}

func planActivation(act string) bool {
	switch act {
	case "", "linear", "relu", "sigmoid", "tanh", "softmax":
		return true
	}
	return false
}

// planLayer is one layer's step; a step with no run changes nothing (the
// layout of its output is its input's).
func planLayer(l *network.Layer, name string, w network.Weights, batch int, in, out []int) (planStep, error) {
	switch l.Kind {
	case network.Dense:
		if !planActivation(l.Activation) {
			return planStep{}, errNoPlan
		}
		kernel, bias := w[name+".kernel"].Data, w[name+".bias"].Data
		k, units := in[len(in)-1], l.Units
		rows := batch * size(in) / k
		act := l.Activation
		// The rows are spread over the threads, each with its bias, its
		// product and its activation: the activation of a batch's rows
		// on one thread took a fifth of the MNIST MLP's inference.
		return planStep{run: func(x, y []float32) {
			workers := max(1, min(runtime.GOMAXPROCS(0), rows*units*k/denseRowsWork))
			parallel(rows, workers, func(_, lo, hi int) {
				denseRows(y[lo*units:hi*units], x[lo*k:hi*k], kernel, bias, act)
			})
		}}, nil
	case network.Conv2D:
		if !planActivation(l.Activation) {
			return planStep{}, errNoPlan
		}
		return convStep(l, w[name+".kernel"].Data, w[name+".bias"].Data, batch, in, out, nil), nil
	case network.MaxPool2D:
		planes, h, wd, oh, ow := batch*in[0], in[1], in[2], out[1], out[2]
		k, stride, pads, dil := l.Pool, l.Strides(), l.Padding4(), l.Dilations()
		plain := slices.Equal(pads, []int{0, 0, 0, 0}) && dil[0] == 1 && dil[1] == 1 &&
			(oh-1)*stride[0]+k[0] <= h && (ow-1)*stride[1]+k[1] <= wd
		return planStep{run: func(x, y []float32) {
			parallel(planes, runtime.GOMAXPROCS(0), func(_, lo, hi int) {
				in, out := x[lo*h*wd:hi*h*wd], y[lo*oh*ow:hi*oh*ow]
				if plain {
					maxPoolPlanes(in, out, hi-lo, h, wd, oh, ow, k, stride)
				} else {
					poolPlanes(in, out, hi-lo, h, wd, oh, ow, true, k, stride, pads, dil, false)
				}
			})
		}}, nil
	case network.ReLU, network.Sigmoid, network.Tanh:
		act := activationOf(l.Kind)
		units := out[len(out)-1]
		return planStep{inPlace: true, run: func(x, _ []float32) { activateRows(x, units, act) }}, nil
	case network.Softmax, network.LogSoftmax:
		if l.Axis != nil && (*l.Axis+len(in))%len(in) != len(in)-1 {
			return planStep{}, errNoPlan
		}
		act := "softmax"
		if l.Kind == network.LogSoftmax {
			act = "logsoftmax"
		}
		units := in[len(in)-1]
		return planStep{inPlace: true, run: func(x, _ []float32) { activateRows(x, units, act) }}, nil
	case network.Rescaling:
		scale, offset := float32(l.Scale), float32(l.Offset)
		return planStep{inPlace: true, run: func(x, _ []float32) {
			for i, v := range x {
				x[i] = v*scale + offset
			}
		}}, nil
	case network.Flatten, network.Reshape, network.Dropout:
		return planStep{}, nil
	}
	return planStep{}, errNoPlan
}

// convStep is a convolution over NCHW as im2col and sgemm: a group of
// examples' windows side by side as the columns of one matrix, one
// [filters, c·kh·kw] · [c·kh·kw, group·oh·ow] product, then each
// example's rows copied into place with the bias added and the activation
// applied. One example per product left the product too narrow to be
// fast: a third of the speed on the seed's CNN. The examples are spread
// over the process's threads, each with its own buffers, made once.
func convStep(l *network.Layer, kernel, bias []float32, batch int, in, out []int, pool *poolSpec) planStep {
	c, h, wd := in[0], in[1], in[2]
	f, oh, ow := out[0], out[1], out[2]
	kh, kw := l.Kernel[0], l.Kernel[1]
	stride, pads, dil := l.Strides(), l.Padding4(), l.Dilations()
	kk, cells := c*kh*kw, oh*ow
	workers := max(1, min(runtime.GOMAXPROCS(0), batch))
	// Columns per product: about convColumns, whole examples, no more
	// than a worker's share.
	group := max(1, min(convColumns/cells, (batch+workers-1)/workers))
	cols, prods := make([][]float32, workers), make([][]float32, workers)
	for i := range cols {
		cols[i] = make([]float32, kk*group*cells)
		prods[i] = make([]float32, f*group*cells)
	}
	act := l.Activation
	inLen, outLen := c*h*wd, f*cells
	if pool != nil {
		outLen = f * pool.oh * pool.ow
	}
	// chunk computes examples [lo, hi), at most group of them.
	chunk := func(col, prod, x, y []float32, lo, hi int) {
		n := (hi - lo) * cells
		for e := lo; e < hi; e++ {
			im2colAt(col, n, (e-lo)*cells, x[e*inLen:(e+1)*inLen], c, h, wd, kh, kw, oh, ow, stride, pads, dil)
		}
		G.WhichBLAS().Sgemm(blas.NoTrans, blas.NoTrans, f, n, kk, 1, kernel, kk, col, n, 0, prod, n)
		if pool != nil {
			pcells := pool.oh * pool.ow
			for e := lo; e < hi; e++ {
				dst := y[e*outLen : (e+1)*outLen]
				for fi := 0; fi < f; fi++ {
					src := prod[fi*n+(e-lo)*cells:][:cells]
					row := dst[fi*pcells : (fi+1)*pcells]
					maxPoolPlanes(src, row, 1, oh, ow, pool.oh, pool.ow, pool.k, pool.stride)
					b := bias[fi]
					for i := range row {
						row[i] += b
					}
				}
				activateRows(dst, pcells, act)
			}
			return
		}
		for e := lo; e < hi; e++ {
			dst := y[e*outLen : (e+1)*outLen]
			biasOut(dst, prod, n, (e-lo)*cells, cells, bias, act == "relu")
			switch act {
			case "relu", "", "linear":
			case "softmax":
				activateRows(dst, ow, act) // over the last axis, as the graph's
			default:
				activateRows(dst, cells, act)
			}
		}
	}
	return planStep{run: func(x, y []float32) {
		parallel(batch, workers, func(wi, lo, hi int) {
			for g := lo; g < hi; g += group {
				chunk(cols[wi], prods[wi], x, y, g, min(g+group, hi))
			}
		})
	}}
}

// denseRowsWork is about the least work (multiply-adds) worth a thread of
// its own in a Dense layer.
const denseRowsWork = 1 << 18

// biasOut copies one example's products out of a convolution's product
// (rows of n columns, the example's cells from column first) into dst
// [filters, cells], adding each filter's bias, and ReLU with it when relu.
func biasOut(dst, prod []float32, n, first, cells int, bias []float32, relu bool) {
	for fi, b := range bias {
		src := prod[fi*n+first:][:cells]
		row := dst[fi*cells : (fi+1)*cells]
		if relu {
			for i, v := range src {
				row[i] = max(v+b, 0)
			}
			continue
		}
		for i, v := range src {
			row[i] = v + b
		}
	}
}

// convColumns is about how many columns a convolution's product has.
const convColumns = 2048

// im2colAt lays out one example's windows as columns first..first+oh·ow
// of col, whose rows are n long: row (ci, ky, kx), column (oy, ox) holds
// the input under that tap of that window (0 in the padding).
func im2colAt(col []float32, n, first int, x []float32, c, h, w, kh, kw, oh, ow int, stride, pads, dil []int) {
	cells := oh * ow
	for ci := 0; ci < c; ci++ {
		plane := x[ci*h*w : (ci+1)*h*w]
		for ky := 0; ky < kh; ky++ {
			for kx := 0; kx < kw; kx++ {
				dst := col[((ci*kh+ky)*kw+kx)*n+first:][:cells]
				for oy := 0; oy < oh; oy++ {
					y := oy*stride[0] - pads[0] + ky*dil[0]
					row := dst[oy*ow : (oy+1)*ow]
					if y < 0 || y >= h {
						clear(row)
						continue
					}
					src := plane[y*w : (y+1)*w]
					x0 := kx*dil[1] - pads[1]
					if stride[1] == 1 && x0 >= 0 && x0+ow <= w {
						copy(row, src[x0:x0+ow])
						continue
					}
					for ox := range row {
						xx := x0 + ox*stride[1]
						if xx < 0 || xx >= w {
							row[ox] = 0
						} else {
							row[ox] = src[xx]
						}
					}
				}
			}
		}
	}
}

// poolSpec is a max pooling a convolution step does itself.
type poolSpec struct {
	k, stride []int
	oh, ow    int
}

// pooling is the max pooling layer i+1 when layer i is a convolution it
// can be folded into: its windows lie inside the input, and neither layer's
// activation changes the order of values (so pooling the products and
// then adding the bias and activating is the same).
func pooling(net *network.Network, i int, shapes [][]int) *poolSpec {
	if i+1 >= len(net.Layers) {
		return nil
	}
	conv, pool := &net.Layers[i], &net.Layers[i+1]
	if conv.Kind != network.Conv2D || pool.Kind != network.MaxPool2D || (pool.Activation != "" && pool.Activation != "linear") {
		return nil
	}
	switch conv.Activation {
	case "", "linear", "relu", "sigmoid", "tanh":
	default:
		return nil
	}
	in, out := shapes[i], shapes[i+1]
	k, stride, pads, dil := pool.Pool, pool.Strides(), pool.Padding4(), pool.Dilations()
	if !slices.Equal(pads, []int{0, 0, 0, 0}) || dil[0] != 1 || dil[1] != 1 ||
		(out[1]-1)*stride[0]+k[0] > in[1] || (out[2]-1)*stride[1]+k[1] > in[2] {
		return nil
	}
	return &poolSpec{k: k, stride: stride, oh: out[1], ow: out[2]}
}

// maxPoolPlanes is a max pooling whose windows all lie inside the input
// (no padding, no dilation): the loop without poolPlanes' checks, which
// took a third of the seed's CNN's inference.
func maxPoolPlanes(in, out []float32, planes, h, w, oh, ow int, k, stride []int) {
	for plane := 0; plane < planes; plane++ {
		src := in[plane*h*w : (plane+1)*h*w]
		dst := out[plane*oh*ow : (plane+1)*oh*ow]
		for oy := 0; oy < oh; oy++ {
			for ox := 0; ox < ow; ox++ {
				base := oy*stride[0]*w + ox*stride[1]
				best := src[base]
				for ky := 0; ky < k[0]; ky++ {
					for _, v := range src[base+ky*w : base+ky*w+k[1]] {
						if v > best || v != v { // a NaN wins, as in poolPlanes
							best = v
						}
					}
				}
				dst[oy*ow+ox] = best
			}
		}
	}
}

// parallel runs f over [0, n) in one contiguous part for each of up to
// workers goroutines, the caller's among them; f learns its worker's
// index (for buffers of its own).
func parallel(n, workers int, f func(worker, lo, hi int)) {
	workers = max(1, min(workers, n))
	var wg sync.WaitGroup
	for wi := range workers {
		lo, hi := n*wi/workers, n*(wi+1)/workers
		if wi == workers-1 {
			f(wi, lo, hi)
			break
		}
		wg.Add(1)
		go func() { defer wg.Done(); f(wi, lo, hi) }()
	}
	wg.Wait()
}

// run computes one batch; x is not written. The output is the caller's.
func (p *plan) run(ctx context.Context, x []float32) ([]float32, error) {
	if len(x) != p.inLen {
		return nil, fmt.Errorf("input has %d values, a batch of %d examples needs %d", len(x), p.batch, p.inLen)
	}
	cur := x
	for _, s := range p.steps {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("run network: stopped between layers: %w", err)
		}
		if s.inPlace {
			if &cur[0] == &x[0] {
				copy(p.a, x)
				cur = p.a[:len(x)]
			}
			s.run(cur[:s.outLen], nil)
			continue
		}
		dst := p.a
		if &cur[0] == &p.a[0] {
			dst = p.b
		}
		s.run(cur, dst[:s.outLen])
		cur = dst[:s.outLen]
	}
	return append([]float32(nil), cur[:p.outLen]...), nil
}
