package onnx

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/hackarena/hackarena/sdk/network"
)

// layer maps a node whose input x (at index xi) is the chain's head.
func (im *importer) layer(n *Node, xi int) error {
	out := n.Outputs[0]
	switch n.OpType {
	case "Identity", "Dropout":
		if mode := im.konst(in(n, 2)); n.OpType == "Dropout" && (im.attrInt("training_mode", 0) != 0 || (mode != nil && mode.len() == 1 && mode.floats()[0] != 0)) {
			return im.unsupported("training_mode is on: the Engine runs inference, where Dropout passes its input on")
		}
		im.advance(out, im.shape)
	case "Cast":
		to := DataType(im.attrInt("to", 0))
		if to != Float && !(im.ids && (to == Int64 || to == Int32)) {
			return im.unsupported("it casts the running tensor to %s; the Engine computes in float", to)
		}
		im.advance(out, im.shape)
	case "Relu", "Sigmoid", "Tanh":
		kind := map[string]string{"Relu": network.ReLU, "Sigmoid": network.Sigmoid, "Tanh": network.Tanh}[n.OpType]
		im.push(network.Layer{Kind: kind}, nil)
		im.advance(out, im.shape)
	case "Softmax", "LogSoftmax":
		return im.softmax(n)
	case "Gemm":
		return im.gemm(n, xi)
	case "MatMul":
		return im.matmul(n, xi)
	case "Add", "Sub", "Mul", "Div":
		return im.arithmetic(n, xi)
	case "Conv":
		return im.conv(n)
	case "MaxPool", "AveragePool":
		return im.pool(n)
	case "GlobalAveragePool":
		if len(im.shape) != 3 {
			return im.unsupported("it pools a %d-D input; the Engine pools [channels, height, width]", len(im.shape)+im.batchOffset())
		}
		c := im.shape[0]
		im.push(network.Layer{Kind: network.GlobalAveragePooling2D}, nil)
		im.shape = []int{c}
		im.reshape(out, []int{c, 1, 1})
	case "Flatten":
		return im.flatten(n)
	case "Reshape":
		return im.reshapeNode(n, xi)
	case "Squeeze", "Unsqueeze":
		return im.squeeze(n)
	case "Gather":
		return im.gather(n, xi)
	case "ReduceMean":
		return im.reduceMean(n)
	case "BatchNormalization":
		return im.batchNorm(n)
	default:
		return im.unsupported("%s is not an operator the Engine has (it has %s)", n.OpType, strings.Join(Ops, ", "))
	}
	return nil
}

func (im *importer) softmax(n *Node) error {
	rank := len(im.shape) + im.batchOffset()
	def := int64(-1)
	if im.opset < 13 {
		def = 1
	}
	a, err := im.axis(int(im.attrInt("axis", def)), rank)
	if err != nil {
		return err
	}
	kind := network.Softmax
	if n.OpType == "LogSoftmax" {
		kind = network.LogSoftmax
	}
	last := len(im.shape) - 1
	if im.opset >= 13 || a == last {
		im.push(network.Layer{Kind: kind, Axis: &a}, nil)
		im.advance(n.Outputs[0], im.shape)
		return nil
	}
	// Before opset 13, the axes from axis on are one: softmax over all
	// their values together.
	shape := im.shape
	flat := append(slices.Clone(shape[:a]), size(shape[a:]))
	im.push(network.Layer{Kind: network.Reshape, Shape: flat}, nil)
	one := len(flat) - 1
	im.push(network.Layer{Kind: kind, Axis: &one}, nil)
	im.push(network.Layer{Kind: network.Reshape, Shape: shape}, nil)
	im.advance(n.Outputs[0], shape)
	return nil
}

// size is a shape's element count, saturating just past the most any
// tensor may hold, so a hostile shape's product never wraps around.
func size(shape []int) int {
	s := 1
	for _, d := range shape {
		if d <= 0 {
			return 0
		}
		if s > (network.MaxElements+1)/d {
			return network.MaxElements + 1
		}
		s *= d
	}
	return min(s, network.MaxElements+1)
}

