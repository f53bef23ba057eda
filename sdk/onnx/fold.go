package onnx

import (
	"fmt"
	"slices"
	"strings"

	"github.com/hackarena/hackarena/sdk/network"
)

// constantOf reads a tensor's values: floats for the float types, integers
// for the integer ones.
func constantOf(t *Tensor) (*constant, error) {
	shape, err := smallInts(t.Dims)
	if err != nil {
		return nil, err
	}
	for _, d := range shape {
		if d < 0 {
			return nil, fmt.Errorf("dims %v has a negative axis", t.Dims)
		}
	}
	c := &constant{shape: shape}
	switch t.DataType {
	case Int64, Int32, Int8, Uint8, Bool:
		if t.DataType == Int64 || t.DataType == Int32 {
			c.i, err = t.IntValues()
		} else {
			var f []float32
			f, err = t.FloatValues()
			c.i = make([]int64, len(f))
			for j, v := range f {
				c.i[j] = int64(v)
			}
		}
		c.isInt = true
	default:
		c.f, err = t.FloatValues()
	}
	if err != nil {
		return nil, err
	}
	if n := int64(len(c.f) + len(c.i)); n != t.Elements() {
		return nil, fmt.Errorf("it holds %d values, its dims %v need %d", n, t.Dims, t.Elements())
	}
	return c, nil
}

func (c *constant) len() int { return len(c.f) + len(c.i) }

func (c *constant) hasBatch() bool { return c.isInt && slices.Contains(c.i, batchDim) }

// foldNode computes a node all of whose inputs are constants.
func (im *importer) foldNode(n *Node) (*constant, error) {
	arg := func(i int) (*constant, error) {
		c := im.konst(in(n, i))
		if c == nil {
			return nil, im.fail("input %d is missing", i)
		}
		return c, nil
	}
	switch n.OpType {
	case "Constant":
		return im.constantNode(n)
	case "Identity", "Dropout":
		return arg(0)
	case "Cast":
		x, err := arg(0)
		if err != nil {
			return nil, err
		}
		switch to := DataType(im.attrInt("to", 0)); to {
		case Float, Double:
			if x.hasBatch() {
				return nil, im.unsupported("it computes with the batch size")
			}
			return &constant{shape: x.shape, f: x.floats()}, nil
		case Int64, Int32:
			if x.isInt {
				return x, nil
			}
			out := &constant{shape: x.shape, isInt: true, i: make([]int64, len(x.f))}
			for j, v := range x.f {
				out.i[j] = int64(v)
			}
			return out, nil
		default:
			return nil, im.unsupported("it casts to %s", to)
		}
	case "Shape":
		x, err := arg(0)
		if err != nil {
			return nil, err
		}
		dims := make([]int64, len(x.shape))
		for j, d := range x.shape {
			dims[j] = int64(d)
		}
		start, end := clampRange(int(im.attrInt("start", 0)), len(dims)), clampRange(int(im.attrInt("end", int64(len(dims)))), len(dims))
		if end < start {
			end = start
		}
		return &constant{shape: []int{end - start}, i: dims[start:end], isInt: true}, nil
	case "Gather":
		x, err := arg(0)
		if err != nil {
			return nil, err
		}
		idx, err := arg(1)
		if err != nil {
			return nil, err
		}
		return im.gatherConst(x, idx)
	case "Unsqueeze", "Squeeze", "Reshape", "Flatten":
		x, err := arg(0)
		if err != nil {
			return nil, err
		}
		shape, err := im.constShape(n, x)
		if err != nil {
			return nil, err
		}
		out := *x
		out.shape = shape
		return &out, nil
	case "Concat":
		return im.concat(n)
	case "Add", "Sub", "Mul", "Div":
		a, err := arg(0)
		if err != nil {
			return nil, err
		}
		b, err := arg(1)
		if err != nil {
			return nil, err
		}
		return im.arith(n.OpType, a, b)
	}
	return nil, im.unsupported("%s on constants is not one the importer folds (it folds Constant, Identity, Cast, Shape, Gather, Squeeze, Unsqueeze, Reshape, Flatten, Concat, Add, Sub, Mul, Div)", n.OpType)
}

