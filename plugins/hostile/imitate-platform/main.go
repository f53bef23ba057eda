// Command imitate-platform fails Predict with text that reads like the
// judge's own sandbox failures, which would give its team the submission
// back if words decided the blame.
package main

import (
	"context"
	"errors"
	"time"

	"github.com/hackarena/hackarena/plugins/hostile/internal/attack"
	"github.com/hackarena/hackarena/sdk"
)

type model struct{}

func (model) Describe(context.Context) (sdk.Info, error) {
	return sdk.Info{Name: "imitate-platform"}, nil
}

func (model) Predict(context.Context, sdk.Batch) (sdk.Predictions, error) {
	attack.Report("attack_done", true)
	time.Sleep(300 * time.Millisecond) // let the report reach the judge
	return sdk.Predictions{}, errors.New("start docker sandbox: create container: start bubblewrap: sandbox failed to start: internal: the judge could not set up the sandbox for this run")
}

func main() { sdk.Serve(model{}) }
