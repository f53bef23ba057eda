package nn

import (
	"bytes"
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/hackarena/hackarena/sdk/network"
)

// gradientOfDropout returns d(sum(dropout(x)))/dx for a kept unit.
func gradientOfDropout(t *testing.T, build func(g *G.ExprGraph, x *G.Node) *G.Node) float32 {
	t.Helper()
	g := G.NewGraph()
	x := G.NewVector(g, tensor.Float32, G.WithShape(1000), G.WithName("x"), G.WithInit(G.Ones()))
	out := build(g, x)
	cost, err := G.Sum(out)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := G.Grad(cost, x); err != nil {
		t.Fatal(err)
	}
	vm := G.NewTapeMachine(g, G.BindDualValues(x))
	defer vm.Close()
	if err := vm.RunAll(); err != nil {
		t.Fatal(err)
	}
	grad, err := x.Grad()
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range grad.Data().([]float32) {
		if v != 0 {
			return v
		}
	}
	t.Fatal("every unit was dropped")
	return 0
}

// The issue measured gorgonia 0.9.18's Dropout passing 5.0 back for a kept
// unit at p = 0.2. Ours must pass 1/(1−p) = 1.25, as its forward pass
// scales.
func TestDropoutGradientIsOneOverKeepRate(t *testing.T) {
	ours := gradientOfDropout(t, func(g *G.ExprGraph, x *G.Node) *G.Node {
		m := &dropMask{rate: 0.2, data: make([]float32, 1000)}
		m.draw(rand.New(rand.NewPCG(1, 2)))
		m.node = G.NewVector(g, tensor.Float32, G.WithShape(1000), G.WithValue(tensor.New(tensor.WithShape(1000), tensor.WithBacking(m.data))))
		out, err := G.HadamardProd(x, m.node)
		if err != nil {
			t.Fatal(err)
		}
		return out
	})
	if math.Abs(float64(ours)-1.25) > 1e-6 {
		t.Errorf("our dropout passes %v back for a kept unit, want 1.25", ours)
	}
	upstream := gradientOfDropout(t, func(g *G.ExprGraph, x *G.Node) *G.Node {
		out, err := G.Dropout(x, 0.2)
		if err != nil {
			t.Fatal(err)
		}
		return out
	})
	// Not an assertion on gorgonia: when this prints 1.25 the workaround
	// can go.
	t.Logf("gorgonia's own Dropout passes %v back (1.25 would be right)", upstream)
}

func TestDropMaskKeepsTheExpectedFraction(t *testing.T) {
	m := &dropMask{rate: 0.2, data: make([]float32, 100000)}
	m.draw(rand.New(rand.NewPCG(3, 4)))
	var sum float64
	for _, v := range m.data {
		sum += float64(v)
	}
	if mean := sum / float64(len(m.data)); math.Abs(mean-1) > 0.01 {
		t.Errorf("mask mean %v, want ≈ 1 (dropout must keep the expected activation)", mean)
	}
}

func TestLogSoftmaxMatchesDefinition(t *testing.T) {
	g := G.NewGraph()
	z := G.NewMatrix(g, tensor.Float32, G.WithShape(2, 3), G.WithValue(tensor.New(tensor.WithShape(2, 3), tensor.WithBacking([]float32{1, 2, 3, 100, 0, -100}))))
	ls, err := logSoftmax(z)
	if err != nil {
		t.Fatal(err)
	}
	// A softmax of the same node in the same graph is what exposed
	// gorgonia's hash collision.
	if _, err := G.SoftMax(z); err != nil {
		t.Fatal(err)
	}
	vm := G.NewTapeMachine(g)
	defer vm.Close()
	if err := vm.RunAll(); err != nil {
		t.Fatal(err)
	}
	got := ls.Value().Data().([]float32)
	want := []float64{-2.4076059, -1.4076059, -0.4076059, 0, -100, -200}
	for i := range want {
		if math.Abs(float64(got[i])-want[i]) > 1e-4 {
			t.Errorf("logSoftmax[%d] = %v, want %v", i, got[i], want[i])
		}
	}
}

