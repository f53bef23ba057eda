package onnx

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/hackarena/hackarena/sdk/network"
)

// MaxOpset is the newest opset of the default domain the importer reads;
// each op's semantics are those of the newest version at or below the
// model's.
const MaxOpset = 18

// minOpset is the oldest opset whose version of an op the importer reads:
// older ones have attributes it does not (Gemm's and Add's broadcast,
// BatchNormalization's spatial, Reshape's shape attribute).
var minOpset = map[string]int64{
	"Add": 7, "Sub": 7, "Mul": 7, "Div": 7, "Gemm": 7, "BatchNormalization": 9, "Reshape": 5, "Cast": 6,
	"Relu": 6, "Sigmoid": 6, "Tanh": 6, "Dropout": 7, "Concat": 4, "MaxPool": 1, "AveragePool": 1,
}

// foldOnly are the ops the importer computes only on constants (the shape
// chains torch.onnx.export emits).
var foldOnly = map[string]bool{"Concat": true, "Constant": true, "Shape": true}

// Ops lists the operators Import maps onto the Engine's layers; any other
// is refused by name.
var Ops = []string{
	"Add", "AveragePool", "BatchNormalization", "Cast", "Concat", "Constant", "Conv", "Div", "Dropout",
	"Flatten", "Gather", "Gemm", "GlobalAveragePool", "Identity", "LogSoftmax", "MatMul", "MaxPool", "Mul",
	"ReduceMean", "Relu", "Reshape", "Shape", "Sigmoid", "Softmax", "Squeeze", "Sub", "Tanh", "Unsqueeze",
}

// ImportOptions change how a graph's input is read.
type ImportOptions struct {
	// OneExample reads the graph's input as one example, where by default
	// its first axis is the batch. ONNX's node tests need it: their
	// constants often vary along the first axis.
	OneExample bool
}

// ImportError is a model the importer cannot map: Node and Op name the
// node (empty for the graph itself), Opset the version read.
type ImportError struct {
	Node, Op string
	Opset    int64
	Msg      string
}

func (e *ImportError) Error() string {
	if e.Op == "" {
		return "ONNX model: " + e.Msg
	}
	return fmt.Sprintf("ONNX model: node %q (%s, opset %d): %s", e.Node, e.Op, e.Opset, e.Msg)
}

// ErrUnsupported marks an ImportError for an operator, or an use of one,
// that the Engine does not have (errors.Is).
var ErrUnsupported = errors.New("not supported by the Engine")

type unsupported struct{ *ImportError }

func (u unsupported) Unwrap() []error { return []error{u.ImportError, ErrUnsupported} }

// maxFolded bounds the values folding may make in all (64 MiB of
// float32): a model's folded constants are shapes and small tensors.
const maxFolded = 1 << 24

// batchDim stands for the batch size in a folded shape: Shape of the
// running tensor gives it, Reshape reads it back as the batch axis.
const batchDim = math.MinInt64 / 4

// constant is a folded value: floats, or integers (shapes, indices).
type constant struct {
	shape []int
	f     []float32
	i     []int64
	isInt bool
}

func (c *constant) floats() []float32 {
	if !c.isInt {
		return c.f
	}
	out := make([]float32, len(c.i))
	for j, v := range c.i {
		out[j] = float32(v)
	}
	return out
}

func (c *constant) ints() ([]int64, bool) {
	if c.isInt {
		return c.i, true
	}
	out := make([]int64, len(c.f))
	for j, v := range c.f {
		if float32(math.Trunc(float64(v))) != v {
			return nil, false
		}
		out[j] = int64(v)
	}
	return out, true
}

// step is one layer of the chain being built, with its weights.
type step struct {
	layer   network.Layer
	weights map[string]*network.Array // by suffix: kernel, bias, value, embeddings
	node    string
}

