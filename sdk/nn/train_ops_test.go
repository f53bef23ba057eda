package nn

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/hackarena/hackarena/sdk/network"
)

// trainCases are networks whose layers the training ops cover, with odd
// sizes: each Dense activation, Dense on rows of a 2-axis input,
// convolutions with strides, padding and dilation (the second one passes
// a gradient to its input through col2im), and each loss.
func trainCases() map[string]struct {
	net  *network.Network
	loss string
} {
	type c = struct {
		net  *network.Network
		loss string
	}
	return map[string]c{
		"dense": {&network.Network{Input: []int{5}, Layers: []network.Layer{
			{Kind: network.Dense, Name: "a", Units: 7, Activation: "relu"},
			{Kind: network.Dense, Name: "b", Units: 4, Activation: "tanh"},
			{Kind: network.Dense, Name: "c", Units: 3, Activation: "sigmoid"},
			{Kind: network.Dense, Name: "d", Units: 5},
			{Kind: network.Dense, Name: "e", Units: 3, Activation: "softmax"},
		}}, CategoricalCrossEntropy},
		"dense-rows": {&network.Network{Input: []int{2, 5}, Layers: []network.Layer{
			{Kind: network.Rescaling, Scale: 0.5, Offset: -1},
			{Kind: network.Dense, Name: "a", Units: 3, Activation: "relu"},
			{Kind: network.Flatten},
			{Kind: network.Dense, Name: "b", Units: 3},
			{Kind: network.Softmax},
		}}, CategoricalCrossEntropy},
		"conv": {&network.Network{Input: []int{2, 9, 8}, Layers: []network.Layer{
			{Kind: network.Conv2D, Name: "a", Filters: 3, Kernel: []int{3, 2}, Stride: []int{2, 1}, Activation: "relu"},
			{Kind: network.Conv2D, Name: "b", Filters: 4, Kernel: []int{3, 3}, Padding: "same", Activation: "tanh"},
			{Kind: network.Conv2D, Name: "c", Filters: 2, Kernel: []int{2, 2}, Dilation: []int{1, 2}},
			{Kind: network.MaxPool2D, Pool: []int{2, 2}},
			{Kind: network.Flatten},
			{Kind: network.Dense, Name: "d", Units: 3, Activation: "softmax"},
		}}, CategoricalCrossEntropy},
		"binary": {&network.Network{Input: []int{6}, Layers: []network.Layer{
			{Kind: network.Dense, Name: "a", Units: 5, Activation: "sigmoid"},
			{Kind: network.Dense, Name: "b", Units: 1, Activation: "sigmoid"},
		}}, BinaryCrossEntropy},
		"mse": {&network.Network{Input: []int{1, 5, 5}, Layers: []network.Layer{
			{Kind: network.Conv2D, Name: "a", Filters: 2, Kernel: []int{2, 2}, Activation: "tanh"},
			{Kind: network.Flatten},
			{Kind: network.Dense, Name: "b", Units: 2},
		}}, MeanSquaredError},
	}
}

// trainStep runs one forward and backward pass of net on a batch and
// returns the loss and each weight's gradient.
func trainStep(t *testing.T, net *network.Network, w network.Weights, loss string, x, y []float32, batch int, m mode) (float64, map[string][]float32) {
	t.Helper()
	gr, err := compile(net, w, batch, m)
	if err != nil {
		t.Fatal(err)
	}
	target, l, err := gr.loss(loss)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := G.Grad(l, gr.params...); err != nil {
		t.Fatal(err)
	}
	vm := G.NewTapeMachine(gr.g, G.BindDualValues(gr.params...))
	defer vm.Close()
	if err := gr.setInput(x); err != nil {
		t.Fatal(err)
	}
	if err := G.Let(target, tensor.New(tensor.WithShape(target.Shape()...), tensor.WithBacking(y))); err != nil {
		t.Fatal(err)
	}
	if err := vm.RunAll(); err != nil {
		t.Fatal(err)
	}
	grads := map[string][]float32{}
	for i, p := range gr.params {
		g, err := p.Grad()
		if err != nil {
			t.Fatal(err)
		}
		grads[gr.names[i]] = append([]float32(nil), g.Data().([]float32)...)
	}
	return float64(l.Value().Data().(float32)), grads
}

