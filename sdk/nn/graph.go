// Package nn trains and runs the networks of sdk/network with gorgonia:
// Adam or SGD, cross-entropy or MSE losses, mini-batches, a validation
// split, early stopping and a Keras-like progress line per epoch. The
// judge's Engine runs inference with the same graphs.
package nn

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync/atomic"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/hackarena/hackarena/sdk/network"
)

// graph is a network compiled for one batch size.
type graph struct {
	net   *network.Network
	batch int
	g     *G.ExprGraph
	// x is float32 [batch, input...], or int [batch*steps] when the first
	// layer is an Embedding.
	x      *G.Node
	ids    bool
	out    *G.Node
	logits *G.Node // input of a final softmax/sigmoid, for stable losses
	final  string  // "softmax", "sigmoid" or ""
	params []*G.Node
	names  []string
	mode   mode
	masks  []*dropMask
	// rescale is a leading Rescaling layer, applied while the input is
	// copied in: as a graph op it cost a tensor allocation and a pass per
	// batch (4.5 ms of a 1000-image MLP batch's 12).
	rescale *network.Layer
	scaled  []float32
	// ctx is the context of the batch being run (inference only): every
	// layer ends with a checkpoint that reads it.
	ctx atomic.Pointer[context.Context]
}

// dropMask is our dropout: gorgonia 0.9.18's Dropout op scales the
// gradient by 1/p instead of 1/(1-p) (5.0 instead of 1.25 at p = 0.2), so
// dropout is a product with a mask input of 0 or 1/(1-p), drawn per batch.
type dropMask struct {
	node *G.Node
	rate float64
	data []float32
}

// mode is what a graph is compiled for.
type mode int

const (
	forInference mode = iota
	// forTraining uses the training ops where a layer has one.
	forTraining
	// forPlainTraining uses gorgonia's own ops only: the reference the
	// training ops are tested against.
	forPlainTraining
)

