// Command huge-reply answers the first batch with about 72 MB of
// predictions.
package main

import (
	"context"

	"github.com/hackarena/hackarena/sdk"
)

type model struct{}

func (model) Describe(context.Context) (sdk.Info, error) { return sdk.Info{Name: "huge-reply"}, nil }

func (model) Predict(context.Context, sdk.Batch) (sdk.Predictions, error) {
	classes := make([]int, 12_000_000)
	for i := range classes {
		classes[i] = 1 << 40 // six bytes each on the wire
	}
	return sdk.Predictions{Classes: classes}, nil
}

func main() { sdk.Serve(model{}) }
