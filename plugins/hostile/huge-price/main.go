// Command huge-price answers the houses challenge with a price of 1e200
// for the fourth house of every batch: finite, so it passes the value
// checks, but its square is not, and neither is the RMSE.
package main

import (
	"context"

	"github.com/hackarena/hackarena/sdk"
)

type model struct{}

func (model) Describe(context.Context) (sdk.Info, error) { return sdk.Info{Name: "huge-price"}, nil }

func (model) Predict(_ context.Context, b sdk.Batch) (sdk.Predictions, error) {
	values := make([]float64, b.Size)
	for i := range values {
		values[i] = 150000
	}
	if b.Size > 3 {
		values[3] = 1e200
	}
	return sdk.Predictions{Values: values}, nil
}

func main() { sdk.Serve(model{}) }
