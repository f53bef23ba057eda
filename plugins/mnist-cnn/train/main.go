// Command train fits mnist-cnn's network (the Keras CNN example after a
// Rescaling 1/255: Conv 32 3×3 → MaxPool → Conv 64 3×3 → MaxPool → Conv
// 64 3×3 → Flatten → Dense 64 → Dense 10 softmax, Adam) on the public
// training images and writes its weights beside the plugin.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/hackarena/hackarena/plugins/internal/refdata"
	"github.com/hackarena/hackarena/sdk/network"
	"github.com/hackarena/hackarena/sdk/nn"
)

func main() {
	dir := flag.String("o", ".", "directory to write network.json and weights.npz into")
	epochs := flag.Int("epochs", 5, "epochs")
	flag.Parse()
	if err := run(*dir, *epochs); err != nil {
		fmt.Fprintln(os.Stderr, "train mnist-cnn:", err)
		os.Exit(1)
	}
}

func run(dir string, epochs int) error {
	ctx := context.Background()
	x, y, err := refdata.MNIST(ctx)
	if err != nil {
		return err
	}
	net := &network.Network{Input: []int{1, 28, 28}, Layers: []network.Layer{
		{Kind: network.Rescaling, Scale: 1.0 / 255},
		{Kind: network.Conv2D, Name: "conv1", Filters: 32, Kernel: []int{3, 3}, Activation: "relu"},
		{Kind: network.MaxPool2D, Pool: []int{2, 2}},
		{Kind: network.Conv2D, Name: "conv2", Filters: 64, Kernel: []int{3, 3}, Activation: "relu"},
		{Kind: network.MaxPool2D, Pool: []int{2, 2}},
		{Kind: network.Conv2D, Name: "conv3", Filters: 64, Kernel: []int{3, 3}, Activation: "relu"},
		{Kind: network.Flatten},
		{Kind: network.Dense, Name: "hidden", Units: 64, Activation: "relu"},
		{Kind: network.Dense, Name: "out", Units: 10, Activation: "softmax"},
	}}
	_, err = refdata.Train(ctx, dir, net, x, y, nn.FitConfig{Epochs: epochs, BatchSize: 64, Loss: nn.CategoricalCrossEntropy, Seed: 1})
	return err
}