// twoBlobs is a classification problem a small network must learn.
func twoBlobs(n int) (x, y []float32) {
	rng := rand.New(rand.NewPCG(7, 8))
	for i := 0; i < n; i++ {
		c := i % 2
		cx := float32(2*c - 1)
		x = append(x, cx+float32(rng.NormFloat64()*0.5), -cx+float32(rng.NormFloat64()*0.5))
		y = append(y, float32(c))
	}
	return x, y
}

func TestFitLearnsEachLoss(t *testing.T) {
	x, y := twoBlobs(2000)
	cases := map[string]struct {
		net  *network.Network
		loss string
		opt  string
	}{
		"softmax": {&network.Network{Input: []int{2}, Layers: []network.Layer{{Kind: network.Dense, Units: 8, Activation: "relu"}, {Kind: network.Dropout, Rate: 0.1}, {Kind: network.Dense, Units: 2}, {Kind: network.Softmax}}}, CategoricalCrossEntropy, "adam"},
		"sigmoid": {&network.Network{Input: []int{2}, Layers: []network.Layer{{Kind: network.Dense, Units: 8, Activation: "tanh"}, {Kind: network.Dense, Units: 1, Activation: "sigmoid"}}}, BinaryCrossEntropy, "sgd"},
		"mse":     {&network.Network{Input: []int{2}, Layers: []network.Layer{{Kind: network.Dense, Units: 8, Activation: "relu"}, {Kind: network.Dense, Units: 1}}}, MeanSquaredError, "adam"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			m, err := NewModel(c.net, 1)
			if err != nil {
				t.Fatal(err)
			}
			var progress bytes.Buffer
			h, err := m.Fit(context.Background(), x, y, FitConfig{Epochs: 5, BatchSize: 32, Loss: c.loss, Optimizer: c.opt, LearningRate: map[string]float64{"adam": 0.01, "sgd": 0.5}[c.opt], ValidationSplit: 0.2, Seed: 1, Progress: &progress})
			if err != nil {
				t.Fatal(err)
			}
			first, last := h.Epochs[0], h.Epochs[len(h.Epochs)-1]
			if !(last.Loss < first.Loss) || last.ValLoss > 0.2 {
				t.Errorf("loss %v → %v, val_loss %v: did not learn", first.Loss, last.Loss, last.ValLoss)
			}
			if c.loss != MeanSquaredError && (last.ValAccuracy < 0.95 || last.Accuracy < 0.9) {
				t.Errorf("accuracy %v, val_accuracy %v: want ≥ 0.9 and ≥ 0.95", last.Accuracy, last.ValAccuracy)
			}
			out := progress.String()
			if !strings.Contains(out, "Epoch 5/5") || !strings.Contains(out, "50/50 [==============================]") || !strings.Contains(out, "val_loss: ") {
				t.Errorf("progress output lacks the Keras-like lines:\n%s", out)
			}
		})
	}
}

