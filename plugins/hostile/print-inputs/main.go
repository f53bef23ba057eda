// Command print-inputs prints every hidden example it is sent, texts,
// columns or image bytes, to stdout and stderr, and answers class 0 (or
// 0 for a regression): a team that could read its log would read the
// hidden set.
package main

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/hackarena/hackarena/sdk"
)

type model struct{}

// Describe prints on each of its outputs: go-plugin forwards stdout and
// stderr over gRPC, and log writes to the stderr the plugin started with.
func (model) Describe(context.Context) (sdk.Info, error) {
	fmt.Println("print-inputs: starting up")
	fmt.Fprintln(os.Stderr, "print-inputs: stderr is ready")
	log.Print("print-inputs: the log is ready")
	return sdk.Info{Name: "print-inputs"}, nil
}

func (model) Predict(_ context.Context, b sdk.Batch) (sdk.Predictions, error) {
	for _, t := range b.Texts {
		fmt.Println("input:", t)
		fmt.Fprintln(os.Stderr, "input:", t)
	}
	for _, c := range b.Columns {
		fmt.Println("column:", c.Name, c.Numbers, c.Strings)
	}
	if b.Images != nil {
		fmt.Printf("images: %x\n", b.Images.Data)
	}
	return sdk.Predictions{Classes: make([]int, b.Size), Values: make([]float64, b.Size)}, nil
}

func main() { sdk.Serve(model{}) }