func (im *importer) constantNode(n *Node) (*constant, error) {
	if len(n.Attributes) != 1 {
		return nil, im.fail("a Constant needs exactly one value attribute")
	}
	a := &n.Attributes[0]
	switch a.Name {
	case "value":
		if a.T == nil {
			return nil, im.fail("value is not a tensor")
		}
		c, err := constantOf(a.T)
		if err != nil {
			return nil, im.fail("value: %v", err)
		}
		return c, nil
	case "value_float":
		return &constant{shape: []int{}, f: []float32{a.F}}, nil
	case "value_floats":
		return &constant{shape: []int{len(a.Floats)}, f: a.Floats}, nil
	case "value_int":
		return &constant{shape: []int{}, i: []int64{a.I}, isInt: true}, nil
	case "value_ints":
		return &constant{shape: []int{len(a.Ints)}, i: a.Ints, isInt: true}, nil
	}
	return nil, im.unsupported("a Constant's %s", a.Name)
}

func (im *importer) gatherConst(x, idx *constant) (*constant, error) {
	ids, ok := idx.ints()
	if !ok || idx.hasBatch() {
		return nil, im.fail("the indices are not integers")
	}
	axis := int(im.attrInt("axis", 0))
	if axis < 0 {
		axis += len(x.shape)
	}
	if axis < 0 || axis >= len(x.shape) {
		return nil, im.fail("axis %d is not one of the data's %d axes", axis, len(x.shape))
	}
	outer, dim, inner := size(x.shape[:axis]), x.shape[axis], size(x.shape[axis+1:])
	shape := append(append(slices.Clone(x.shape[:axis]), idx.shape...), x.shape[axis+1:]...)
	if int64(outer)*int64(len(ids))*int64(inner) > network.MaxElements {
		return nil, im.fail("the result would be larger than any tensor may be")
	}
	out := &constant{shape: shape, isInt: x.isInt}
	for o := 0; o < outer; o++ {
		for _, id := range ids {
			if id < 0 {
				id += int64(dim)
			}
			if id < 0 || id >= int64(dim) {
				return nil, im.fail("index %d is outside the %d rows", id, dim)
			}
			base := (o*dim + int(id)) * inner
			if x.isInt {
				out.i = append(out.i, x.i[base:base+inner]...)
			} else {
				out.f = append(out.f, x.f[base:base+inner]...)
			}
		}
	}
	return out, nil
}

// constShape is the shape Squeeze, Unsqueeze, Reshape or Flatten gives a
// constant.
func (im *importer) constShape(n *Node, x *constant) ([]int, error) {
	switch n.OpType {
	case "Flatten":
		a := int(im.attrInt("axis", 1))
		if a < 0 {
			a += len(x.shape)
		}
		if a < 0 || a > len(x.shape) {
			return nil, im.fail("axis %d does not fit %d axes", a, len(x.shape))
		}
		return []int{size(x.shape[:a]), size(x.shape[a:])}, nil
	case "Reshape":
		c := im.konst(in(n, 1))
		if c == nil {
			return nil, im.fail("the shape must be a constant")
		}
		target, ok := c.ints()
		if !ok || c.hasBatch() {
			return nil, im.unsupported("it reshapes a constant to a shape that holds the batch size")
		}
		dims, infer := make([]int, len(target)), -1
		for i, t := range target {
			switch {
			case t == 0 && im.attrInt("allowzero", 0) == 0 && i < len(x.shape):
				dims[i] = x.shape[i]
			case t == -1 && infer < 0:
				infer, dims[i] = i, 1
			case t <= 0 || t > network.MaxElements:
				return nil, im.fail("the shape %v has %d", target, t)
			default:
				dims[i] = int(t)
			}
		}
		if infer >= 0 && size(dims) > 0 {
			dims[infer] = x.len() / size(dims)
		}
		if size(dims) != x.len() {
			return nil, im.fail("the shape %v does not hold the constant's %d values", target, x.len())
		}
		return dims, nil
	}
	axes, given, err := im.axesOf(n, 13)
	if err != nil {
		return nil, im.fail("%v", err)
	}
	out, _, err := squeezeShape(n.OpType, x.shape, axes, given, 0)
	if err != nil {
		return nil, im.fail("%v", err)
	}
	return out, nil
}