func compile(net *network.Network, w network.Weights, batch int, m mode) (*graph, error) {
	train := m != forInference
	shapes, err := net.Shapes()
	if err != nil {
		return nil, err
	}
	if err := net.CheckWeights(w); err != nil {
		return nil, err
	}
	gr := &graph{net: net, batch: batch, g: G.NewGraph(), mode: m}
	gr.ids = net.Layers[0].Kind == network.Embedding
	if gr.ids {
		gr.x = G.NewVector(gr.g, tensor.Int, G.WithShape(batch*size(net.Input)), G.WithName("x"))
	} else {
		gr.x = G.NewTensor(gr.g, tensor.Float32, len(net.Input)+1, G.WithShape(append([]int{batch}, net.Input...)...), G.WithName("x"))
	}
	param := func(name string) *G.Node {
		a := w[name]
		// The node reads the weights' own slice: training updates them in
		// place and inference sees the current values.
		t := tensor.New(tensor.WithShape(a.Shape...), tensor.WithBacking(a.Data))
		n := G.NodeFromAny(gr.g, t, G.WithName(name))
		gr.params = append(gr.params, n)
		gr.names = append(gr.names, name)
		return n
	}
	h := gr.x
	in := net.Input
	last := len(net.Layers) - 1
	// trained says whether anything trainable comes before the layer: the
	// first one's input needs no gradient.
	trained := false
	for i, l := range net.Layers {
		name := net.LayerName(i)
		bshape := append([]int{batch}, shapes[i]...)
		var err error
		// Inference runs a Dense layer, activation included, as one op;
		// training does a Dense or convolution layer as one op, with the
		// activation unless the loss needs what comes before it (or its
		// derivative is not one the op has).
		opAct := l.Activation
		if i == last && (opAct == "softmax" || opAct == "sigmoid") {
			opAct = "linear"
		}
		withOp := (l.Kind == network.Dense && !train) ||
			(m == forTraining && (l.Kind == network.Dense || l.Kind == network.Conv2D))
		if train && !trainActivation(opAct) {
			opAct = "linear"
		}
		fused := withOp && (!train || opAct == l.Activation || (opAct == "linear" && l.Activation == ""))
		if train && l.InferenceOnly() {
			return nil, fmt.Errorf("layer %d (%s %q) runs in the Engine but has no gradient to train with", i, l.Kind, name)
		}
		switch l.Kind {
		case network.Dense:
			// On more than one axis, the leading ones are rows of one matrix.
			flat := h
			if len(in) > 1 {
				if flat, err = G.Reshape(h, tensor.Shape{batch * size(in[:len(in)-1]), in[len(in)-1]}); err != nil {
					break
				}
			}
			switch {
			case withOp && !train:
				h, err = dense(flat, param(name+".kernel"), param(name+".bias"), l.Activation)
			case withOp:
				h, err = trainDense(flat, param(name+".kernel"), param(name+".bias"), opAct, trained)
			default:
				h, err = G.Mul(flat, param(name+".kernel"))
				if err == nil {
					h, err = addBias(h, param(name+".bias"), []int{1, l.Units}, []byte{0})
				}
			}
			if err == nil && len(in) > 1 {
				h, err = G.Reshape(h, tensor.Shape(bshape))
			}
		case network.Conv2D:
			pads := l.Padding4()
			if withOp {
				geo := convGeometry{c: in[0], h: in[1], w: in[2], f: l.Filters, kh: l.Kernel[0], kw: l.Kernel[1],
					oh: shapes[i][1], ow: shapes[i][2], stride: l.Strides(), pads: pads, dil: l.Dilations()}
				h, err = trainConv(h, param(name+".kernel"), param(name+".bias"), geo, opAct, trained)
				break
			}
			if pads[0] != pads[2] || pads[1] != pads[3] {
				if h, err = zeroPad2d(h, append([]int{batch}, in...), pads); err != nil {
					break
				}
				pads = []int{0, 0, 0, 0}
			}
			h, err = G.Conv2d(h, param(name+".kernel"), tensor.Shape(l.Kernel), pads[:2], l.Strides(), l.Dilations())
			if err != nil {
				break
			}
			h, err = addBias(h, param(name+".bias"), []int{1, l.Filters, 1, 1}, []byte{0, 2, 3})
		case network.MaxPool2D, network.AveragePool2D:
			if l.Kind == network.MaxPool2D && !l.InferenceOnly() {
				if m == forTraining {
					h, err = trainMaxPool(h, l.Pool, l.Strides(), bshape, trained)
				} else {
					h, err = G.MaxPool2D(h, tensor.Shape(l.Pool), []int{0, 0}, l.Strides())
				}
				break
			}
			h, err = pool2d(h, l.Kind == network.MaxPool2D, append([]int{batch}, in...), bshape, l.Pool, l.Strides(), l.Padding4(), l.Dilations(), l.CountIncludePad)
		case network.GlobalAveragePooling2D:
			// gorgonia's Mean over two axes at once averages the wrong
			// values past the first channel: one axis of h·w instead.
			if h, err = G.Reshape(h, tensor.Shape{batch, in[0], in[1] * in[2]}); err == nil {
				h, err = G.Mean(h, 2)
			}
		case network.ReduceMean:
			// One axis at a time, the last first, for the same reason.
			axes := slices.Clone(l.Axes)
			slices.Sort(axes)
			for j := len(axes) - 1; j >= 0 && err == nil; j-- {
				h, err = G.Mean(h, axes[j]+1)
			}
			if err == nil {
				h, err = G.Reshape(h, tensor.Shape(bshape))
			}
		case network.Add, network.Multiply:
			h, err = combine(h, param(name+".value"), l.Kind, batch, in)
		case network.Softmax, network.LogSoftmax:
			axis := len(in) - 1
			if l.Axis != nil {
				axis = (*l.Axis + len(in)) % len(in)
			}
			if l.Kind == network.Softmax && i == last && axis == len(in)-1 {
				gr.logits, gr.final = h, "softmax"
			}
			if l.Kind == network.Softmax {
				h, err = G.SoftMax(h, axis+1)
			} else {
				h, err = G.LogSoftMax(h, axis+1)
			}
		case network.Flatten, network.Reshape:
			h, err = G.Reshape(h, tensor.Shape(bshape))
		case network.Embedding:
			if h, err = G.ByIndices(param(name+".embeddings"), h, 0); err != nil {
				break
			}
			h, err = G.Reshape(h, tensor.Shape(bshape))
		case network.Rescaling:
			if i == 0 && !gr.ids {
				gr.rescale = &net.Layers[0]
				break
			}
			if h, err = G.Mul(h, G.NewConstant(float32(l.Scale))); err == nil && l.Offset != 0 {
				h, err = G.Add(h, G.NewConstant(float32(l.Offset)))
			}
		case network.GlobalAveragePooling1D:
			h, err = G.Mean(h, 1)
		case network.Dropout:
			if train && l.Rate > 0 {
				m := &dropMask{rate: l.Rate, data: make([]float32, size(bshape))}
				m.node = G.NewTensor(gr.g, tensor.Float32, len(bshape), G.WithShape(bshape...), G.WithName(name+".mask"))
				gr.masks = append(gr.masks, m)
				h, err = G.HadamardProd(h, m.node)
			}
		case network.ReLU, network.Sigmoid, network.Tanh:
			if i == last && l.Kind == network.Sigmoid {
				gr.logits, gr.final = h, activationOf(l.Kind)
			}
			h, err = activate(h, activationOf(l.Kind))
		}
		if err == nil && !fused && l.Activation != "" && l.Activation != "linear" {
			// What the op left out: the output's softmax or sigmoid, or an
			// activation it has no derivative for.
			if i == last && (l.Activation == "softmax" || l.Activation == "sigmoid") {
				gr.logits, gr.final = h, l.Activation
			}
			h, err = activate(h, l.Activation)
		}
		if err == nil && !train && i < last {
			h, err = checkpoint(h, &gr.ctx)
		}
		if err != nil {
			return nil, fmt.Errorf("build layer %d (%s %q) on input %v: %w", i, l.Kind, name, in, err)
		}
		in = shapes[i]
		trained = trained || len(gr.params) > 0
	}
	gr.out = h
	return gr, nil
}

