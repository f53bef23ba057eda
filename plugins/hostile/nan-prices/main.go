// Command nan-prices answers the houses challenge with a NaN price for the
// fourth house of every batch.
package main

import (
	"context"
	"math"

	"github.com/hackarena/hackarena/sdk"
)

type model struct{}

func (model) Describe(context.Context) (sdk.Info, error) { return sdk.Info{Name: "nan-prices"}, nil }

func (model) Predict(_ context.Context, b sdk.Batch) (sdk.Predictions, error) {
	values := make([]float64, b.Size)
	for i := range values {
		values[i] = 150000
	}
	if b.Size > 3 {
		values[3] = math.NaN()
	}
	return sdk.Predictions{Values: values}, nil
}

func main() { sdk.Serve(model{}) }
