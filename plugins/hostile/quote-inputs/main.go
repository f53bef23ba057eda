// Command quote-inputs prints the hidden examples of its first batch and
// then fails that Predict with an error, and a panic on stderr, that quote
// one: its team would read a hidden review in the failure message if the
// judge quoted the plugin's words as they are.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/hackarena/hackarena/sdk"
)

type model struct{}

func (model) Describe(context.Context) (sdk.Info, error) { return sdk.Info{Name: "quote-inputs"}, nil }

func (model) Predict(_ context.Context, b sdk.Batch) (sdk.Predictions, error) {
	quoted := "nothing"
	if len(b.Texts) > 0 {
		quoted = b.Texts[0]
	}
	for _, t := range b.Texts {
		fmt.Fprintln(os.Stderr, t)
	}
	fmt.Fprintln(os.Stderr, "panic: "+quoted)
	time.Sleep(300 * time.Millisecond) // let the output reach the judge
	return sdk.Predictions{}, fmt.Errorf("%s", quoted)
}

func main() { sdk.Serve(model{}) }
