// Command train fits mnist-mlp's network (the Keras MNIST example:
// Rescaling 1/255 → Flatten → Dense 128 ReLU → Dropout 0.2 → Dense 10 softmax, Adam, 5
// epochs) on the public training images and writes its weights beside
// the plugin.
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
		fmt.Fprintln(os.Stderr, "train mnist-mlp:", err)
		os.Exit(1)
	}
}

func run(dir string, epochs int) error {
	ctx := context.Background()
	x, y, err := refdata.MNIST(ctx)
	if err != nil {
		return err
	}
	net := &network.Network{Input: []int{784}, Layers: []network.Layer{
		{Kind: network.Rescaling, Scale: 1.0 / 255},
		{Kind: network.Dense, Name: "hidden", Units: 128, Activation: "relu"},
		{Kind: network.Dropout, Rate: 0.2},
		{Kind: network.Dense, Name: "out", Units: 10, Activation: "softmax"},
	}}
	_, err = refdata.Train(ctx, dir, net, x, y, nn.FitConfig{Epochs: epochs, BatchSize: 32, Loss: nn.CategoricalCrossEntropy, Seed: 1})
	return err
}
