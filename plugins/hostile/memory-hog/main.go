// Command memory-hog allocates (and touches) 2 GiB in Predict, twice the
// MNIST memory limit. It touches one byte per page: that commits the page
// as surely as writing all of it, and reaches the limit in a fraction of
// the CPU time, so a starved CPU cannot make the run time out first.
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
		for j := 0; j < len(chunk); j += 4096 {
			chunk[j] = byte(j>>12) | 1
		}
		sink = append(sink, chunk)
	}
	return sdk.Predictions{Classes: make([]int, b.Size)}, nil
}

func main() { sdk.Serve(model{}) }
