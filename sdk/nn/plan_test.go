package nn

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/hackarena/hackarena/sdk/network"
)

// TestThePlanComputesWhatTheGraphDoes runs networks of every layer the
// plan has, on odd shapes and at batch 1 and 3, through the plan and
// through gorgonia's graph, and compares the outputs. (A wrong stride in
// the plan's im2col fails it: checked by breaking it.)
func TestThePlanComputesWhatTheGraphDoes(t *testing.T) {
	two := func(a, b int) []int { return []int{a, b} }
	last := -1
	nets := map[string]*network.Network{
		"mlp": {Input: []int{7}, Layers: []network.Layer{
			{Kind: network.Rescaling, Scale: 1.0 / 255},
			{Kind: network.Dense, Units: 5, Activation: "relu"},
			{Kind: network.Dropout, Rate: 0.3},
			{Kind: network.Dense, Units: 3},
			{Kind: network.Softmax},
		}},
		"dense on two axes": {Input: []int{3, 5}, Layers: []network.Layer{
			{Kind: network.Dense, Units: 4, Activation: "tanh"},
			{Kind: network.Flatten},
			{Kind: network.Dense, Units: 2, Activation: "sigmoid"},
		}},
		"cnn": {Input: []int{2, 9, 7}, Layers: []network.Layer{
			{Kind: network.Rescaling, Scale: 1.0 / 255, Offset: 0.1},
			{Kind: network.Conv2D, Filters: 3, Kernel: two(3, 2), Stride: two(2, 1), Pads: []int{1, 0, 2, 1}, Dilation: two(1, 2), Activation: "relu"},
			{Kind: network.MaxPool2D, Pool: two(2, 2), Stride: two(1, 2), Pads: []int{0, 0, 1, 1}, CeilMode: true},
			{Kind: network.Conv2D, Filters: 4, Kernel: two(3, 3), Padding: "same"},
			{Kind: network.ReLU},
			{Kind: network.MaxPool2D, Pool: two(2, 2)},
			{Kind: network.Flatten},
			// Logits, not a softmax, which would round them to one-hots.
			{Kind: network.Dense, Units: 3},
		}},
		"seed cnn shape": {Input: []int{1, 12, 12}, Layers: []network.Layer{
			{Kind: network.Rescaling, Scale: 1.0 / 255},
			{Kind: network.Conv2D, Filters: 5, Kernel: two(3, 3), Activation: "relu"},
			{Kind: network.MaxPool2D, Pool: two(2, 2)},
			{Kind: network.Conv2D, Filters: 6, Kernel: two(3, 3), Activation: "relu"},
			{Kind: network.Flatten},
			{Kind: network.Dense, Units: 7, Activation: "relu"},
			{Kind: network.Dense, Units: 4},
			{Kind: network.LogSoftmax, Axis: &last},
		}},
	}
	for name, net := range nets {
		for _, batch := range []int{1, 3} {
			m, err := NewModel(net, 7)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			folded, w := foldRescaling(net, m.Weights)
			p, err := NewInference(net, m.Weights, batch)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if p.plan == nil {
				t.Fatalf("%s runs on the graph, not a plan", name)
			}
			g, err := newGraphInference(folded, w, batch)
			if err != nil {
				t.Fatalf("%s on the graph: %v", name, err)
			}
			rng := rand.New(rand.NewPCG(1, uint64(batch)))
			x := make([]float32, batch*size(net.Input))
			for i := range x {
				x[i] = float32(rng.IntN(256))
			}
			kept := append([]float32(nil), x...)
			got, err := p.Run(x)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			want, err := g.Run(x)
			if err != nil {
				t.Fatalf("%s on the graph: %v", name, err)
			}
			if len(got) != len(want) {
				t.Fatalf("%s at batch %d: %d outputs, the graph %d", name, batch, len(got), len(want))
			}
			for i := range got {
				if d := math.Abs(float64(got[i] - want[i])); d > 1e-4*max(1, math.Abs(float64(want[i]))) {
					t.Fatalf("%s at batch %d: output %d is %v, the graph's %v", name, batch, i, got[i], want[i])
				}
			}
			for i := range x {
				if x[i] != kept[i] {
					t.Fatalf("%s: the plan wrote its input", name)
				}
			}
			// A second batch through the same buffers gives the same.
			again, _ := p.Run(x)
			for i := range again {
				if again[i] != got[i] {
					t.Fatalf("%s: a second run differs at %d", name, i)
				}
			}
			g.Close()
		}
	}
}

// TestLayersWithoutAPlanRunOnTheGraph: an embedding network gets no plan,
// and still runs.
func TestLayersWithoutAPlanRunOnTheGraph(t *testing.T) {
	net := &network.Network{Input: []int{4}, Layers: []network.Layer{
		{Kind: network.Embedding, InputDim: 10, OutputDim: 3},
		{Kind: network.GlobalAveragePooling1D},
		{Kind: network.Dense, Units: 1, Activation: "sigmoid"},
	}}
	m, err := NewModel(net, 1)
	if err != nil {
		t.Fatal(err)
	}
	inf, err := NewInference(net, m.Weights, 2)
	if err != nil {
		t.Fatal(err)
	}
	if inf.plan != nil {
		t.Fatal("an embedding network got a plan")
	}
	if out, err := inf.Run([]float32{1, 2, 3, 4, 5, 6, 7, 8}); err != nil || len(out) != 2 {
		t.Fatalf("out %v, %v", out, err)
	}
}
