// Package network describes a neural network as an input shape, a list of
// layers and named float32 weights: the form sdk/nn trains, .npz files
// store and the judge's Engine loads. It has no tensor library in it, so a
// plugin that only serves a network stays a small binary.
package network

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
)

// Layer kinds.
const (
	Dense                  = "Dense"
	Conv2D                 = "Conv2D"
	MaxPool2D              = "MaxPool2D"
	Flatten                = "Flatten"
	ReLU                   = "ReLU"
	Sigmoid                = "Sigmoid"
	Tanh                   = "Tanh"
	Softmax                = "Softmax"
	Embedding              = "Embedding"
	GlobalAveragePooling1D = "GlobalAveragePooling1D"
	Dropout                = "Dropout"
	// Rescaling computes x·scale + offset, as Keras's layer does: a
	// network that starts with it can be fed raw bytes (pixels 0..255),
	// a quarter of the float32 traffic.
	Rescaling = "Rescaling"

	// The layers below are what ONNX graphs need beyond Keras's stack
	// (sdk/onnx maps onto them); a network may use them directly.

	// Add and Multiply combine the input with a constant, "<name>.value",
	// whose Shape broadcasts to one example's (numpy's rules).
	Add      = "Add"
	Multiply = "Multiply"
	// Reshape gives one example the Shape (the same number of values).
	Reshape = "Reshape"
	// LogSoftmax is log(Softmax); both take an Axis of one example.
	LogSoftmax = "LogSoftmax"
	// AveragePool2D averages each window, as MaxPool2D takes its maximum.
	AveragePool2D = "AveragePool2D"
	// GlobalAveragePooling2D averages each channel of [c, h, w] into [c].
	GlobalAveragePooling2D = "GlobalAveragePooling2D"
	// ReduceMean averages one example over its Axes.
	ReduceMean = "ReduceMean"
)

// Inference-only kinds have no gradient in sdk/nn: a network that holds
// one runs in the Engine but does not train.
var inferenceOnly = map[string]bool{AveragePool2D: true}

// InferenceOnly reports whether nn can run the layer but not train it.
func (l *Layer) InferenceOnly() bool {
	return inferenceOnly[l.Kind] || (l.Kind == MaxPool2D && (l.CeilMode || len(l.Pads) > 0 || len(l.Dilation) > 0))
}

// Activations a Dense or Conv2D layer may apply itself, as in Keras.
var activations = map[string]bool{"": true, "linear": true, "relu": true, "sigmoid": true, "tanh": true, "softmax": true}

// Limits every network is checked against before anything is allocated
// for it: the shape arithmetic of a hostile network (an input of
// [2^32, 2^32, 1], say) must fail here rather than wrap around.
const (
	// MaxElements caps the values of one example at any layer (its
	// output, or a convolution's im2col buffer) and the values of any one
	// weight array: 64 Mi float32 values are 256 MiB.
	MaxElements = 1 << 26
	// MaxLayers caps a network's depth.
	MaxLayers = 1024
)

// Network is a Keras-Sequential-like stack. Input is the shape of one
// example without the batch axis: [784] for a flat image, [1, 28, 28] for
// a CNN (channels first), [256] for a sequence of token ids.
type Network struct {
	Input  []int   `json:"input"`
	Layers []Layer `json:"layers"`
}