type importer struct {
	opts   ImportOptions
	opset  int64
	consts map[string]*constant
	// runtime maps every value computed from the input to its shape
	// (one example's); head is the value the chain ends in.
	runtime map[string][]int
	head    string
	shape   []int
	steps   []step
	// declaredBatch is the input's first dimension when fixed (an export
	// without a dynamic batch): a Reshape to it means the batch.
	declaredBatch int64
	ids           bool
	input0        []int
	// used are the values the kept nodes read, and the output.
	used map[string]bool
	// folded counts the values of the constants folding has made.
	folded int64
	node   *Node
}

// Import maps m onto the Engine's layers: a chain of them, from the graph's
// one input to its first output. Constant subgraphs (the Shape → Gather →
// Unsqueeze → Concat → Reshape chains of torch.onnx.export) are folded,
// BatchNormalization and biases are folded into the layer before them.
func Import(m *Model, opts ImportOptions) (*network.Network, network.Weights, error) {
	im := &importer{opts: opts, consts: map[string]*constant{}, runtime: map[string][]int{}}
	opset, ok := m.Opsets[""]
	if !ok {
		opset = m.Opsets["ai.onnx"]
	}
	if opset < 1 || opset > MaxOpset {
		return nil, nil, &ImportError{Msg: fmt.Sprintf("opset %d of the default domain is not one the Engine reads (1 to %d): export with opset_version=17", opset, MaxOpset)}
	}
	im.opset = opset
	g := &m.Graph
	for i := range g.Initializers {
		t := &g.Initializers[i]
		c, err := constantOf(t)
		if err != nil {
			return nil, nil, &ImportError{Msg: fmt.Sprintf("initializer %q: %v", t.Name, err)}
		}
		im.consts[t.Name] = c
	}
	if err := im.input(g); err != nil {
		return nil, nil, err
	}
	if len(g.Outputs) == 0 {
		return nil, nil, &ImportError{Msg: "the graph has no output"}
	}
	for _, n := range im.needed(g) {
		im.node = n
		if err := im.apply(n); err != nil {
			var ie *ImportError
			if errors.As(err, &ie) {
				return nil, nil, err
			}
			return nil, nil, im.fail("%v", err)
		}
	}
	out := g.Outputs[0].Name
	if _, ok := im.runtime[out]; !ok || out != im.head {
		return nil, nil, &ImportError{Msg: fmt.Sprintf("the output %q is not computed from the input by one chain of nodes", out)}
	}
	im.fold()
	return im.network()
}

// Load decodes an ONNX file with DefaultLimits and imports it, its first
// axis the batch: what the Engine, its client and hackctl pack each do
// with a participant's model.
func Load(data []byte) (*network.Network, network.Weights, error) {
	m, err := Decode(data, DefaultLimits)
	if err != nil {
		return nil, nil, err
	}
	return Import(m, ImportOptions{})
}

// input finds the graph's one input that is not an initializer.
func (im *importer) input(g *Graph) error {
	var in *ValueInfo
	for i := range g.Inputs {
		if _, isConst := im.consts[g.Inputs[i].Name]; isConst {
			continue
		}
		if in != nil {
			return &ImportError{Msg: fmt.Sprintf("the graph has two inputs, %q and %q: the Engine feeds one", in.Name, g.Inputs[i].Name)}
		}
		in = &g.Inputs[i]
	}
	if in == nil {
		return &ImportError{Msg: "the graph has no input"}
	}
	switch in.ElemType {
	case Float:
	case Int64, Int32:
		im.ids = true
	default:
		return &ImportError{Msg: fmt.Sprintf("input %q is %s: the Engine feeds float (images, tables) or int64 (token ids)", in.Name, in.ElemType)}
	}
	dims := in.Shape
	if !im.opts.OneExample {
		if len(dims) < 2 {
			return &ImportError{Msg: fmt.Sprintf("input %q has %d axes: it needs a batch axis and at least one more", in.Name, len(dims))}
		}
		im.declaredBatch = dims[0].Value
		dims = dims[1:]
	}
	if len(dims) == 0 {
		dims = []Dim{{Value: 1}}
	}
	shape := make([]int, len(dims))
	for i, d := range dims {
		if d.Value <= 0 || d.Value > network.MaxElements {
			return &ImportError{Msg: fmt.Sprintf("input %q has axis %d of size %q: export with a fixed example shape (only the batch may be dynamic)", in.Name, i+len(in.Shape)-len(dims), dimString(d))}
		}
		shape[i] = int(d.Value)
	}
	if size(shape) > network.MaxElements {
		return &ImportError{Msg: fmt.Sprintf("input %q: an example shaped %v has more values than the engine allows (at most %d)", in.Name, shape, network.MaxElements)}
	}
	im.runtime[in.Name], im.head, im.shape, im.input0 = shape, in.Name, shape, shape
	return nil
}

