package nn

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"

	"gonum.org/v1/gonum/blas"
	G "gorgonia.org/gorgonia"

	"github.com/hackarena/hackarena/sdk/network"
)

// A plan runs a network for inference at one batch size without a graph:
// its buffers are allocated once, when it is made, and each layer is one
// kernel call on them. A Dense layer is its bias written into the output,
// one sgemm adding x·W on top and the activation in place; a convolution
// is im2col and one sgemm per example, the examples spread over the
// process's threads; a pooling, an activation and a softmax are loops;
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
	largest := p.inLen
	in := net.Input
	for i := range net.Layers {
		l := &net.Layers[i]
		name := net.LayerName(i)
		out := shapes[i]
		step, err := planLayer(l, name, w, batch, in, out)
		if err != nil {
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
		return planStep{run: func(x, y []float32) {
			for r := 0; r < rows; r++ {
				copy(y[r*units:(r+1)*units], bias)
			}
			G.WhichBLAS().Sgemm(blas.NoTrans, blas.NoTrans, rows, units, k, 1, x, k, kernel, units, 1, y, units)
			activateRows(y, units, act)
		}}, nil
	case network.Conv2D:
		if !planActivation(l.Activation) {
			return planStep{}, errNoPlan
		}
		return convStep(l, w[name+".kernel"].Data, w[name+".bias"].Data, batch, in, out), nil
	case network.MaxPool2D:
		planes, h, wd, oh, ow := batch*in[0], in[1], in[2], out[1], out[2]
		k, stride, pads, dil := l.Pool, l.Strides(), l.Padding4(), l.Dilations()
		return planStep{run: func(x, y []float32) {
			poolPlanes(x, y, planes, h, wd, oh, ow, true, k, stride, pads, dil, false)
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

// convStep is a convolution over NCHW as im2col and one sgemm per
// example: [filters, c·kh·kw] · [c·kh·kw, oh·ow], added to the bias,
// then the activation. The examples are spread over the process's
// threads, each with its own im2col buffer, made once.
func convStep(l *network.Layer, kernel, bias []float32, batch int, in, out []int) planStep {
	c, h, wd := in[0], in[1], in[2]
	f, oh, ow := out[0], out[1], out[2]
	kh, kw := l.Kernel[0], l.Kernel[1]
	stride, pads, dil := l.Strides(), l.Padding4(), l.Dilations()
	kk, cells := c*kh*kw, oh*ow
	workers := max(1, min(runtime.GOMAXPROCS(0), batch))
	cols := make([][]float32, workers)
	for i := range cols {
		cols[i] = make([]float32, kk*cells)
	}
	act := l.Activation
	example := func(col, x, y []float32) {
		im2col(col, x, c, h, wd, kh, kw, oh, ow, stride, pads, dil)
		for fi := 0; fi < f; fi++ {
			row := y[fi*cells : (fi+1)*cells]
			for i := range row {
				row[i] = bias[fi]
			}
		}
		G.WhichBLAS().Sgemm(blas.NoTrans, blas.NoTrans, f, cells, kk, 1, kernel, kk, col, cells, 1, y, cells)
		if act == "softmax" {
			// Over the last axis, as the graph's softmax is.
			activateRows(y, ow, act)
		} else {
			activateRows(y, cells, act)
		}
	}
	inLen, outLen := c*h*wd, f*cells
	return planStep{run: func(x, y []float32) {
		var wg sync.WaitGroup
		for wi := range workers {
			lo, hi := batch*wi/workers, batch*(wi+1)/workers
			work := func() {
				for n := lo; n < hi; n++ {
					example(cols[wi], x[n*inLen:(n+1)*inLen], y[n*outLen:(n+1)*outLen])
				}
			}
			if wi == workers-1 {
				work()
				break
			}
			wg.Add(1)
			go func() { defer wg.Done(); work() }()
		}
		wg.Wait()
	}}
}

// im2col lays out one example's windows as columns: row (ci, ky, kx),
// column (oy, ox) holds the input under that tap of that window (0 in the
// padding).
func im2col(col, x []float32, c, h, w, kh, kw, oh, ow int, stride, pads, dil []int) {
	cells := oh * ow
	for ci := 0; ci < c; ci++ {
		plane := x[ci*h*w : (ci+1)*h*w]
		for ky := 0; ky < kh; ky++ {
			for kx := 0; kx < kw; kx++ {
				dst := col[((ci*kh+ky)*kw+kx)*cells:][:cells]
				for oy := 0; oy < oh; oy++ {
					y := oy*stride[0] - pads[0] + ky*dil[0]
					row := dst[oy*ow : (oy+1)*ow]
					if y < 0 || y >= h {
						clear(row)
						continue
					}
					src := plane[y*w : (y+1)*w]
					x0 := kx*dil[1] - pads[1]
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
