// Command wrong-count answers every batch with one prediction too few.
package main

import (
	"context"

	"github.com/hackarena/hackarena/sdk"
)

type model struct{}

func (model) Describe(context.Context) (sdk.Info, error) { return sdk.Info{Name: "wrong-count"}, nil }

func (model) Predict(_ context.Context, b sdk.Batch) (sdk.Predictions, error) {
	return sdk.Predictions{Classes: make([]int, b.Size-1)}, nil
}

func main() { sdk.Serve(model{}) }
