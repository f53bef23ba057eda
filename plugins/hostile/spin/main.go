// Command spin burns CPU in Predict and never returns.
package main

import (
	"context"

	"github.com/hackarena/hackarena/sdk"
)

type model struct{}

func (model) Describe(context.Context) (sdk.Info, error) { return sdk.Info{Name: "spin"}, nil }

// spins counts loop turns; the check on it keeps the loop from being an
// empty one (and is never true).
var spins uint64

func (model) Predict(context.Context, sdk.Batch) (sdk.Predictions, error) {
	for spins != ^uint64(0) {
		spins++
	}
	return sdk.Predictions{}, nil
}

func main() { sdk.Serve(model{}) }