func (im *importer) concat(n *Node) (*constant, error) {
	var parts []*constant
	isInt := true
	for _, name := range n.Inputs {
		c := im.konst(name)
		if c == nil {
			return nil, im.fail("input %q is missing", name)
		}
		parts = append(parts, c)
		isInt = isInt && c.isInt
	}
	if len(parts) == 0 {
		return nil, im.fail("no inputs")
	}
	rank := len(parts[0].shape)
	axis := int(im.attrInt("axis", 0))
	if axis < 0 {
		axis += rank
	}
	if axis < 0 || axis >= rank {
		return nil, im.fail("axis %d does not fit %d axes", axis, rank)
	}
	shape := slices.Clone(parts[0].shape)
	shape[axis] = 0
	for _, p := range parts {
		if len(p.shape) != rank {
			return nil, im.fail("its inputs have different ranks")
		}
		for a := range shape {
			if a != axis && p.shape[a] != shape[a] {
				return nil, im.fail("its inputs differ along axis %d", a)
			}
		}
		shape[axis] += p.shape[axis]
	}
	if size(shape) > network.MaxElements {
		return nil, im.fail("the result would be larger than any tensor may be")
	}
	out := &constant{shape: shape, isInt: isInt}
	outer := size(shape[:axis])
	for o := 0; o < outer; o++ {
		for _, p := range parts {
			chunk := size(p.shape[axis:])
			if isInt {
				out.i = append(out.i, p.i[o*chunk:(o+1)*chunk]...)
			} else {
				out.f = append(out.f, p.floats()[o*chunk:(o+1)*chunk]...)
			}
		}
	}
	return out, nil
}

// arith computes a op b with numpy broadcasting.
func (im *importer) arith(op string, a, b *constant) (*constant, error) {
	if a.hasBatch() || b.hasBatch() {
		return nil, im.unsupported("it computes with the batch size")
	}
	rank := max(len(a.shape), len(b.shape))
	pa, pb := padShape(a.shape, rank), padShape(b.shape, rank)
	shape := make([]int, rank)
	for i := range shape {
		switch {
		case pa[i] == pb[i], pb[i] == 1:
			shape[i] = pa[i]
		case pa[i] == 1:
			shape[i] = pb[i]
		default:
			return nil, im.fail("shapes %v and %v do not broadcast", a.shape, b.shape)
		}
	}
	if size(shape) > network.MaxElements {
		return nil, im.fail("the result would be larger than any tensor may be")
	}
	isInt := a.isInt && b.isInt
	out := &constant{shape: shape, isInt: isInt}
	ai, bi := broadcastIndex(pa, shape), broadcastIndex(pb, shape)
	if isInt {
		out.i = make([]int64, size(shape))
		for j := range out.i {
			x, y := a.i[ai(j)], b.i[bi(j)]
			switch op {
			case "Add":
				out.i[j] = x + y
			case "Sub":
				out.i[j] = x - y
			case "Mul":
				out.i[j] = x * y
			case "Div":
				if y == 0 {
					return nil, im.fail("integer division by zero")
				}
				out.i[j] = x / y
			}
		}
		return out, nil
	}
	af, bf := a.floats(), b.floats()
	out.f = make([]float32, size(shape))
	for j := range out.f {
		x, y := af[ai(j)], bf[bi(j)]
		switch op {
		case "Add":
			out.f[j] = x + y
		case "Sub":
			out.f[j] = x - y
		case "Mul":
			out.f[j] = x * y
		case "Div":
			out.f[j] = x / y
		}
	}
	return out, nil
}