// dense appends a Dense layer for x·B (B [k, units]) with an optional
// bias [units].
func (im *importer) dense(out string, b []float32, k, units int, bias []float32) error {
	if len(im.shape) == 0 || im.shape[len(im.shape)-1] != k {
		return im.fail("the input %v does not multiply a matrix of %d rows", im.shape, k)
	}
	if bias == nil {
		bias = make([]float32, units)
	}
	im.push(network.Layer{Kind: network.Dense, Units: units}, map[string]*network.Array{
		"kernel": {Shape: []int{k, units}, Data: b},
		"bias":   {Shape: []int{units}, Data: bias},
	})
	im.advance(out, append(slices.Clone(im.shape[:len(im.shape)-1]), units))
	return nil
}

func (im *importer) gemm(n *Node, xi int) error {
	if xi != 0 {
		return im.unsupported("the running tensor is its B: the Engine multiplies it as A by a constant B")
	}
	if im.attrInt("transA", 0) != 0 {
		return im.unsupported("transA = 1 transposes the running tensor")
	}
	if len(im.shape)+im.batchOffset() != 2 {
		return im.fail("A has %d axes, Gemm needs 2", len(im.shape)+im.batchOffset())
	}
	bc := im.konst(in(n, 1))
	if bc == nil || len(bc.shape) != 2 {
		return im.fail("B must be a constant matrix")
	}
	alpha, beta := im.attrFloat("alpha", 1), im.attrFloat("beta", 1)
	k, units := bc.shape[0], bc.shape[1]
	src := bc.floats()
	kernel := make([]float32, len(src))
	trans := im.attrInt("transB", 0) != 0
	if trans {
		units, k = k, units
	}
	for r := 0; r < k; r++ {
		for c := 0; c < units; c++ {
			v := src[r*units+c]
			if trans {
				v = src[c*k+r]
			}
			kernel[r*units+c] = alpha * v
		}
	}
	if err := im.dense(n.Outputs[0], kernel, k, units, nil); err != nil {
		return err
	}
	if name := in(n, 2); name != "" {
		cc := im.konst(name)
		if cc == nil {
			return im.fail("C must be a constant")
		}
		vals := cc.floats()
		scaled := make([]float32, len(vals))
		for i, v := range vals {
			scaled[i] = beta * v
		}
		return im.combine(n.Outputs[0], network.Add, cc.shape, scaled)
	}
	return nil
}

func (im *importer) matmul(n *Node, xi int) error {
	if xi != 0 {
		return im.unsupported("the running tensor is its second operand: the Engine multiplies it by a constant on the right")
	}
	bc := im.konst(in(n, 1))
	switch {
	case bc == nil:
		return im.fail("B must be a constant")
	case len(bc.shape) == 2:
		return im.dense(n.Outputs[0], bc.floats(), bc.shape[0], bc.shape[1], nil)
	case len(bc.shape) == 1:
		if err := im.dense(n.Outputs[0], bc.floats(), bc.shape[0], 1, nil); err != nil {
			return err
		}
		shape := im.shape[:len(im.shape)-1]
		if len(shape) == 0 {
			return im.unsupported("a vector times a vector leaves no axis for the batch")
		}
		im.reshape(n.Outputs[0], slices.Clone(shape))
		return nil
	}
	return im.unsupported("B has %d axes: the Engine multiplies by a matrix, not a batch of them", len(bc.shape))
}

// combine appends an Add or Multiply of a constant shaped vshape (ONNX's
// full rank, broadcasting with the chain's tensor), refusing one that
// varies along the batch or would grow the tensor.
func (im *importer) combine(out string, kind string, vshape []int, vals []float32) error {
	full := im.full()
	if len(vshape) > len(full) {
		return im.unsupported("the constant %v has more axes than the running tensor %v", vshape, full)
	}
	pad := len(full) - len(vshape)
	v := vshape
	if !im.opts.OneExample && pad == 0 {
		if vshape[0] != 1 {
			return im.unsupported("the constant %v varies along the batch axis", vshape)
		}
		v = vshape[1:]
	}
	if !network.Broadcasts(v, im.shape) {
		return im.unsupported("the constant %v does not broadcast to the running tensor %v without growing it", vshape, full)
	}
	if len(v) == 0 {
		v = []int{1}
	}
	im.push(network.Layer{Kind: kind, Shape: slices.Clone(v)}, map[string]*network.Array{"value": {Shape: slices.Clone(v), Data: vals}})
	im.advance(out, im.shape)
	return nil
}

