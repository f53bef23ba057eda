// Command houses-mlp is the reference houses submission: an MLP on
// standardised numeric and one-hot categorical columns predicts
// log(SalePrice) on the judge's Engine (see train/).
package main

import (
	_ "embed"
	"fmt"
	"os"

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
	//go:embed encoder.json
	encoderJSON []byte
)

func main() {
	enc, err := features.LoadTableEncoder(encoderJSON)
	if err != nil {
		fmt.Fprintln(os.Stderr, "houses-mlp:", err)
		os.Exit(1)
	}
	sdk.Serve(&served.Model{
		Name: "houses-mlp", Version: "1",
		NetworkJSON: networkJSON, WeightsNPZ: weightsNPZ,
		Features: func(b sdk.Batch) ([]float32, error) { return enc.Encode(b.Columns, b.Size) },
		Answer: func(out []float32, n int) sdk.Predictions {
			prices := make([]float64, n)
			for i := range prices {
				prices[i] = enc.Price(out[i])
			}
			return sdk.Predictions{Values: prices}
		},
	})
}