// Layer is one step of a Network. Weights are named "<name>.kernel" and
// "<name>.bias" (Dense, Conv2D) or "<name>.embeddings" (Embedding).
//
// Layouts: a Dense kernel is [in, out] (Keras); a Conv2D kernel is
// [filters, in_channels, kh, kw] and activations are NCHW (PyTorch), so a
// Flatten after convolutions reads channel by channel.
type Layer struct {
	Kind string `json:"kind"`
	Name string `json:"name,omitempty"`
	// Dense: output units. Conv2D: filters.
	Units   int `json:"units,omitempty"`
	Filters int `json:"filters,omitempty"`
	// Conv2D and MaxPool2D: window [h, w]; Stride defaults to 1 for a
	// convolution and to the window for a pooling.
	Kernel  []int  `json:"kernel,omitempty"`
	Pool    []int  `json:"pool,omitempty"`
	Stride  []int  `json:"stride,omitempty"`
	Padding string `json:"padding,omitempty"` // "valid" (default) or "same"
	// Pads, when given, is the explicit zero padding [top, left, bottom,
	// right] of a Conv2D or pooling (instead of Padding); Dilation spaces
	// a window's taps [h, w]; CeilMode rounds a pooling's output size up,
	// so a last partial window counts. CountIncludePad makes an
	// AveragePool2D divide by the whole window, padding included.
	Pads            []int `json:"pads,omitempty"`
	Dilation        []int `json:"dilation,omitempty"`
	CeilMode        bool  `json:"ceil_mode,omitempty"`
	CountIncludePad bool  `json:"count_include_pad,omitempty"`
	// Shape: Reshape's target, or the shape of an Add or Multiply's value.
	Shape []int `json:"shape,omitempty"`
	// Axis of one example for Softmax and LogSoftmax (default the last);
	// Axes and KeepDims for ReduceMean.
	Axis     *int  `json:"axis,omitempty"`
	Axes     []int `json:"axes,omitempty"`
	KeepDims bool  `json:"keep_dims,omitempty"`
	// Embedding: vocabulary size and vector size.
	InputDim  int `json:"input_dim,omitempty"`
	OutputDim int `json:"output_dim,omitempty"`
	// Dropout: the fraction dropped while training; inference ignores it.
	Rate float64 `json:"rate,omitempty"`
	// Rescaling: factor and offset.
	Scale      float64 `json:"scale,omitempty"`
	Offset     float64 `json:"offset,omitempty"`
	Activation string  `json:"activation,omitempty"`
}

// Param is one weight a network needs.
type Param struct {
	Name  string
	Shape []int
}

// Decode parses a network's JSON strictly: an unknown key is an error,
// because a misspelt "activation" would silently change the model.
func Decode(data []byte) (*Network, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var n Network
	if err := dec.Decode(&n); err != nil {
		return nil, fmt.Errorf("network: %w", err)
	}
	if err := n.Validate(); err != nil {
		return nil, err
	}
	return &n, nil
}

// Encode is the JSON Decode reads.
func (n *Network) Encode() ([]byte, error) { return json.Marshal(n) }

// Validate checks every layer and that the shapes fit together; errors
// name the layer.
func (n *Network) Validate() error {
	_, err := n.Shapes()
	return err
}

// LayerName is the layer's name, or kind_index when it has none.
func (n *Network) LayerName(i int) string {
	if n.Layers[i].Name != "" {
		return n.Layers[i].Name
	}
	return fmt.Sprintf("%s_%d", strings.ToLower(n.Layers[i].Kind), i)
}

// Shapes returns the output shape of every layer (without the batch axis),
// checking each layer against its input.
func (n *Network) Shapes() ([][]int, error) {
	if len(n.Input) == 0 {
		return nil, fmt.Errorf("network: input shape is empty: give the shape of one example, e.g. [784]")
	}
	for _, d := range n.Input {
		if d <= 0 {
			return nil, fmt.Errorf("network: input shape %v has a dimension ≤ 0", n.Input)
		}
	}
	if _, err := elements(n.Input); err != nil {
		return nil, fmt.Errorf("network: input shape %v: %w", n.Input, err)
	}
	if len(n.Layers) == 0 {
		return nil, fmt.Errorf("network: no layers")
	}
	if len(n.Layers) > MaxLayers {
		return nil, fmt.Errorf("network: %d layers, more than the %d a network may have", len(n.Layers), MaxLayers)
	}
	seen := map[string]bool{}
	shape := n.Input
	out := make([][]int, len(n.Layers))
	for i, l := range n.Layers {
		name := n.LayerName(i)
		if seen[name] {
			return nil, fmt.Errorf("network: layer %d: name %q is used twice", i, name)
		}
		seen[name] = true
		next, err := l.outputShape(shape)
		if err == nil {
			err = l.checkSizes(shape, next)
		}
		if err != nil {
			return nil, fmt.Errorf("network: layer %d (%s %q) on input %v: %w", i, l.Kind, name, shape, err)
		}
		out[i], shape = next, next
	}
	return out, nil
}