func (im *importer) arithmetic(n *Node, xi int) error {
	c := im.konst(in(n, 1-xi))
	if c == nil {
		return im.fail("the other operand must be a constant")
	}
	vals := slices.Clone(c.floats())
	out := n.Outputs[0]
	switch {
	case n.OpType == "Add":
		return im.combine(out, network.Add, c.shape, vals)
	case n.OpType == "Mul":
		return im.combine(out, network.Multiply, c.shape, vals)
	case n.OpType == "Sub" && xi == 0:
		for i := range vals {
			vals[i] = -vals[i]
		}
		return im.combine(out, network.Add, c.shape, vals)
	case n.OpType == "Sub":
		if err := im.combine(out, network.Multiply, []int{1}, []float32{-1}); err != nil {
			return err
		}
		return im.combine(out, network.Add, c.shape, vals)
	case xi == 0:
		for i, v := range vals {
			vals[i] = 1 / v
		}
		return im.combine(out, network.Multiply, c.shape, vals)
	}
	return im.unsupported("it divides by the running tensor; the Engine divides only by constants")
}

// spatial reads the window options a Conv or pooling shares.
func (im *importer) spatial(k []int) (pads, strides, dil []int, err error) {
	if len(im.shape) != 3 {
		return nil, nil, nil, im.unsupported("its input has %d axes: the Engine convolves and pools 2-D images, [batch, channels, height, width]", len(im.shape)+im.batchOffset())
	}
	if strides, _, err = im.attrInts("strides"); err != nil {
		return
	}
	if dil, _, err = im.attrInts("dilations"); err != nil {
		return
	}
	if pads, _, err = im.attrInts("pads"); err != nil {
		return
	}
	if strides == nil {
		strides = []int{1, 1}
	}
	if dil == nil {
		dil = []int{1, 1}
	}
	if len(strides) != 2 || len(dil) != 2 || (pads != nil && len(pads) != 4) {
		return nil, nil, nil, im.fail("strides %v, dilations %v, pads %v: a 2-D window needs two, two and four", strides, dil, pads)
	}
	// ONNX orders pads [top, left, bottom, right], as the layers do.
	if pads == nil {
		pads = []int{0, 0, 0, 0}
	}
	switch p, _ := im.node.Attr("auto_pad"); {
	case p == nil || string(p.S) == "NOTSET" || string(p.S) == "VALID" || string(p.S) == "":
	case string(p.S) == "SAME_UPPER" || string(p.S) == "SAME_LOWER":
		for a := 0; a < 2; a++ {
			if strides[a] <= 0 || strides[a] > network.MaxElements {
				return nil, nil, nil, im.fail("strides %v must be > 0", strides)
			}
			outSize := (im.shape[1+a] + strides[a] - 1) / strides[a]
			total := max((outSize-1)*strides[a]+(k[a]-1)*dil[a]+1-im.shape[1+a], 0)
			small, big := total/2, total-total/2
			if string(p.S) == "SAME_LOWER" {
				small, big = big, small
			}
			pads[a], pads[a+2] = small, big
		}
	default:
		return nil, nil, nil, im.fail("auto_pad %q is not NOTSET, SAME_UPPER, SAME_LOWER or VALID", p.S)
	}
	return pads, strides, dil, nil
}