func padShape(s []int, rank int) []int {
	return append(ones(rank-len(s)), s...)
}

// broadcastIndex maps an index of out to one of a tensor shaped s (padded
// to out's rank) that broadcasts to it.
func broadcastIndex(s, out []int) func(int) int {
	return func(j int) int {
		idx, stride := 0, 1
		for a := len(out) - 1; a >= 0; a-- {
			coord := j % out[a]
			j /= out[a]
			if s[a] != 1 {
				idx += coord * stride
			}
			stride *= s[a]
		}
		return idx
	}
}

// expand gives a broadcastable value its full shape.
func expand(v []float32, vshape, shape []int) []float32 {
	pv := padShape(vshape, len(shape))
	at := broadcastIndex(pv, shape)
	out := make([]float32, size(shape))
	for j := range out {
		out[j] = v[at(j)]
	}
	return out
}

// fold simplifies the chain: Reshapes that change nothing go, a bias or
// scale that follows a Dense or Conv2D (and BatchNormalization's pair)
// moves into its weights, an activation into the layer, so a model
// exported from PyTorch runs the same layers as one written for the
// Engine.
func (im *importer) fold() {
	in := im.input0
	var out []step
	shape := in
	for _, s := range im.steps {
		prevShape := shape
		next := outShape(shape, s.layer)
		if len(out) > 0 {
			last := &out[len(out)-1]
			if merge(last, s, prevShape) {
				shape = next
				continue
			}
		}
		if s.layer.Kind == network.Reshape {
			if slices.Equal(s.layer.Shape, shape) {
				continue
			}
			if len(out) > 0 && out[len(out)-1].layer.Kind == network.Reshape {
				out[len(out)-1].layer.Shape = s.layer.Shape
				shape = next
				if slices.Equal(s.layer.Shape, outShapeBefore(in, out[:len(out)-1])) {
					out = out[:len(out)-1]
				}
				continue
			}
		}
		out = append(out, s)
		shape = next
	}
	for i := range out {
		if l := &out[i].layer; l.Kind == network.Reshape && len(l.Shape) == 1 {
			*l = network.Layer{Kind: network.Flatten}
		}
	}
	im.steps = leadingRescaling(out, im.ids)
}

// leadingRescaling turns the scalar products and sums a model starts with
// (x / 255, (x - mean) / std) into one Rescaling, which sdk/nn folds into
// the layer after it: no pass over the input of its own.
func leadingRescaling(steps []step, ids bool) []step {
	scale, offset, n := 1.0, 0.0, 0
	for ; n < len(steps) && !ids; n++ {
		l := steps[n].layer
		if (l.Kind != network.Multiply && l.Kind != network.Add) || size(l.Shape) != 1 {
			break
		}
		v := float64(steps[n].weights["value"].Data[0])
		if l.Kind == network.Multiply {
			scale, offset = scale*v, offset*v
		} else {
			offset += v
		}
	}
	if n == 0 || scale == 0 {
		return steps
	}
	r := step{layer: network.Layer{Kind: network.Rescaling, Scale: scale, Offset: offset}, node: steps[0].node}
	return append([]step{r}, steps[n:]...)
}

func outShape(in []int, l network.Layer) []int {
	net := network.Network{Input: in, Layers: []network.Layer{l}}
	shapes, err := net.Shapes()
	if err != nil {
		return in
	}
	return shapes[0]
}

func outShapeBefore(in []int, steps []step) []int {
	shape := in
	for _, s := range steps {
		shape = outShape(shape, s.layer)
	}
	return shape
}

