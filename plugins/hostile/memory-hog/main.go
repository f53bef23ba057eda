// Command memory-hog allocates (and touches) 2 GiB in Predict, twice the
// MNIST memory limit.
package main

import (
	"context"

	"github.com/hackarena/hackarena/sdk"
)

type model struct{}

func (model) Describe(context.Context) (sdk.Info, error) { return sdk.Info{Name: "memory-hog"}, nil }

var sink [][]byte

func (model) Predict(_ context.Context, b sdk.Batch) (sdk.Predictions, error) {
	for i := 0; i < 32; i++ {
		chunk := make([]byte, 64<<20)
		for j := range chunk {
			chunk[j] = byte(j)
		}
		sink = append(sink, chunk)
	}
	return sdk.Predictions{Classes: make([]int, b.Size)}, nil
}

func main() { sdk.Serve(model{}) }
