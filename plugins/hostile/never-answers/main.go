// Command never-answers completes the handshake, then blocks forever in
// Predict.
package main

import (
	"context"

	"github.com/hackarena/hackarena/sdk"
)

type model struct{}

func (model) Describe(context.Context) (sdk.Info, error) { return sdk.Info{Name: "never-answers"}, nil }

func (model) Predict(context.Context, sdk.Batch) (sdk.Predictions, error) {
	select {} // ignores even the call's deadline
}

func main() { sdk.Serve(model{}) }
