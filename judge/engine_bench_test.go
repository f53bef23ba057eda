package judge

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hackarena/hackarena/gpu"
	"github.com/hackarena/hackarena/sdk/network"
	"github.com/hackarena/hackarena/sdk/nn"
)

// BenchmarkJudgeOverhead scores mnist-mlp on the 10k test images through
// the sandboxed plugin, go-plugin's broker and the Engine, timed from the
// end of the handshake to the end of scoring, against the same network
// run in-process on the same images in the same batches (make
// bench-engine). x-inprocess is the ratio.
// x-inprocess-engine is the cost of the engine process boundary: the
// same judging with the Engine served in the judge's own process, as it
// was before engine processes. The slots are shared as `make run` shares
// them (two), and each judging runs alone, so its engine process works
// with every core, as the in-process network does.
func BenchmarkJudgeOverhead(b *testing.B) {
	b.Logf("%d BLAS thread(s) in process (%s)", gpu.ShareCPU(1), gpu.BLAS())
	ch := loadMNIST(b)
	hidden, err := ch.Hidden()
	if err != nil {
		b.Fatal(err)
	}
	dir := filepath.Join("..", "plugins", "mnist-mlp")
	js, err := os.ReadFile(filepath.Join(dir, "network.json"))
	if err != nil {
		b.Fatal(err)
	}
	npz, err := os.ReadFile(filepath.Join(dir, "weights.npz"))
	if err != nil {
		b.Fatal(err)
	}
	const batch = 1000
	// In process: decode the network, compile it, run every batch.
	inProcess := func() time.Duration {
		start := time.Now()
		net, err := network.Decode(js)
		if err != nil {
			b.Fatal(err)
		}
		w, err := network.ReadNPZ(npz)
		if err != nil {
			b.Fatal(err)
		}
		infs := map[int]*nn.Inference{}
		for off := 0; off < hidden.Count; off += batch {
			n := min(batch, hidden.Count-off)
			if infs[n] == nil {
				if infs[n], err = nn.NewInference(net, w, n); err != nil {
					b.Fatal(err)
				}
			}
			x := make([]float32, n*784)
			for i, p := range hidden.Batch(off, n).Images.Data {
				x[i] = float32(p) // the network's Rescaling layer scales
			}
			if _, err := infs[n].Run(x); err != nil {
				b.Fatal(err)
			}
		}
		return time.Since(start)
	}
	base := inProcess() // warm up
	plugin := buildPlugin(b, "mnist-mlp")
	sb := backends(b)
	for _, name := range []string{"bwrap", "docker"} {
		b.Run(name, func(b *testing.B) {
			// The same judge with the Engine in engine processes (as it
			// runs) and in its own process (as it ran before), in turns.
			judged, started := map[bool]time.Duration{}, map[bool]time.Duration{}
			evaluators := map[bool]*Evaluator{}
			for _, inProcess := range []bool{false, true} {
				e := newEvaluatorOn(b, sb[name], 2*time.Minute)
				e.Engines = newPool(b, 2, 2<<30, inProcess)
				e.Phase = func(phase string, d time.Duration) {
					switch phase {
					case "judge":
						judged[inProcess] += d
					case "start":
						started[inProcess] += d
					}
				}
				evaluators[inProcess] = e
			}
			base = 0
			for range b.N {
				base += inProcess()
				for _, inProcessEngine := range []bool{false, true} {
					if _, _, _, err := evaluators[inProcessEngine].Evaluate(context.Background(), "team", plugin, ch); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(judged[false].Milliseconds())/float64(b.N), "judge-ms")
			b.ReportMetric(float64(judged[true].Milliseconds())/float64(b.N), "judge-inprocess-engine-ms")
			b.ReportMetric(float64(base.Milliseconds())/float64(b.N), "inprocess-ms")
			// Not part of the comparison (the sandbox's start and the
			// handshake), reported so that work moved before the
			// handshake shows.
			b.ReportMetric(float64(started[false].Milliseconds())/float64(b.N), "start-ms")
			b.ReportMetric(float64(judged[false])/float64(base), "x-inprocess")
			b.ReportMetric(float64(judged[false])/float64(judged[true]), "x-inprocess-engine")
		})
	}
}