func (im *importer) conv(n *Node) error {
	if g := im.attrInt("group", 1); g != 1 {
		return im.unsupported("group = %d: the Engine's convolutions are not grouped (group 1)", g)
	}
	w := im.konst(in(n, 1))
	if w == nil || len(w.shape) != 4 {
		return im.unsupported("the kernel must be a constant [filters, channels, h, w] (a 2-D convolution)")
	}
	k := w.shape[2:]
	pads, strides, dil, err := im.spatial(k)
	if err != nil {
		return err
	}
	if ks, ok, err := im.attrInts("kernel_shape"); err != nil {
		return im.fail("%v", err)
	} else if ok && !slices.Equal(ks, k) {
		return im.fail("kernel_shape %v differs from the kernel's %v", ks, k)
	}
	if w.shape[1] != im.shape[0] {
		return im.fail("the kernel reads %d channels, the input has %d", w.shape[1], im.shape[0])
	}
	filters := w.shape[0]
	bias := make([]float32, filters)
	if b := in(n, 2); b != "" {
		bc := im.konst(b)
		if bc == nil || len(bc.floats()) != filters {
			return im.fail("the bias must be a constant of %d values", filters)
		}
		bias = slices.Clone(bc.floats())
	}
	l := network.Layer{Kind: network.Conv2D, Filters: filters, Kernel: slices.Clone(k), Stride: strides, Pads: pads, Dilation: dil}
	return im.spatialLayer(n, l, map[string]*network.Array{
		"kernel": {Shape: slices.Clone(w.shape), Data: w.floats()},
		"bias":   {Shape: []int{filters}, Data: bias},
	})
}

// spatialLayer checks l on the chain's shape and appends it.
func (im *importer) spatialLayer(n *Node, l network.Layer, w map[string]*network.Array) error {
	net := network.Network{Input: im.shape, Layers: []network.Layer{l}}
	shapes, err := net.Shapes()
	if err != nil {
		return im.fail("%v", err)
	}
	im.push(l, w)
	im.advance(n.Outputs[0], shapes[0])
	return nil
}

func (im *importer) pool(n *Node) error {
	k, ok, err := im.attrInts("kernel_shape")
	if err != nil {
		return im.fail("%v", err)
	}
	if !ok || len(k) != 2 {
		return im.unsupported("kernel_shape %v: the Engine pools 2-D windows", k)
	}
	pads, strides, dil, err := im.spatial(k)
	if err != nil {
		return err
	}
	if im.attrInt("storage_order", 0) != 0 {
		return im.unsupported("storage_order = 1 (column major)")
	}
	l := network.Layer{Kind: network.MaxPool2D, Pool: k, Stride: strides, CeilMode: im.attrInt("ceil_mode", 0) != 0}
	if n.OpType == "AveragePool" {
		l.Kind = network.AveragePool2D
		l.CountIncludePad = im.attrInt("count_include_pad", 0) != 0
	}
	if slices.ContainsFunc(pads, func(p int) bool { return p != 0 }) {
		l.Pads = pads
	}
	if dil[0] != 1 || dil[1] != 1 {
		l.Dilation = dil
	}
	if l.Kind == network.MaxPool2D && len(l.Pads) == 0 && len(l.Dilation) == 0 && !l.CeilMode && slices.Equal(strides, k) {
		l.Stride = nil // our own format's pooling, and its speed
	}
	return im.spatialLayer(n, l, nil)
}

func (im *importer) flatten(n *Node) error {
	full := im.full()
	a := int(im.attrInt("axis", 1))
	if a < 0 {
		a += len(full)
	}
	if a < 0 || a > len(full) {
		return im.fail("axis %d is not one of the input's %d axes", a, len(full))
	}
	if im.opts.OneExample {
		im.reshape(n.Outputs[0], []int{size(full[:a]), size(full[a:])})
		return nil
	}
	if a != 1 {
		return im.unsupported("axis = %d merges the batch axis with others; flatten from axis 1", a)
	}
	im.reshape(n.Outputs[0], []int{size(im.shape)})
	return nil
}

