// Command engine-npz-bomb loads a network whose .npz is a decompression
// bomb: two arrays of 2^26 float64 zeros (1 GiB once inflated) in about
// 2 MiB, for two Dense layers of 8192×8192 (512 MiB of float32). Unchecked, decoding it
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

const network = `{"input":[8192],"layers":[{"kind":"Dense","name":"d","units":8192},{"kind":"Dense","name":"e","units":8192}]}`

func bomb() ([]byte, error) {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	zw.RegisterCompressor(zip.Deflate, func(w io.Writer) (io.WriteCloser, error) { return flate.NewWriter(w, flate.BestSpeed) })
	for _, m := range []struct {
		name  string
		shape string
		elems int
	}{{"d.kernel", "8192, 8192", 8192 * 8192}, {"d.bias", "8192,", 8192}, {"e.kernel", "8192, 8192", 8192 * 8192}, {"e.bias", "8192,", 8192}} {
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
