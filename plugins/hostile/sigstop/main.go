// Command sigstop stops itself in Predict: it uses no CPU, so only the
// wall clock can end it.
package main

import (
	"context"
	"syscall"

	"github.com/hackarena/hackarena/sdk"
)

type model struct{}

func (model) Describe(context.Context) (sdk.Info, error) { return sdk.Info{Name: "sigstop"}, nil }

func (model) Predict(context.Context, sdk.Batch) (sdk.Predictions, error) {
	_ = syscall.Kill(syscall.Getpid(), syscall.SIGSTOP)
	select {}
}

func main() { sdk.Serve(model{}) }