func (l *Layer) outputShape(in []int) ([]int, error) {
	if !activations[l.Activation] {
		return nil, fmt.Errorf("unknown activation %q (want relu, sigmoid, tanh, softmax or linear)", l.Activation)
	}
	if l.Activation != "" && l.Kind != Dense && l.Kind != Conv2D {
		return nil, fmt.Errorf("only Dense and Conv2D take an activation; add a %s layer instead", l.Activation)
	}
	switch l.Kind {
	case Dense:
		// On more than one axis, Dense maps the last one (as Keras's
		// Dense and ONNX's MatMul do).
		if l.Units <= 0 {
			return nil, fmt.Errorf("units must be > 0")
		}
		return append(slices.Clone(in[:len(in)-1]), l.Units), nil
	case Conv2D:
		if len(in) != 3 {
			return nil, fmt.Errorf("a Conv2D layer needs [channels, height, width]")
		}
		if l.Filters <= 0 || len(l.Kernel) != 2 || l.Kernel[0] <= 0 || l.Kernel[1] <= 0 {
			return nil, fmt.Errorf("a Conv2D layer needs filters > 0 and a kernel [h, w]")
		}
		h, w, err := l.window(in[1], in[2], l.Kernel, l.stride(1))
		if err != nil {
			return nil, err
		}
		return []int{l.Filters, h, w}, nil
	case MaxPool2D, AveragePool2D:
		if len(in) != 3 {
			return nil, fmt.Errorf("a %s layer needs [channels, height, width]", l.Kind)
		}
		if len(l.Pool) != 2 || l.Pool[0] <= 0 || l.Pool[1] <= 0 {
			return nil, fmt.Errorf("a %s layer needs a pool [h, w]", l.Kind)
		}
		h, w, err := l.window(in[1], in[2], l.Pool, l.stride(0))
		if err != nil {
			return nil, err
		}
		return []int{in[0], h, w}, nil
	case GlobalAveragePooling2D:
		if len(in) != 3 {
			return nil, fmt.Errorf("a GlobalAveragePooling2D layer needs [channels, height, width]")
		}
		return []int{in[0]}, nil
	case Reshape:
		n, err := elements(l.Shape)
		if err != nil {
			return nil, fmt.Errorf("shape: %w", err)
		}
		if m := size(in); n != m {
			return nil, fmt.Errorf("shape %v holds %d values, the input %d", l.Shape, n, m)
		}
		return slices.Clone(l.Shape), nil
	case Add, Multiply:
		if _, err := elements(l.Shape); err != nil {
			return nil, fmt.Errorf("shape: %w", err)
		}
		if !Broadcasts(l.Shape, in) {
			return nil, fmt.Errorf("a value shaped %v does not broadcast to the input", l.Shape)
		}
		return in, nil
	case ReduceMean:
		if len(l.Axes) == 0 {
			return nil, fmt.Errorf("a ReduceMean layer needs axes")
		}
		seen := map[int]bool{}
		var out []int
		for _, a := range l.Axes {
			if a < 0 || a >= len(in) || seen[a] {
				return nil, fmt.Errorf("axes %v: each must be one of the input's %d axes, once", l.Axes, len(in))
			}
			seen[a] = true
		}
		for i, d := range in {
			switch {
			case !seen[i]:
				out = append(out, d)
			case l.KeepDims:
				out = append(out, 1)
			}
		}
		if len(out) == 0 {
			out = []int{1}
		}
		return out, nil
	case Flatten:
		n, err := elements(in)
		if err != nil {
			return nil, err
		}
		return []int{n}, nil
	case Rescaling:
		if l.Scale == 0 {
			return nil, fmt.Errorf("a Rescaling layer needs a scale ≠ 0")
		}
		return in, nil
	case ReLU, Sigmoid, Tanh, Dropout:
		if l.Kind == Dropout && (l.Rate < 0 || l.Rate >= 1) {
			return nil, fmt.Errorf("rate %v is outside [0, 1)", l.Rate)
		}
		return in, nil
	case Softmax, LogSoftmax:
		if l.Axis != nil && (*l.Axis < -len(in) || *l.Axis >= len(in)) {
			return nil, fmt.Errorf("axis %d is not one of the input's %d axes", *l.Axis, len(in))
		}
		return in, nil
	case Embedding:
		// The input is token ids, of any shape; each gets a vector.
		if l.InputDim <= 0 || l.OutputDim <= 0 {
			return nil, fmt.Errorf("an Embedding layer needs input_dim and output_dim > 0")
		}
		return append(slices.Clone(in), l.OutputDim), nil
	case GlobalAveragePooling1D:
		if len(in) != 2 {
			return nil, fmt.Errorf("a GlobalAveragePooling1D layer needs [steps, features]")
		}
		return []int{in[1]}, nil
	}
	return nil, fmt.Errorf("unknown layer kind %q (want Dense, Conv2D, MaxPool2D, AveragePool2D, Flatten, Reshape, ReLU, Sigmoid, Tanh, Softmax, LogSoftmax, Embedding, GlobalAveragePooling1D, GlobalAveragePooling2D, ReduceMean, Add, Multiply, Dropout or Rescaling)", l.Kind)
}

