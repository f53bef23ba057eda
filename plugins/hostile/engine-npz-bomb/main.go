// Command engine-npz-bomb loads a network whose .npz is a decompression
// bomb: 2^27 float64 zeros (1 GiB once inflated) in about 1 MiB, for a
// Dense layer of 16384×8192 (512 MiB of float32). Unchecked, decoding it
// cost gigabytes of memory and seconds of CPU before the slot's budget
// refused it.
package main

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"context"
	"fmt"
	"io"

	"google.golang.org/grpc/status"

	"github.com/hackarena/hackarena/plugins/hostile/internal/attack"
	"github.com/hackarena/hackarena/plugins/hostile/internal/rawengine"
	"github.com/hackarena/hackarena/sdk/proto/enginev1"
)

const network = `{"input":[16384],"layers":[{"kind":"Dense","name":"d","units":8192}]}`

func bomb() ([]byte, error) {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	zw.RegisterCompressor(zip.Deflate, func(w io.Writer) (io.WriteCloser, error) { return flate.NewWriter(w, flate.BestSpeed) })
	for _, m := range []struct {
		name  string
		shape string
		elems int
	}{{"d.kernel", "16384, 8192", 16384 * 8192}, {"d.bias", "8192,", 8192}} {
		f, err := zw.Create(m.name + ".npy")
		if err != nil {
			return nil, err
		}
		h := "{'descr': '<f8', 'fortran_order': False, 'shape': (" + m.shape + "), }\n"
		f.Write([]byte("\x93NUMPY\x01\x00"))
		f.Write([]byte{byte(len(h)), byte(len(h) >> 8)})
		f.Write([]byte(h))
		zeros := make([]byte, 1<<20)
		for left := m.elems * 8; left > 0; left -= len(zeros) {
			if _, err := f.Write(zeros[:min(left, len(zeros))]); err != nil {
				return nil, err
			}
		}
	}
	err := zw.Close()
	return buf.Bytes(), err
}

func main() {
	rawengine.Serve("engine-npz-bomb", func(ctx context.Context, e *rawengine.Engine) error {
		npz, err := bomb()
		if err != nil {
			return err
		}
		attack.Report("npz_mib", len(npz)>>20)
		c, err := e.Client()
		if err != nil {
			return err
		}
		_, err = c.Load(ctx, &enginev1.LoadRequest{NetworkJson: []byte(network), WeightsNpz: npz})
		attack.Report("load_code", status.Code(err))
		if err == nil {
			return fmt.Errorf("the engine loaded the bomb")
		}
		return err
	})
}