func TestFitStopsEarlyAndKeepsTheBestWeights(t *testing.T) {
	x, y := twoBlobs(400)
	// Labels of the validation part are flipped: every epoch that learns
	// the training part makes val_loss worse.
	for i := 320; i < 400; i++ {
		y[i] = 1 - y[i]
	}
	net := &network.Network{Input: []int{2}, Layers: []network.Layer{{Kind: network.Dense, Units: 2, Activation: "softmax"}}}
	m, err := NewModel(net, 1)
	if err != nil {
		t.Fatal(err)
	}
	h, err := m.Fit(context.Background(), x, y, FitConfig{Epochs: 50, BatchSize: 16, Loss: CategoricalCrossEntropy, LearningRate: 0.05, ValidationSplit: 0.2, Patience: 2, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Epochs) >= 50 || len(h.Epochs) != h.BestEpoch+3 {
		t.Fatalf("ran %d epochs with best %d: want a stop 2 epochs after the best", len(h.Epochs), h.BestEpoch)
	}
	valLoss, _, err := m.Evaluate(x[320*2:], y[320:], CategoricalCrossEntropy)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(valLoss-h.Epochs[h.BestEpoch].ValLoss) > 1e-5 {
		t.Errorf("kept weights give val_loss %v, the best epoch had %v", valLoss, h.Epochs[h.BestEpoch].ValLoss)
	}
}

func TestFitRejectsMismatches(t *testing.T) {
	net := &network.Network{Input: []int{2}, Layers: []network.Layer{{Kind: network.Dense, Units: 1}}}
	m, _ := NewModel(net, 1)
	x, y := twoBlobs(100)
	cases := map[string]struct {
		cfg  FitConfig
		x, y []float32
		want string
	}{
		"no softmax":     {FitConfig{Epochs: 1, Loss: CategoricalCrossEntropy}, x, y, "needs the network to end in a softmax"},
		"targets":        {FitConfig{Epochs: 1, Loss: MeanSquaredError}, x, y[:10], "100 examples but 10 targets"},
		"ragged input":   {FitConfig{Epochs: 1, Loss: MeanSquaredError}, x[:3], y, "not a whole number"},
		"optimizer":      {FitConfig{Epochs: 1, Loss: MeanSquaredError, Optimizer: "lbfgs"}, x, y, `optimizer "lbfgs"`},
		"patience alone": {FitConfig{Epochs: 1, Loss: MeanSquaredError, Patience: 1}, x, y, "needs a validation split"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := m.Fit(context.Background(), c.x, c.y, c.cfg)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want %q", err, c.want)
			}
		})
	}
}

func TestSaveLoadPredictsTheSame(t *testing.T) {
	net := &network.Network{Input: []int{1, 6, 6}, Layers: []network.Layer{
		{Kind: network.Conv2D, Filters: 3, Kernel: []int{3, 3}, Activation: "relu"},
		{Kind: network.MaxPool2D, Pool: []int{2, 2}},
		{Kind: network.Flatten},
		{Kind: network.Dense, Units: 4, Activation: "softmax"},
	}}
	m, err := NewModel(net, 5)
	if err != nil {
		t.Fatal(err)
	}
	x := make([]float32, 3*36)
	for i := range x {
		x[i] = float32(i%7) / 7
	}
	before, err := m.Predict(x)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := m.Save(dir); err != nil {
		t.Fatal(err)
	}
	loaded, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	after, err := loaded.Predict(x)
	if err != nil {
		t.Fatal(err)
	}
	if len(before) != 12 || len(after) != 12 {
		t.Fatalf("outputs %d and %d, want 12", len(before), len(after))
	}
	for i := range before {
		if before[i] != after[i] {
			t.Fatalf("output %d: %v before save, %v after load", i, before[i], after[i])
		}
	}
}