func dimString(d Dim) string {
	if d.Param != "" {
		return d.Param
	}
	return fmt.Sprint(d.Value)
}

// needed returns the nodes the first output depends on, in file order,
// refusing a value used before a node makes it (which is also how a cycle
// shows).
func (im *importer) needed(g *Graph) []*Node {
	made := map[string]int{}
	for i := range g.Nodes {
		for _, o := range g.Nodes[i].Outputs {
			if o != "" {
				made[o] = i
			}
		}
	}
	keep := make([]bool, len(g.Nodes))
	todo := []string{g.Outputs[0].Name}
	for len(todo) > 0 {
		v := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		i, ok := made[v]
		if !ok || keep[i] {
			continue
		}
		keep[i] = true
		todo = append(todo, g.Nodes[i].Inputs...)
	}
	var out []*Node
	im.used = map[string]bool{g.Outputs[0].Name: true}
	for i := range g.Nodes {
		if keep[i] {
			out = append(out, &g.Nodes[i])
			for _, in := range g.Nodes[i].Inputs {
				im.used[in] = true
			}
		}
	}
	return out
}

func (im *importer) fail(format string, args ...any) error {
	n := im.node
	return &ImportError{Node: n.Name, Op: n.OpType, Opset: im.opset, Msg: fmt.Sprintf(format, args...)}
}

func (im *importer) unsupported(format string, args ...any) error {
	return unsupported{im.fail(format, args...).(*ImportError)}
}

// Lookups of a node's inputs.
func (im *importer) konst(name string) *constant { return im.consts[name] }

func (im *importer) isRuntime(name string) bool { _, ok := im.runtime[name]; return ok }

func (im *importer) known(name string) bool {
	return name == "" || im.konst(name) != nil || im.isRuntime(name)
}

func (im *importer) attrInt(name string, def int64) int64 {
	if a, ok := im.node.Attr(name); ok {
		return a.I
	}
	return def
}

func (im *importer) attrFloat(name string, def float32) float32 {
	if a, ok := im.node.Attr(name); ok {
		return a.F
	}
	return def
}

func (im *importer) attrInts(name string) ([]int, bool, error) {
	a, ok := im.node.Attr(name)
	if !ok {
		return nil, false, nil
	}
	xs, err := smallInts(a.Ints)
	if err != nil {
		return nil, true, fmt.Errorf("attribute %s: %w", name, err)
	}
	return xs, true, nil
}

// smallInts converts attribute integers, refusing ones no shape has.
func smallInts(xs []int64) ([]int, error) {
	out := make([]int, len(xs))
	for i, v := range xs {
		if v > network.MaxElements || v < -network.MaxElements {
			return nil, fmt.Errorf("%d is larger than any tensor's axis", v)
		}
		out[i] = int(v)
	}
	return out, nil
}

// input of the node, i; "" when absent.
func in(n *Node, i int) string {
	if i < len(n.Inputs) {
		return n.Inputs[i]
	}
	return ""
}

