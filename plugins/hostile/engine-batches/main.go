// Command engine-batches says it reads image batches from the judge's
// Engine (sdk.Info.EngineReadsBatches) and checks the judge's side of that:
// a batch with an id must come without its images, one without an id (no
// Engine lent) with them. It answers class 0 for everything.
package main

import (
	"context"
	"fmt"

	"github.com/hackarena/hackarena/sdk"
)

type model struct{}

func (model) Describe(context.Context) (sdk.Info, error) {
	return sdk.Info{Name: "engine-batches", EngineReadsBatches: true}, nil
}

func (model) Predict(_ context.Context, b sdk.Batch) (sdk.Predictions, error) {
	switch {
	case b.ID != 0 && b.Images != nil:
		return sdk.Predictions{}, fmt.Errorf("batch %d came with %d bytes of images, though the Engine has them", b.ID, len(b.Images.Data))
	case b.ID == 0 && b.Images == nil:
		return sdk.Predictions{}, fmt.Errorf("a batch without an Engine came without its images")
	}
	return sdk.Predictions{Classes: make([]int, b.Size)}, nil
}

func main() { sdk.Serve(model{}) }