// trainBatch is a batch of inputs and targets for the loss: one-hot
// classes, 0/1 labels or values.
func trainBatch(net *network.Network, loss string, batch int, rng *rand.Rand) ([]float32, []float32) {
	x := make([]float32, batch*size(net.Input))
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	out := outputSize(net)
	y := make([]float32, batch*out)
	for r := 0; r < batch; r++ {
		switch loss {
		case CategoricalCrossEntropy:
			y[r*out+rng.IntN(out)] = 1
		case BinaryCrossEntropy:
			y[r] = float32(rng.IntN(2))
		default:
			for j := 0; j < out; j++ {
				y[r*out+j] = float32(rng.NormFloat64())
			}
		}
	}
	return x, y
}

func close32(got, want, abs, rel float64) bool {
	return math.Abs(got-want) <= abs+rel*math.Abs(want)
}

// TestTrainingOpsComputeWhatThePlainGraphDoes: the loss and every weight's
// gradient through the training ops match gorgonia's own ops, at batch 1
// and an odd batch, for every layer kind and loss the ops cover.
func TestTrainingOpsComputeWhatThePlainGraphDoes(t *testing.T) {
	for name, tc := range trainCases() {
		for _, batch := range []int{1, 3} {
			t.Run(fmt.Sprintf("%s/batch%d", name, batch), func(t *testing.T) {
				m, err := NewModel(tc.net, 7)
				if err != nil {
					t.Fatal(err)
				}
				for _, a := range m.Weights {
					for i := range a.Data {
						a.Data[i] += 0.05 * float32(i%3-1) // non-zero biases too
					}
				}
				x, y := trainBatch(tc.net, tc.loss, batch, rand.New(rand.NewPCG(uint64(batch), 9)))
				plainLoss, plain := trainStep(t, tc.net, m.Weights, tc.loss, x, y, batch, forPlainTraining)
				opsLoss, ops := trainStep(t, tc.net, m.Weights, tc.loss, x, y, batch, forTraining)
				if !close32(opsLoss, plainLoss, 1e-6, 1e-5) {
					t.Errorf("loss %v, the plain graph's %v", opsLoss, plainLoss)
				}
				if len(ops) != len(plain) {
					t.Fatalf("%d gradients, the plain graph has %d", len(ops), len(plain))
				}
				for w, want := range plain {
					got := ops[w]
					for i := range want {
						if !close32(float64(got[i]), float64(want[i]), 1e-6, 1e-4) {
							t.Errorf("%s[%d]: gradient %v, the plain graph's %v", w, i, got[i], want[i])
						}
					}
				}
			})
		}
	}
}

// TestTrainingOpGradientsMatchFiniteDifferences: every weight's gradient
// through the training ops against the central difference of the loss,
// including a convolution with asymmetric padding, which the plain graph
// cannot train.
func TestTrainingOpGradientsMatchFiniteDifferences(t *testing.T) {
	cases := trainCases()
	cases["asymmetric"] = struct {
		net  *network.Network
		loss string
	}{&network.Network{Input: []int{1, 6, 5}, Layers: []network.Layer{
		{Kind: network.Conv2D, Name: "a", Filters: 2, Kernel: []int{3, 3}, Pads: []int{1, 0, 0, 2}, Activation: "tanh"},
		{Kind: network.Conv2D, Name: "b", Filters: 2, Kernel: []int{2, 3}, Stride: []int{1, 2}, Pads: []int{0, 1, 1, 0}, Activation: "sigmoid"},
		{Kind: network.Flatten},
		{Kind: network.Dense, Name: "c", Units: 3, Activation: "softmax"},
	}}, CategoricalCrossEntropy}
	const h = 1e-3
	for name, tc := range cases {
		for _, batch := range []int{1, 3} {
			t.Run(fmt.Sprintf("%s/batch%d", name, batch), func(t *testing.T) {
				m, err := NewModel(tc.net, 11)
				if err != nil {
					t.Fatal(err)
				}
				x, y := trainBatch(tc.net, tc.loss, batch, rand.New(rand.NewPCG(uint64(batch), 5)))
				_, grads := trainStep(t, tc.net, m.Weights, tc.loss, x, y, batch, forTraining)
				lossAt := func() float64 {
					l, _ := trainStep(t, tc.net, m.Weights, tc.loss, x, y, batch, forTraining)
					return l
				}
				for w, grad := range grads {
					data := m.Weights[w].Data
					for i := range data {
						keep := data[i]
						data[i] = keep + h
						up := lossAt()
						data[i] = keep - h
						down := lossAt()
						data[i] = keep
						numeric := (up - down) / (2 * h)
						if !close32(float64(grad[i]), numeric, 2e-3, 2e-2) {
							t.Errorf("%s[%d]: gradient %v, finite difference %v", w, i, grad[i], numeric)
						}
					}
				}
			})
		}
	}
}
