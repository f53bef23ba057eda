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
)

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
		if len(in) != 1 {
			return nil, fmt.Errorf("a Dense layer needs a flat input; add a Flatten layer before it")
		}
		if l.Units <= 0 {
			return nil, fmt.Errorf("units must be > 0")
		}
		return []int{l.Units}, nil
	case Conv2D:
		if len(in) != 3 {
			return nil, fmt.Errorf("a Conv2D layer needs [channels, height, width]")
		}
		if l.Filters <= 0 || len(l.Kernel) != 2 || l.Kernel[0] <= 0 || l.Kernel[1] <= 0 {
			return nil, fmt.Errorf("a Conv2D layer needs filters > 0 and a kernel [h, w]")
		}
		h, w, err := window(in[1], in[2], l.Kernel, l.stride(1), l.Padding)
		if err != nil {
			return nil, err
		}
		return []int{l.Filters, h, w}, nil
	case MaxPool2D:
		if len(in) != 3 {
			return nil, fmt.Errorf("a MaxPool2D layer needs [channels, height, width]")
		}
		if len(l.Pool) != 2 || l.Pool[0] <= 0 || l.Pool[1] <= 0 {
			return nil, fmt.Errorf("a MaxPool2D layer needs a pool [h, w]")
		}
		h, w, err := window(in[1], in[2], l.Pool, l.stride(0), "valid")
		if err != nil {
			return nil, err
		}
		return []int{in[0], h, w}, nil
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
	case Softmax:
		if len(in) != 1 {
			return nil, fmt.Errorf("a Softmax layer needs a flat input")
		}
		return in, nil
	case Embedding:
		if len(in) != 1 {
			return nil, fmt.Errorf("an Embedding layer needs a sequence of token ids")
		}
		if l.InputDim <= 0 || l.OutputDim <= 0 {
			return nil, fmt.Errorf("an Embedding layer needs input_dim and output_dim > 0")
		}
		return []int{in[0], l.OutputDim}, nil
	case GlobalAveragePooling1D:
		if len(in) != 2 {
			return nil, fmt.Errorf("a GlobalAveragePooling1D layer needs [steps, features]")
		}
		return []int{in[1]}, nil
	}
	return nil, fmt.Errorf("unknown layer kind %q (want Dense, Conv2D, MaxPool2D, Flatten, ReLU, Sigmoid, Tanh, Softmax, Embedding, GlobalAveragePooling1D, Dropout or Rescaling)", l.Kind)
}

// Strides returns the layer's stride: the given one, else 1 for a
// convolution and the window for a pooling.
func (l *Layer) Strides() []int {
	if l.Kind == MaxPool2D {
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

// Pads returns the [h, w] zero padding on each side.
func (l *Layer) Pads() []int {
	if l.Padding == "same" {
		return []int{(l.Kernel[0] - 1) / 2, (l.Kernel[1] - 1) / 2}
	}
	return []int{0, 0}
}

func window(h, w int, k, stride []int, padding string) (int, int, error) {
	if len(stride) != 2 || stride[0] <= 0 || stride[1] <= 0 {
		return 0, 0, fmt.Errorf("stride %v must be two numbers > 0", stride)
	}
	if k[0] > MaxElements || k[1] > MaxElements {
		return 0, 0, fmt.Errorf("window %v is larger than any input may be", k)
	}
	switch padding {
	case "", "valid":
	case "same":
		if k[0]%2 == 0 || k[1]%2 == 0 {
			return 0, 0, fmt.Errorf(`padding "same" needs an odd kernel`)
		}
		h, w = h+k[0]-1, w+k[1]-1
	default:
		return 0, 0, fmt.Errorf("padding %q: want valid or same", padding)
	}
	if h < k[0] || w < k[1] {
		return 0, 0, fmt.Errorf("window %v is larger than the input %dx%d", k, h, w)
	}
	return (h-k[0])/stride[0] + 1, (w-k[1])/stride[1] + 1, nil
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
		return []Param{{".kernel", []int{in[0], l.Units}}, {".bias", []int{l.Units}}}
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
			c.add(c.mul(2*int64(in[0]), out))
		case Conv2D:
			c.add(c.mul(2*out, int64(in[0]*l.Kernel[0]*l.Kernel[1])))
		case MaxPool2D:
			c.add(c.mul(out, int64(l.Pool[0]*l.Pool[1])))
		case GlobalAveragePooling1D:
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