func activationOf(kind string) string {
	switch kind {
	case network.ReLU:
		return "relu"
	case network.Sigmoid:
		return "sigmoid"
	case network.Tanh:
		return "tanh"
	}
	return "softmax"
}

func activate(h *G.Node, act string) (*G.Node, error) {
	switch act {
	case "relu":
		return G.Rectify(h)
	case "sigmoid":
		return G.Sigmoid(h)
	case "tanh":
		return G.Tanh(h)
	case "softmax":
		return G.SoftMax(h)
	}
	return h, nil
}

// combine adds or multiplies h [batch, in...] with a value whose shape
// broadcasts to one example's: the value is given the input's rank, and
// gorgonia repeats it along the batch and along its axes of size 1.
func combine(h, value *G.Node, kind string, batch int, in []int) (*G.Node, error) {
	vs := value.Shape()
	shape := make([]int, len(in)+1)
	for i := range shape {
		shape[i] = 1
	}
	copy(shape[len(shape)-len(vs):], vs)
	var pattern []byte
	full := append([]int{batch}, in...)
	for i, d := range shape {
		if d == 1 && full[i] != 1 {
			pattern = append(pattern, byte(i))
		}
	}
	v, err := G.Reshape(value, tensor.Shape(shape))
	if err != nil {
		return nil, err
	}
	switch {
	case kind == network.Add && len(pattern) == 0:
		return G.Add(h, v)
	case kind == network.Add:
		return G.BroadcastAdd(h, v, nil, pattern)
	case len(pattern) == 0:
		return G.HadamardProd(h, v)
	}
	return G.BroadcastHadamardProd(h, v, nil, pattern)
}

func addBias(h, bias *G.Node, shape []int, broadcast []byte) (*G.Node, error) {
	b, err := G.Reshape(bias, tensor.Shape(shape))
	if err != nil {
		return nil, err
	}
	return G.BroadcastAdd(h, b, nil, broadcast)
}

