package judge

import (
	"context"
	"testing"
	"time"
)

// BenchmarkBootstrapCost judges the reference MNIST plugin in bubblewrap,
// then computes its bootstrap (1,000 resamples of each half), and reports
// the judging with the bootstrap as a ratio to the judging without, from
// the same runs (make bench-bootstrap; issue 18's target is ≤ 1.10).
func BenchmarkBootstrapCost(b *testing.B) {
	ch := loadMNIST(b)
	hidden, err := ch.Hidden()
	if err != nil {
		b.Fatal(err)
	}
	binary := buildPlugin(b, "mnist-centroid")
	e := newEvaluatorOn(b, backends(b)["bwrap"], time.Minute)
	var judging, boot time.Duration
	b.ResetTimer()
	for range b.N {
		begin := time.Now()
		_, pred, _, err := e.Evaluate(context.Background(), "team", binary, ch)
		if err != nil {
			b.Fatal(err)
		}
		judging += time.Since(begin)
		begin = time.Now()
		if _, err := BootstrapOf(ch, hidden, pred); err != nil {
			b.Fatal(err)
		}
		boot += time.Since(begin)
	}
	n := float64(b.N)
	b.ReportMetric(float64(judging.Milliseconds())/n, "judge-ms")
	b.ReportMetric(float64(boot.Milliseconds())/n, "bootstrap-ms")
	b.ReportMetric(float64(judging+boot)/float64(judging), "x-with-bootstrap")
}
