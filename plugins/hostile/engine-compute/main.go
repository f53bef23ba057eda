// Command engine-compute asks the Engine for more compute than its run
// has time for: two networks of two Dense 2048×2048 layers, run on
// batches of 2048 (34 GFLOP a call) from four goroutines at once, over
// and over until the run ends. Unchecked, one such call took seconds of
// the judge's CPU past a 200 ms deadline and held the slot after the
// plugin was gone.
package main

import (
	"archive/zip"
	"bytes"
	"context"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hackarena/hackarena/plugins/hostile/internal/attack"
	"github.com/hackarena/hackarena/plugins/hostile/internal/rawengine"
	"github.com/hackarena/hackarena/sdk/proto/enginev1"
)

const (
	width   = 2048
	network = `{"input":[2048],"layers":[{"kind":"Dense","name":"a","units":2048},{"kind":"Dense","name":"b","units":2048}]}`
)

// zeros is the .npz of the network with every weight 0 (it compresses to
// almost nothing).
func zeros() []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, m := range []struct {
		name, shape string
		elems       int
	}{{"a.kernel", "2048, 2048", width * width}, {"a.bias", "2048,", width}, {"b.kernel", "2048, 2048", width * width}, {"b.bias", "2048,", width}} {
		f, _ := zw.Create(m.name + ".npy")
		h := "{'descr': '<f4', 'fortran_order': False, 'shape': (" + m.shape + "), }\n"
		f.Write([]byte("\x93NUMPY\x01\x00"))
		f.Write([]byte{byte(len(h)), byte(len(h) >> 8)})
		f.Write([]byte(h))
		f.Write(make([]byte, 4*m.elems))
	}
	zw.Close()
	return buf.Bytes()
}

func main() {
	rawengine.Serve("engine-compute", func(ctx context.Context, e *rawengine.Engine) error {
		c, err := e.Client()
		if err != nil {
			return err
		}
		npz := zeros()
		input := make([]byte, width*width)
		var runs, refused atomic.Int64
		var wg sync.WaitGroup
		for range 2 {
			resp, err := c.Load(ctx, &enginev1.LoadRequest{NetworkJson: []byte(network), WeightsNpz: npz})
			if err != nil {
				return err
			}
			wg.Add(2)
			for range 2 {
				go func() {
					defer wg.Done()
					for ctx.Err() == nil {
						_, err := c.Run(ctx, &enginev1.RunRequest{Handle: resp.GetHandle(), Shape: []int64{width, width}, Data: input, Type: enginev1.InputType_INPUT_TYPE_UINT8})
						switch status.Code(err) {
						case codes.OK:
							runs.Add(1)
						case codes.ResourceExhausted:
							if refused.Add(1) == 1 {
								attack.Report("first_refusal", status.Convert(err).Message())
							}
						}
					}
				}()
			}
		}
		wg.Wait()
		attack.Report("runs", runs.Load())
		attack.Report("refused", refused.Load())
		return ctx.Err()
	})
}