func size(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// setInput binds a batch: x holds batch × input values; token ids must be
// whole numbers inside the vocabulary.
func (gr *graph) setInput(x []float32) error {
	want := gr.batch * size(gr.net.Input)
	if len(x) != want {
		return fmt.Errorf("input has %d values, a batch of %d examples shaped %v needs %d", len(x), gr.batch, gr.net.Input, want)
	}
	if gr.ids {
		vocab := gr.net.Layers[0].InputDim
		ids := make([]int, len(x))
		for i, v := range x {
			if v < 0 || int(v) >= vocab || float32(math.Trunc(float64(v))) != v {
				return fmt.Errorf("token id %v at position %d is not a whole number in [0, %d)", v, i, vocab)
			}
			ids[i] = int(v)
		}
		return G.Let(gr.x, tensor.New(tensor.WithShape(len(ids)), tensor.WithBacking(ids)))
	}
	if gr.rescale != nil {
		if gr.scaled == nil {
			gr.scaled = make([]float32, len(x))
		}
		scale, offset := float32(gr.rescale.Scale), float32(gr.rescale.Offset)
		for i, v := range x {
			gr.scaled[i] = v*scale + offset
		}
		x = gr.scaled
	}
	return G.Let(gr.x, tensor.New(tensor.WithShape(gr.x.Shape()...), tensor.WithBacking(x)))
}

// outputSize is the number of values one example's output has.
func outputSize(net *network.Network) int {
	shapes, err := net.Shapes()
	if err != nil {
		return 0
	}
	return size(shapes[len(shapes)-1])
}

// Inference runs a network on batches of one size. It is not safe for
// concurrent use.
type Inference struct {
	// plan, when the network has one; else the graph and its machine.
	plan *plan
	gr   *graph
	vm   G.VM
}

// NewInference compiles net with weights w for batches of batch examples.
// The weights are read, not copied: do not change them while it runs.
func NewInference(net *network.Network, w network.Weights, batch int) (*Inference, error) {
	if batch <= 0 {
		return nil, fmt.Errorf("batch size %d must be > 0", batch)
	}
	if err := net.CheckWeights(w); err != nil {
		return nil, err
	}
	net, w = foldRescaling(net, w)
	if p, err := newPlan(net, w, batch); err == nil {
		return &Inference{plan: p}, nil
	} else if !errors.Is(err, errNoPlan) {
		return nil, err
	}
	return newGraphInference(net, w, batch)
}

// newGraphInference compiles net on gorgonia's graph, for the layers a
// plan does not have.
func newGraphInference(net *network.Network, w network.Weights, batch int) (*Inference, error) {
	gr, err := compile(net, w, batch, forInference)
	if err != nil {
		return nil, err
	}
	return &Inference{gr: gr, vm: G.NewTapeMachine(gr.g)}, nil
}

// foldRescaling moves a leading Rescaling into the layer after it, for
// inference: (x·s + o)·W + b is x·(s·W) + (b + o·ΣW), so the pass over
// every input value (8 ms of a 36 ms MNIST batch run) disappears. A
// convolution that pads keeps it when there is an offset: its zero
// padding would stand for x = 0, not for a rescaled 0. The weights of the folded layer are
// new arrays; the rest are shared.
func foldRescaling(net *network.Network, w network.Weights) (*network.Network, network.Weights) {
	if len(net.Layers) < 2 || net.Layers[0].Kind != network.Rescaling {
		return net, w
	}
	next := net.Layers[1]
	if next.Kind != network.Dense && (next.Kind != network.Conv2D || (padded(next) && net.Layers[0].Offset != 0)) {
		return net, w
	}
	scale, offset := float32(net.Layers[0].Scale), float32(net.Layers[0].Offset)
	folded := &network.Network{Input: net.Input}
	for i := 1; i < len(net.Layers); i++ {
		l := net.Layers[i]
		l.Name = net.LayerName(i) // the names the weights carry
		folded.Layers = append(folded.Layers, l)
	}
	name := net.LayerName(1)
	kernel, bias := w[name+".kernel"], w[name+".bias"]
	k := &network.Array{Shape: kernel.Shape, Data: make([]float32, len(kernel.Data))}
	b := &network.Array{Shape: bias.Shape, Data: append([]float32(nil), bias.Data...)}
	for i, v := range kernel.Data {
		k.Data[i] = v * scale
	}
	if offset != 0 {
		units := len(bias.Data)
		for i, v := range kernel.Data {
			// Dense [in, out]: the unit is the column; Conv2D [f, ...]:
			// the filter is the leading index.
			u := i % units
			if next.Kind == network.Conv2D {
				u = i / (len(kernel.Data) / units)
			}
			b.Data[u] += offset * v
		}
	}
	fw := network.Weights{}
	for n, a := range w {
		fw[n] = a
	}
	fw[name+".kernel"], fw[name+".bias"] = k, b
	return folded, fw
}

// padded reports whether a convolution pads its input with zeros.
func padded(l network.Layer) bool {
	return slices.ContainsFunc(l.Padding4(), func(p int) bool { return p != 0 })
}

// Run computes the outputs of one batch: batch × output-size values.
func (inf *Inference) Run(x []float32) ([]float32, error) {
	return inf.RunContext(context.Background(), x)
}

// RunContext is Run that stops at the next layer boundary once ctx ends,
// returning ctx's error.
func (inf *Inference) RunContext(ctx context.Context, x []float32) ([]float32, error) {
	if inf.plan != nil {
		return inf.plan.run(ctx, x)
	}
	defer inf.vm.Reset()
	inf.gr.ctx.Store(&ctx)
	defer inf.gr.ctx.Store(nil)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := inf.gr.setInput(x); err != nil {
		return nil, err
	}
	if err := inf.vm.RunAll(); err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, fmt.Errorf("run network: stopped between layers: %w", ctxErr)
		}
		return nil, fmt.Errorf("run network: %w", err)
	}
	data, ok := inf.gr.out.Value().Data().([]float32)
	if !ok {
		return nil, fmt.Errorf("run network: output is %T, not float32", inf.gr.out.Value().Data())
	}
	return append([]float32(nil), data...), nil
}

// Close frees the compiled graph.
func (inf *Inference) Close() {
	if inf.vm != nil {
		inf.vm.Close()
	}
}