// TestConvMatchesADirectLoop checks gorgonia's NCHW convolution, pooling
// and flatten order against a plain loop, so weights laid out as the
// network package documents mean what they say.
func TestConvMatchesADirectLoop(t *testing.T) {
	net := &network.Network{Input: []int{2, 5, 5}, Layers: []network.Layer{
		{Kind: network.Conv2D, Name: "c", Filters: 3, Kernel: []int{3, 3}},
		{Kind: network.MaxPool2D, Pool: []int{2, 2}},
		{Kind: network.Flatten},
	}}
	m, err := NewModel(net, 9)
	if err != nil {
		t.Fatal(err)
	}
	for i := range m.Weights["c.bias"].Data {
		m.Weights["c.bias"].Data[i] = float32(i) / 10
	}
	x := make([]float32, 2*5*5)
	for i := range x {
		x[i] = float32((i*37)%11) / 11
	}
	got, err := m.Predict(x)
	if err != nil {
		t.Fatal(err)
	}
	k, b := m.Weights["c.kernel"].Data, m.Weights["c.bias"].Data
	conv := func(f, i, j int) float32 {
		s := b[f]
		for c := 0; c < 2; c++ {
			for u := 0; u < 3; u++ {
				for v := 0; v < 3; v++ {
					s += k[((f*2+c)*3+u)*3+v] * x[(c*5+i+u)*5+j+v]
				}
			}
		}
		return s
	}
	var want []float32
	for f := 0; f < 3; f++ {
		for i := 0; i < 1; i++ {
			for j := 0; j < 1; j++ {
				best := float32(math.Inf(-1))
				for u := 0; u < 2; u++ {
					for v := 0; v < 2; v++ {
						best = max(best, conv(f, 2*i+u, 2*j+v))
					}
				}
				want = append(want, best)
			}
		}
	}
	if len(got) != len(want) {
		t.Fatalf("got %d values, want %d", len(got), len(want))
	}
	for i := range want {
		if math.Abs(float64(got[i]-want[i])) > 1e-5 {
			t.Errorf("value %d = %v, want %v", i, got[i], want[i])
		}
	}
}

func TestEmbeddingAverageMatchesADirectLoop(t *testing.T) {
	net := &network.Network{Input: []int{4}, Layers: []network.Layer{
		{Kind: network.Embedding, Name: "e", InputDim: 5, OutputDim: 3},
		{Kind: network.GlobalAveragePooling1D},
	}}
	m, err := NewModel(net, 2)
	if err != nil {
		t.Fatal(err)
	}
	x := []float32{0, 1, 4, 4, 2, 2, 2, 3}
	got, err := m.Predict(x)
	if err != nil {
		t.Fatal(err)
	}
	e := m.Weights["e.embeddings"].Data
	for ex := 0; ex < 2; ex++ {
		for d := 0; d < 3; d++ {
			var s float32
			for p := 0; p < 4; p++ {
				s += e[int(x[ex*4+p])*3+d]
			}
			if want := s / 4; math.Abs(float64(got[ex*3+d]-want)) > 1e-6 {
				t.Errorf("example %d dim %d = %v, want %v", ex, d, got[ex*3+d], want)
			}
		}
	}
	if _, err := m.Predict([]float32{0, 1, 5, 2}); err == nil || !strings.Contains(err.Error(), "token id 5") {
		t.Errorf("out-of-vocabulary id: %v", err)
	}
}