// Strides returns the layer's stride: the given one, else 1 for a
// convolution and the window for a pooling.
func (l *Layer) Strides() []int {
	if l.Kind == MaxPool2D || l.Kind == AveragePool2D {
		return l.stride(0)
	}
	return l.stride(1)
}

func (l *Layer) stride(def int) []int {
	if len(l.Stride) == 2 {
		return l.Stride
	}
	if def == 0 {
		return l.Pool
	}
	return []int{def, def}
}

// Padding4 returns the zero padding [top, left, bottom, right]: Pads
// when given, else what Padding means.
func (l *Layer) Padding4() []int {
	if len(l.Pads) == 4 {
		return l.Pads
	}
	if l.Padding == "same" {
		return []int{(l.Kernel[0] - 1) / 2, (l.Kernel[1] - 1) / 2, (l.Kernel[0] - 1) / 2, (l.Kernel[1] - 1) / 2}
	}
	return []int{0, 0, 0, 0}
}

// Dilations returns the window's spacing [h, w] (default 1).
func (l *Layer) Dilations() []int {
	if len(l.Dilation) == 2 {
		return l.Dilation
	}
	return []int{1, 1}
}

// window is the output size of a convolution or pooling on h×w.
func (l *Layer) window(h, w int, k, stride []int) (int, int, error) {
	if len(stride) != 2 || stride[0] <= 0 || stride[1] <= 0 {
		return 0, 0, fmt.Errorf("stride %v must be two numbers > 0", stride)
	}
	if k[0] > MaxElements || k[1] > MaxElements {
		return 0, 0, fmt.Errorf("window %v is larger than any input may be", k)
	}
	switch l.Padding {
	case "", "valid":
	case "same":
		if len(l.Pads) > 0 {
			return 0, 0, fmt.Errorf(`padding "same" and pads exclude each other`)
		}
		if k[0]%2 == 0 || k[1]%2 == 0 {
			return 0, 0, fmt.Errorf(`padding "same" needs an odd kernel`)
		}
		if l.Kind != Conv2D {
			return 0, 0, fmt.Errorf(`padding "same" is for a Conv2D; give a pooling pads`)
		}
	default:
		return 0, 0, fmt.Errorf("padding %q: want valid or same", l.Padding)
	}
	if len(l.Pads) != 0 && len(l.Pads) != 4 {
		return 0, 0, fmt.Errorf("pads %v: want [top, left, bottom, right]", l.Pads)
	}
	if len(l.Dilation) != 0 && (len(l.Dilation) != 2 || l.Dilation[0] <= 0 || l.Dilation[1] <= 0 || l.Dilation[0] > MaxElements || l.Dilation[1] > MaxElements) {
		return 0, 0, fmt.Errorf("dilation %v: want two numbers > 0", l.Dilation)
	}
	pads, dil := l.Padding4(), l.Dilations()
	for _, p := range pads {
		if p < 0 || p > MaxElements {
			return 0, 0, fmt.Errorf("pads %v must be between 0 and %d", pads, MaxElements)
		}
	}
	for i, p := range pads[:2] {
		// A window that starts wholly in the padding has no input value
		// in it: ONNX leaves that undefined; refuse it.
		if p >= k[i]*dil[i] && l.Kind != Conv2D {
			return 0, 0, fmt.Errorf("pads %v are as large as the window %v", pads, k)
		}
	}
	eh, ew := (k[0]-1)*dil[0]+1, (k[1]-1)*dil[1]+1
	ph, pw := h+pads[0]+pads[2], w+pads[1]+pads[3]
	if ph < eh || pw < ew {
		return 0, 0, fmt.Errorf("window %v is larger than the input %dx%d", k, h, w)
	}
	oh, ow := (ph-eh)/stride[0]+1, (pw-ew)/stride[1]+1
	if l.CeilMode {
		oh, ow = (ph-eh+stride[0]-1)/stride[0]+1, (pw-ew+stride[1]-1)/stride[1]+1
		// The last window must start inside the input or its left
		// padding (PyTorch's rule, which ONNX follows).
		if (oh-1)*stride[0] >= h+pads[0] {
			oh--
		}
		if (ow-1)*stride[1] >= w+pads[1] {
			ow--
		}
	}
	return oh, ow, nil
}

