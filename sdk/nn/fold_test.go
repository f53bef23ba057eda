package nn

import (
	"testing"

	"github.com/hackarena/hackarena/sdk/network"
)

// TestARescalingBeforeAPaddedConvolutionStaysApart: a convolution's zero
// padding stands for x = 0 after the rescaling, so an offset must not be
// folded into its bias (an ONNX model that normalises its own input, then
// convolves with padding 1).
func TestARescalingBeforeAPaddedConvolutionStaysApart(t *testing.T) {
	net := &network.Network{Input: []int{1, 3, 3}, Layers: []network.Layer{
		{Kind: network.Rescaling, Scale: 2, Offset: -1},
		{Kind: network.Conv2D, Name: "c", Filters: 1, Kernel: []int{3, 3}, Pads: []int{1, 1, 1, 1}},
	}}
	ones := make([]float32, 9)
	for i := range ones {
		ones[i] = 1
	}
	w := network.Weights{"c.kernel": {Shape: []int{1, 1, 3, 3}, Data: ones}, "c.bias": {Shape: []int{1}, Data: []float32{0}}}
	inf, err := NewInference(net, w, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer inf.Close()
	out, err := inf.Run(make([]float32, 9)) // every x is 0, so every rescaled value is -1
	if err != nil {
		t.Fatal(err)
	}
	// A corner sees 4 of the input's cells and 5 of padding; the centre 9.
	if out[0] != -4 || out[4] != -9 {
		t.Fatalf("outputs %v, want -4 at a corner and -9 in the centre", out)
	}
}
