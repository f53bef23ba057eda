// Command mnist-cnn is a reference MNIST submission whose network (see
// train/) runs on the judge's Engine; the weights are embedded.
package main

import (
	_ "embed"

	"github.com/hackarena/hackarena/plugins/internal/features"
	"github.com/hackarena/hackarena/plugins/internal/served"
	"github.com/hackarena/hackarena/sdk"
)

//go:generate go run ./train -o .

var (
	//go:embed network.json
	networkJSON []byte
	//go:embed weights.npz
	weightsNPZ []byte
)

func main() {
	sdk.Serve(&served.Model{
		Name: "mnist-cnn", Version: "1",
		NetworkJSON: networkJSON, WeightsNPZ: weightsNPZ,
		Bytes: features.MNISTImages, JudgeBatch: true,
		Answer: served.Classes,
	})
}