func (im *importer) reshapeNode(n *Node, xi int) error {
	if xi != 0 {
		return im.fail("the shape must be a constant")
	}
	c := im.konst(in(n, 1))
	if c == nil {
		return im.unsupported("its shape is computed from values, not only from shapes")
	}
	target, ok := c.ints()
	if !ok {
		return im.fail("the shape is not integers")
	}
	full := im.full()
	allowZero := im.attrInt("allowzero", 0) != 0
	dims := make([]int, len(target))
	infer := -1
	for i, t := range target {
		switch {
		case t == batchDim:
			if i != 0 {
				return im.unsupported("it moves the batch axis")
			}
			dims[i] = 1
		case t == 0 && !allowZero:
			if i >= len(full) {
				return im.fail("0 at axis %d copies an axis the input does not have", i)
			}
			dims[i] = full[i]
		case t == -1:
			if infer >= 0 {
				return im.fail("the shape %v has two -1", target)
			}
			infer = i
			dims[i] = 1
		case t <= 0 || t > network.MaxElements:
			return im.fail("the shape %v has %d", target, t)
		default:
			dims[i] = int(t)
		}
	}
	batchFirst := !im.opts.OneExample
	if batchFirst {
		switch t := target[0]; {
		case t == batchDim || (t == 0 && !allowZero) || (t == -1 && infer == 0):
		case im.declaredBatch > 0 && t == im.declaredBatch:
			dims[0] = 1 // an export with a fixed batch: that axis is the batch
		default:
			return im.unsupported("the shape %v does not keep the batch axis first", target)
		}
		if infer == 0 {
			infer = -1
		}
	}
	known := size(dims)
	if known <= 0 {
		return im.fail("the shape %v has no values", target)
	}
	total := size(full)
	if infer >= 0 {
		if total%known != 0 {
			return im.fail("the shape %v cannot hold the input's %d values", target, total)
		}
		dims[infer] = total / known
	}
	if size(dims) != total {
		return im.fail("the shape %v holds %d values, the input %v has %d", target, size(dims), full, total)
	}
	if batchFirst {
		dims = dims[1:]
	}
	if len(dims) == 0 {
		dims = []int{1}
	}
	im.reshape(n.Outputs[0], dims)
	return nil
}

// axesOf reads a node's axes: the attribute before opset 13 (18 for
// ReduceMean), else the second input.
func (im *importer) axesOf(n *Node, inputFrom int64) ([]int, bool, error) {
	if im.opset < inputFrom {
		return im.attrInts("axes")
	}
	name := in(n, 1)
	if name == "" {
		return nil, false, nil
	}
	c := im.konst(name)
	if c == nil {
		return nil, true, fmt.Errorf("its axes must be a constant")
	}
	xs, ok := c.ints()
	if !ok {
		return nil, true, fmt.Errorf("its axes are not integers")
	}
	a, err := smallInts(xs)
	return a, true, err
}

func (im *importer) squeeze(n *Node) error {
	axes, given, err := im.axesOf(n, 13)
	if err != nil {
		return im.fail("%v", err)
	}
	out, mark, err := squeezeShape(n.OpType, im.full(), axes, given, im.batchOffset())
	if err != nil {
		return im.fail("%v", err)
	}
	if im.batchOffset() == 1 && mark[0] {
		return im.unsupported("it would remove or move the batch axis")
	}
	out = out[im.batchOffset():]
	if len(out) == 0 {
		out = []int{1}
	}
	im.reshape(n.Outputs[0], out)
	return nil
}

// squeezeShape is the shape Squeeze or Unsqueeze (op) gives a tensor
// shaped full, and which axes it marks: of the result for Unsqueeze, of
// full for Squeeze. A Squeeze without axes (given false) drops every axis
// of size 1 from keepFrom on.
func squeezeShape(op string, full, axes []int, given bool, keepFrom int) ([]int, []bool, error) {
	rank := len(full)
	if op == "Unsqueeze" {
		rank += len(axes)
	}
	mark := make([]bool, rank)
	for _, a := range axes {
		if a < 0 {
			a += rank
		}
		if a < 0 || a >= rank || mark[a] {
			return nil, nil, fmt.Errorf("axes %v do not fit %d axes", axes, rank)
		}
		if op == "Squeeze" && full[a] != 1 {
			return nil, nil, fmt.Errorf("axis %d of %v is not of size 1", a, full)
		}
		mark[a] = true
	}
	if !given && op == "Squeeze" {
		for i, d := range full {
			mark[i] = d == 1 && i >= keepFrom
		}
	}
	var out []int
	for i, j := 0, 0; i < rank; i++ {
		switch {
		case op == "Unsqueeze" && mark[i]:
			out = append(out, 1)
		case op == "Unsqueeze":
			out = append(out, full[j])
			j++
		case !mark[i]:
			out = append(out, full[i])
		}
	}
	return out, mark, nil
}