// Broadcasts reports whether a value shaped v broadcasts to shape (numpy's
// rules: aligned at the last axis, each of v's axes 1 or equal).
func Broadcasts(v, shape []int) bool {
	if len(v) > len(shape) {
		return false
	}
	off := len(shape) - len(v)
	for i, d := range v {
		if d != 1 && d != shape[off+i] {
			return false
		}
	}
	return true
}

// Params lists the weights the network needs, in layer order.
func (n *Network) Params() ([]Param, error) {
	shapes, err := n.Shapes()
	if err != nil {
		return nil, err
	}
	var ps []Param
	in := n.Input
	for i, l := range n.Layers {
		name := n.LayerName(i)
		for _, p := range l.params(in) {
			ps = append(ps, Param{name + p.Name, p.Shape})
		}
		in = shapes[i]
	}
	return ps, nil
}

// CheckWeights reports the first weight that is missing, misshapen or
// not needed by the network.
func (n *Network) CheckWeights(w Weights) error {
	ps, err := n.Params()
	if err != nil {
		return err
	}
	want := map[string]bool{}
	for _, p := range ps {
		want[p.Name] = true
		a, ok := w[p.Name]
		if !ok {
			return fmt.Errorf("weights: %q is missing (shape %v)", p.Name, p.Shape)
		}
		if !slices.Equal(a.Shape, p.Shape) {
			return fmt.Errorf("weights: %q has shape %v, the network needs %v", p.Name, a.Shape, p.Shape)
		}
		if len(a.Data) != size(a.Shape) {
			return fmt.Errorf("weights: %q has %d values for shape %v", p.Name, len(a.Data), a.Shape)
		}
	}
	for name := range w {
		if !want[name] {
			return fmt.Errorf("weights: %q is not a weight of this network (it needs %s)", name, paramNames(ps))
		}
	}
	return nil
}

func paramNames(ps []Param) string {
	names := make([]string, len(ps))
	for i, p := range ps {
		names[i] = p.Name
	}
	return strings.Join(names, ", ")
}