// apply maps one node.
func (im *importer) apply(n *Node) error {
	if n.Domain != "" && n.Domain != "ai.onnx" {
		return im.unsupported("operator domain %q is not ONNX's own", n.Domain)
	}
	if least := minOpset[n.OpType]; im.opset < least {
		return im.unsupported("the Engine reads %s from opset %d on: export with opset_version=17", n.OpType, least)
	}
	var runtimeIn []int
	for i, name := range n.Inputs {
		if !im.known(name) {
			return im.fail("input %q is used before any node makes it (the graph is not in order, or has a cycle)", name)
		}
		if im.isRuntime(name) {
			runtimeIn = append(runtimeIn, i)
		}
	}
	if len(n.Outputs) == 0 || n.Outputs[0] == "" {
		return im.fail("the node has no output")
	}
	if n.OpType == "Shape" && len(runtimeIn) == 1 {
		return im.shapeOf(n)
	}
	if len(runtimeIn) == 0 {
		c, err := im.foldNode(n)
		if err != nil {
			return err
		}
		// What folding makes is bounded as a whole, not only per tensor:
		// a chain of nodes that each make a large constant is refused.
		if im.folded += int64(c.len()); im.folded > maxFolded {
			return im.unsupported("the constants computed from constants reach %d values, more than the %d the importer makes", im.folded, maxFolded)
		}
		im.consts[n.Outputs[0]] = c
		return nil
	}
	if foldOnly[n.OpType] {
		return im.unsupported("%s on the running tensor: the Engine computes it only on constants (as in the shape chains torch.onnx.export writes)", n.OpType)
	}
	if len(runtimeIn) > 1 {
		return im.unsupported("it combines two computed tensors (%s): the Engine runs one chain of layers, without branches", strings.Join(n.Inputs, ", "))
	}
	x := n.Inputs[runtimeIn[0]]
	if x != im.head {
		return im.unsupported("it reads %q, an earlier value than the chain's last (%q): the Engine runs one chain of layers, without branches or residual connections", x, im.head)
	}
	for _, o := range n.Outputs[1:] {
		if im.used[o] {
			return im.unsupported("its output %q is used; the Engine computes only the first", o)
		}
	}
	return im.layer(n, runtimeIn[0])
}

// full is the chain's shape with the batch axis (1 for it).
func (im *importer) full() []int {
	if im.opts.OneExample {
		return slices.Clone(im.shape)
	}
	return append([]int{1}, im.shape...)
}

// batchOffset is 1 when the first axis is the batch.
func (im *importer) batchOffset() int {
	if im.opts.OneExample {
		return 0
	}
	return 1
}

// axis normalizes an ONNX axis of the chain's tensor to one of an
// example, refusing the batch axis.
func (im *importer) axis(a int, rank int) (int, error) {
	if a < -rank || a >= rank {
		return 0, im.fail("axis %d is not one of the input's %d axes", a, rank)
	}
	if a < 0 {
		a += rank
	}
	if a < im.batchOffset() {
		return 0, im.unsupported("it acts along the batch axis, which the Engine keeps separate")
	}
	return a - im.batchOffset(), nil
}

func (im *importer) push(l network.Layer, w map[string]*network.Array) {
	im.steps = append(im.steps, step{layer: l, weights: w, node: im.node.Name})
}

// advance makes out the chain's head, with the given example shape.
func (im *importer) advance(out string, shape []int) {
	im.runtime[out], im.head, im.shape = shape, out, shape
}

func (im *importer) reshape(out string, shape []int) {
	if !slices.Equal(shape, im.shape) {
		im.push(network.Layer{Kind: network.Reshape, Shape: shape}, nil)
	}
	im.advance(out, shape)
}

func (im *importer) shapeOf(n *Node) error {
	full := im.full()
	dims := make([]int64, len(full))
	for i, d := range full {
		dims[i] = int64(d)
	}
	if !im.opts.OneExample {
		dims[0] = batchDim
	}
	start, end := int(im.attrInt("start", 0)), int(im.attrInt("end", int64(len(dims))))
	start, end = clampRange(start, len(dims)), clampRange(end, len(dims))
	if end < start {
		end = start
	}
	dims = dims[start:end]
	im.consts[n.Outputs[0]] = &constant{shape: []int{len(dims)}, i: dims, isInt: true}
	return nil
}

func clampRange(i, n int) int {
	if i < 0 {
		i += n
	}
	return min(max(i, 0), n)
}