func (im *importer) gather(n *Node, xi int) error {
	if xi != 1 {
		return im.unsupported("it gathers from the running tensor; the Engine gathers rows of a constant (an embedding)")
	}
	data := im.konst(in(n, 0))
	if data == nil || len(data.shape) == 0 || im.attrInt("axis", 0) != 0 {
		return im.unsupported("the Engine gathers along axis 0 of a constant (an embedding's rows)")
	}
	if len(im.steps) != 0 || !im.ids {
		return im.unsupported("the Engine looks token ids up first, straight from the input")
	}
	// A table of any rank is rows of its other axes' values together.
	vocab, rest := data.shape[0], data.shape[1:]
	dim := size(rest)
	im.push(network.Layer{Kind: network.Embedding, InputDim: vocab, OutputDim: dim}, map[string]*network.Array{
		"embeddings": {Shape: []int{vocab, dim}, Data: data.floats()},
	})
	im.advance(n.Outputs[0], append(slices.Clone(im.shape), dim))
	if len(rest) != 1 {
		im.reshape(n.Outputs[0], append(slices.Clone(im.shape[:len(im.shape)-1]), rest...))
	}
	return nil
}

func (im *importer) reduceMean(n *Node) error {
	axes, _, err := im.axesOf(n, 18)
	if err != nil {
		return im.fail("%v", err)
	}
	rank := len(im.shape) + im.batchOffset()
	if len(axes) == 0 {
		if im.opset >= 18 && im.attrInt("noop_with_empty_axes", 0) != 0 {
			im.advance(n.Outputs[0], im.shape)
			return nil
		}
		for a := 0; a < rank; a++ {
			axes = append(axes, a)
		}
	}
	per := make([]int, len(axes))
	for i, a := range axes {
		if per[i], err = im.axis(a, rank); err != nil {
			return err
		}
	}
	slices.Sort(per)
	l := network.Layer{Kind: network.ReduceMean, Axes: per, KeepDims: im.attrInt("keepdims", 1) != 0}
	return im.spatialLayer(n, l, nil)
}

func (im *importer) batchNorm(n *Node) error {
	if im.attrInt("training_mode", 0) != 0 {
		return im.unsupported("training_mode = 1")
	}
	ch := 1 - im.batchOffset() // ONNX's channel axis is the second
	if len(im.shape) <= ch {
		return im.fail("the input has no channel axis")
	}
	c := im.shape[ch]
	var p [4][]float32
	for i := range p {
		k := im.konst(in(n, i+1))
		if k == nil || len(k.floats()) != c {
			return im.fail("scale, bias, mean and variance must be constants of %d values", c)
		}
		p[i] = k.floats()
	}
	eps := float64(im.attrFloat("epsilon", 1e-5))
	scale, shift := make([]float32, c), make([]float32, c)
	for j := 0; j < c; j++ {
		s := float64(p[0][j]) / math.Sqrt(float64(p[3][j])+eps)
		scale[j], shift[j] = float32(s), float32(float64(p[1][j])-float64(p[2][j])*s)
	}
	full := ones(len(im.shape) + im.batchOffset())
	full[1] = c
	out := n.Outputs[0]
	if err := im.combine(out, network.Multiply, full, scale); err != nil {
		return err
	}
	return im.combine(out, network.Add, full, shift)
}

func ones(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = 1
	}
	return out
}