// size is the element count of a shape already checked by elements (a
// network that passed Shapes, or an array read from an .npz).
func size(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// ErrTooLarge is a shape whose element count passes MaxElements (or
// would overflow computing it).
var ErrTooLarge = errors.New("more values than the engine allows")

// elements is the element count of shape, checked: every dimension is
// positive and the product stays within MaxElements.
func elements(shape []int) (int, error) {
	n := int64(1)
	for _, d := range shape {
		if d <= 0 {
			return 0, fmt.Errorf("shape %v has a dimension ≤ 0", shape)
		}
		if int64(d) > MaxElements/n {
			return 0, fmt.Errorf("shape %v has %w (at most %d per example or weight array)", shape, ErrTooLarge, MaxElements)
		}
		n *= int64(d)
	}
	return int(n), nil
}

// checkSizes bounds what a layer allocates per example: its output, its
// weights and a convolution's im2col buffer.
func (l *Layer) checkSizes(in, out []int) error {
	if _, err := elements(out); err != nil {
		return fmt.Errorf("output: %w", err)
	}
	for _, p := range l.params(in) {
		if _, err := elements(p.Shape); err != nil {
			return fmt.Errorf("weights: %w", err)
		}
	}
	if l.Kind == Conv2D {
		if _, err := elements([]int{out[1], out[2], in[0], l.Kernel[0], l.Kernel[1]}); err != nil {
			return fmt.Errorf("im2col buffer: %w", err)
		}
	}
	return nil
}

// params are the weights of one layer on input in, unnamed.
func (l *Layer) params(in []int) []Param {
	switch l.Kind {
	case Dense:
		return []Param{{".kernel", []int{in[len(in)-1], l.Units}}, {".bias", []int{l.Units}}}
	case Add, Multiply:
		return []Param{{".value", slices.Clone(l.Shape)}}
	case Conv2D:
		return []Param{{".kernel", []int{l.Filters, in[0], l.Kernel[0], l.Kernel[1]}}, {".bias", []int{l.Filters}}}
	case Embedding:
		return []Param{{".embeddings", []int{l.InputDim, l.OutputDim}}}
	}
	return nil
}

// ActivationBytes estimates the memory a forward pass over batch examples
// holds at once: the input, every layer's output, and what gorgonia keeps
// beside the outputs of convolutions (im2col buffer, product, transpose,
// bias) and poolings (indices); inference keeps them all until the batch
// is done.
func (n *Network) ActivationBytes(batch int) (int64, error) {
	shapes, err := n.Shapes()
	if err != nil {
		return 0, err
	}
	var c counter
	c.add(int64(size(n.Input)))
	if n.Layers[0].Kind == Embedding {
		c.add(int64(size(n.Input))) // token ids are 64-bit ints
	}
	in := n.Input
	for i, l := range n.Layers {
		out := int64(size(shapes[i]))
		switch l.Kind {
		case Conv2D:
			// As gorgonia computes it (measured on mnist-cnn): the im2col
			// buffer, the product, its transpose to NCHW, the broadcast
			// bias and the sum.
			c.add(c.mul(int64(shapes[i][1]*shapes[i][2]), int64(in[0]*l.Kernel[0]*l.Kernel[1])))
			c.add(c.mul(out, 4))
		case MaxPool2D:
			// The output and the 64-bit index of each maximum.
			c.add(c.mul(out, 3))
		case Add, Multiply, Softmax, LogSoftmax:
			// The result and gorgonia's broadcast or exponent copy.
			c.add(c.mul(out, 2))
		default:
			c.add(out)
		}
		in = shapes[i]
	}
	total := c.mul(c.mul(c.n, 4), int64(batch))
	if c.overflow || batch <= 0 {
		return 0, fmt.Errorf("a batch of %d examples needs more memory than can be counted", batch)
	}
	return total, nil
}

// FLOPs estimates the floating-point operations of a forward pass over
// batch examples: two per multiply-add of a Dense or Conv2D layer, one per
// value read by a pooling, one per output value elsewhere. The Engine
// refuses a batch whose estimate does not fit the time a run has left.
func (n *Network) FLOPs(batch int) (int64, error) {
	shapes, err := n.Shapes()
	if err != nil {
		return 0, err
	}
	var c counter
	in := n.Input
	for i, l := range n.Layers {
		out := int64(size(shapes[i]))
		switch l.Kind {
		case Dense:
			c.add(c.mul(2*int64(in[len(in)-1]), out))
		case Conv2D:
			c.add(c.mul(2*out, int64(in[0]*l.Kernel[0]*l.Kernel[1])))
		case MaxPool2D, AveragePool2D:
			c.add(c.mul(out, int64(l.Pool[0]*l.Pool[1])))
		case GlobalAveragePooling1D, GlobalAveragePooling2D, ReduceMean:
			c.add(int64(size(in)))
		default:
			c.add(out)
		}
		in = shapes[i]
	}
	total := c.mul(c.n, int64(batch))
	if c.overflow || batch <= 0 {
		return 0, fmt.Errorf("a batch of %d examples needs more operations than can be counted", batch)
	}
	return total, nil
}

// counter sums int64s and remembers an overflow instead of wrapping.
type counter struct {
	n        int64
	overflow bool
}

func (c *counter) add(v int64) {
	if v < 0 || c.n > math.MaxInt64-v {
		c.overflow = true
		return
	}
	c.n += v
}

func (c *counter) mul(a, b int64) int64 {
	if a < 0 || b < 0 || (a != 0 && b > math.MaxInt64/a) {
		c.overflow = true
		return 0
	}
	return a * b
}