// TestFoldedRescalingComputesTheSame compares inference (the leading
// Rescaling folded into the next layer, Dense layers as one denseOp)
// against the network as training's graph runs it, with gorgonia's ops.
func TestFoldedRescalingComputesTheSame(t *testing.T) {
	cases := map[string]*network.Network{
		"dense": {Input: []int{6}, Layers: []network.Layer{
			{Kind: network.Rescaling, Scale: 1.0 / 255, Offset: -0.5},
			{Kind: network.Dense, Units: 4, Activation: "relu"}, {Kind: network.Dense, Units: 3, Activation: "softmax"}}},
		"dense activations": {Input: []int{5}, Layers: []network.Layer{
			{Kind: network.Rescaling, Scale: 0.01},
			{Kind: network.Dense, Units: 4, Activation: "tanh"}, {Kind: network.Dense, Units: 4, Activation: "sigmoid"},
			{Kind: network.Dense, Units: 3}, {Kind: network.Dense, Units: 1, Activation: "sigmoid"}}},
		"dense softmax": {Input: []int{5}, Layers: []network.Layer{
			{Kind: network.Dense, Units: 4, Activation: "linear"}, {Kind: network.Dense, Units: 6, Activation: "softmax"}}},
		"conv": {Input: []int{2, 5, 5}, Layers: []network.Layer{
			{Kind: network.Rescaling, Scale: 0.5, Offset: 2},
			{Kind: network.Conv2D, Filters: 3, Kernel: []int{3, 3}}, {Kind: network.Flatten}, {Kind: network.Dense, Units: 2}}},
		"conv same padding, not folded": {Input: []int{1, 4, 4}, Layers: []network.Layer{
			{Kind: network.Rescaling, Scale: 0.5, Offset: 2},
			{Kind: network.Conv2D, Filters: 2, Kernel: []int{3, 3}, Padding: "same"}, {Kind: network.Flatten}}},
	}
	for name, net := range cases {
		t.Run(name, func(t *testing.T) {
			m, err := NewModel(net, 3)
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range m.Weights {
				for i := range a.Data {
					a.Data[i] += 0.01 * float32(i%5) // non-zero biases too
				}
			}
			n := 3
			x := make([]float32, n*size(net.Input))
			for i := range x {
				x[i] = float32((i * 53) % 256)
			}
			folded, err := m.Predict(x)
			if err != nil {
				t.Fatal(err)
			}
			// The training graph applies the Rescaling as written.
			gr, err := compile(net, m.Weights, n, forPlainTraining)
			if err != nil {
				t.Fatal(err)
			}
			vm := G.NewTapeMachine(gr.g)
			defer vm.Close()
			if err := gr.setInput(x); err != nil {
				t.Fatal(err)
			}
			if err := vm.RunAll(); err != nil {
				t.Fatal(err)
			}
			want := gr.out.Value().Data().([]float32)
			if len(want) != len(folded) {
				t.Fatalf("%d outputs, want %d", len(folded), len(want))
			}
			for i := range want {
				if math.Abs(float64(folded[i]-want[i])) > 1e-4*math.Max(1, math.Abs(float64(want[i]))) {
					t.Errorf("output %d: folded %v, as written %v", i, folded[i], want[i])
				}
			}
		})
	}
}

// endsAfter is a context whose Err turns non-nil at its n-th call, so a
// test can end a run between two given layers.
type endsAfter struct {
	context.Context
	calls, n int
}

func (c *endsAfter) Err() error {
	c.calls++
	if c.calls >= c.n {
		return context.Canceled
	}
	return nil
}

func TestInferenceStopsBetweenLayersWhenCancelled(t *testing.T) {
	net := &network.Network{Input: []int{4}}
	for range 10 {
		net.Layers = append(net.Layers, network.Layer{Kind: network.Dense, Units: 4, Activation: "relu"})
	}
	m, err := NewModel(net, 1)
	if err != nil {
		t.Fatal(err)
	}
	// The plan reads Err before each layer: ending at the 4th read stops
	// the run after layer 3 of 10, with 4 reads in all. The graph reads
	// it once before the batch, once after each layer but the last, and
	// once more to name the error: 5 reads for the same stop.
	for _, c := range []struct {
		name  string
		make  func(*network.Network, network.Weights, int) (*Inference, error)
		reads int
	}{{"plan", NewInference, 4}, {"graph", newGraphInference, 5}} {
		t.Run(c.name, func(t *testing.T) {
			inf, err := c.make(net, m.Weights, 2)
			if err != nil {
				t.Fatal(err)
			}
			if (inf.plan != nil) != (c.name == "plan") {
				t.Fatalf("%s: plan %v", c.name, inf.plan != nil)
			}
			stopsBetweenLayers(t, inf, c.reads)
		})
	}
}

func stopsBetweenLayers(t *testing.T, inf *Inference, reads int) {
	x := []float32{1, 2, 3, 4, 5, 6, 7, 8}
	want, err := inf.Run(x)
	if err != nil {
		t.Fatal(err)
	}
	ctx := &endsAfter{Context: context.Background(), n: 4}
	if _, err := inf.RunContext(ctx, x); !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
	if ctx.calls != reads {
		t.Errorf("the run read its context %d times, want %d (it went on after the cancellation)", ctx.calls, reads)
	}
	// The same inference still computes the same outputs afterwards.
	got, err := inf.Run(x)
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("after a cancelled run output %d is %v, want %v", i, got[i], want[i])
		}
	}
}
