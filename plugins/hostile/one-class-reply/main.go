// Command one-class-reply answers a batch with 60 MiB of probabilities in
// rows of one class: fifteen million rows, were the judge to build them
// before it compares the row count with the batch.
package main

import (
	"context"

	"github.com/hackarena/hackarena/plugins/hostile/internal/rawengine"
	"github.com/hackarena/hackarena/sdk/proto/pluginv1"
)

func main() {
	rawengine.ServeWith("one-class-reply", func(context.Context, *rawengine.Engine) error { return nil }, rawengine.Options{
		Reply: func(req *pluginv1.PredictRequest) *pluginv1.PredictResponse {
			return &pluginv1.PredictResponse{
				Classes:       make([]int64, req.GetBatch().GetSize()),
				Probabilities: make([]float32, 15<<20),
				NumClasses:    1,
			}
		},
	})
}