// merge folds s into last when it can, reporting whether it did. in is
// s's input shape (last's output).
func merge(last *step, s step, in []int) bool {
	l := &last.layer
	canTake := (l.Kind == network.Dense || l.Kind == network.Conv2D) && (l.Activation == "" || l.Activation == "linear")
	switch s.layer.Kind {
	case network.ReLU, network.Sigmoid, network.Tanh:
		if canTake {
			l.Activation = strings.ToLower(map[string]string{network.ReLU: "relu", network.Sigmoid: "sigmoid", network.Tanh: "tanh"}[s.layer.Kind])
			return true
		}
	case network.Softmax:
		if canTake && l.Kind == network.Dense && len(in) == 1 {
			l.Activation = "softmax"
			return true
		}
	case network.Add, network.Multiply:
		if !canTake {
			return false
		}
		bias := slices.Clone(last.weights["bias"].Data)
		if !perUnit(l.Kind, s.layer.Shape, in) {
			return false
		}
		// All the value's other axes are 1: its data is one value per
		// unit, or one for all.
		v := s.weights["value"].Data
		if len(v) == 1 {
			v = expand(v, []int{1}, []int{len(bias)})
		}
		if s.layer.Kind == network.Add {
			for u := range bias {
				bias[u] += v[u]
			}
			last.weights["bias"] = &network.Array{Shape: []int{len(bias)}, Data: bias}
			return true
		}
		k := last.weights["kernel"]
		kernel := slices.Clone(k.Data)
		units := len(bias)
		for j := range kernel {
			u := j % units
			if l.Kind == network.Conv2D {
				u = j / (len(kernel) / units)
			}
			kernel[j] *= v[u]
		}
		for u := range bias {
			bias[u] *= v[u]
		}
		last.weights["kernel"] = &network.Array{Shape: k.Shape, Data: kernel}
		last.weights["bias"] = &network.Array{Shape: []int{units}, Data: bias}
		return true
	}
	return false
}

// perUnit reports whether a value shaped v varies only along a Dense's
// units (the last axis) or a Conv2D's filters (the first) of its output
// shaped out.
func perUnit(kind string, v, out []int) bool {
	if len(v) > len(out) {
		return false
	}
	p := padShape(v, len(out))
	unitAxis := len(out) - 1
	if kind == network.Conv2D {
		unitAxis = 0
	}
	for a, d := range p {
		if a != unitAxis && d != 1 {
			return false
		}
	}
	return p[unitAxis] == 1 || p[unitAxis] == out[unitAxis]
}

// network names the layers after their nodes and collects the weights.
func (im *importer) network() (*network.Network, network.Weights, error) {
	net := &network.Network{Input: im.input0}
	w := network.Weights{}
	if len(im.steps) > network.MaxLayers {
		return nil, nil, &ImportError{Msg: fmt.Sprintf("the graph maps onto %d layers, more than the %d a network may have", len(im.steps), network.MaxLayers)}
	}
	used, next := map[string]bool{}, map[string]int{}
	if len(im.steps) == 0 {
		// A graph that only passes its input on is still a network.
		im.steps = append(im.steps, step{layer: network.Layer{Kind: network.Reshape, Shape: slices.Clone(im.input0)}})
	}
	for _, s := range im.steps {
		name := strings.Trim(s.node, "/ ")
		if name == "" {
			name = strings.ToLower(s.layer.Kind)
		}
		for base := name; used[name]; {
			next[base]++
			name = fmt.Sprintf("%s_%d", base, next[base]+1)
		}
		used[name] = true
		l := s.layer
		l.Name = name
		net.Layers = append(net.Layers, l)
		for suffix, a := range s.weights {
			w[name+"."+suffix] = a
		}
	}
	if err := net.Validate(); err != nil {
		return nil, nil, &ImportError{Msg: err.Error()}
	}
	if err := net.CheckWeights(w); err != nil {
		return nil, nil, &ImportError{Msg: err.Error()}
	}
	return net, w, nil
}
