package judge

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"sync"

	"github.com/hackarena/hackarena/challenges"
	"github.com/hackarena/hackarena/judge/scoring"
	"github.com/hackarena/hackarena/platform/store"
)

// Resamples is how many bootstrap resamples a run's intervals rest on.
const Resamples = 1000

// resampleSeed is the seed of a half's resamples: every submission to a
// challenge is scored on the same resamples (the split's seed names the
// hidden set and its halves), so two of them can be compared resample by
// resample (a paired bootstrap).
func resampleSeed(ch *challenges.Challenge, half int) (uint64, uint64) {
	return ch.Spec.Split.Seed, 0x9e3779b97f4a7c15 ^ uint64(half)
}

// BootstrapOf computes, for each half of the hidden set, the primary
// metric on Resamples resamples (drawn with replacement from the half's
// examples, the same draws for every submission) and its 95% interval.
func BootstrapOf(ch *challenges.Challenge, hidden *challenges.HiddenSet, p *Predictions) (*store.Bootstrap, error) {
	out := &store.Bootstrap{Metric: ch.PrimaryMetric, Resamples: Resamples}
	halves := [2]*store.HalfBootstrap{}
	errs := [2]error{}
	// The halves draw from generators of their own: one core each.
	var wg sync.WaitGroup
	for half, mask := range [2][]bool{hidden.Public, hidden.Private()} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var examples []int
			for i, in := range mask {
				if in {
					examples = append(examples, i)
				}
			}
			samples, err := resampled(ch, hidden, p, examples, half, Resamples)
			if err != nil {
				errs[half] = err
				return
			}
			h := &store.HalfBootstrap{Samples: make([]float32, len(samples))}
			for i, v := range samples {
				h.Samples[i] = float32(v)
			}
			h.Lo, h.Hi = store.Percentile(samples, 2.5), store.Percentile(samples, 97.5)
			halves[half] = h
		}()
	}
	wg.Wait()
	if err := errors.Join(errs[:]...); err != nil {
		return nil, err
	}
	out.Public, out.Private = halves[0], halves[1]
	return out, nil
}

// resampled is the primary metric on b resamples of examples. Metrics of
// the confusion matrix alone count each resample's cells, and log loss
// sums each example's term, so a resample costs a draw and an addition per
// example; the rest (ROC AUC, regression metrics) are scored on the
// resample itself.
func resampled(ch *challenges.Challenge, hidden *challenges.HiddenSet, p *Predictions, examples []int, half, b int) ([]float64, error) {
	n := len(examples)
	if n == 0 {
		return nil, fmt.Errorf("bootstrap: the %s half has no examples", halfName(half))
	}
	metric := ch.PrimaryMetric
	d := newDraws(resampleSeed(ch, half))
	out := make([]float64, b)
	switch {
	case ch.Task == scoring.TaskClassification && scoring.OfConfusion(metric):
		return byConfusion(ch, hidden, p, examples, d, out)
	case ch.Task == scoring.TaskClassification && metric == "log_loss" && p.Probabilities != nil:
		terms := make([]float64, n)
		for i, e := range examples {
			terms[i] = scoring.LogLossTerm(hidden.Labels[e], p.Probabilities[e])
		}
		for r := range out {
			var sum float64
			for range n {
				sum += terms[d.below(n)]
			}
			out[r] = sum / float64(n)
		}
		return out, nil
	}
	return byScoring(ch, hidden, p, examples, d, out)
}

// byScoring fills out with the metric scored on each resample itself.
func byScoring(ch *challenges.Challenge, hidden *challenges.HiddenSet, p *Predictions, examples []int, d *draws, out []float64) ([]float64, error) {
	n, metric := len(examples), ch.PrimaryMetric
	metrics := []string{metric}
	// One set of buffers for every resample.
	var truthC, predC []int
	var probs [][]float64
	var truthV, predV []float64
	if ch.Task == scoring.TaskRegression {
		truthV, predV = make([]float64, n), make([]float64, n)
	} else {
		truthC, predC = make([]int, n), make([]int, n)
		if p.Probabilities != nil {
			probs = make([][]float64, n)
		}
	}
	for r := range out {
		var sc scoring.Score
		var err error
		if ch.Task == scoring.TaskRegression {
			for i := range n {
				e := examples[d.below(n)]
				truthV[i], predV[i] = hidden.Targets[e], p.Values[e]
			}
			sc, err = scoring.Regress(metrics, truthV, predV, nil)
		} else {
			for i := range n {
				e := examples[d.below(n)]
				truthC[i], predC[i] = hidden.Labels[e], p.Classes[e]
				if probs != nil {
					probs[i] = p.Probabilities[e]
				}
			}
			sc, err = scoring.Classify(metrics, truthC, predC, probs, nil, ch.NumClasses)
		}
		if err != nil {
			return nil, fmt.Errorf("bootstrap: %w", err)
		}
		out[r] = undefinedAsNaN(sc.Values, metric)
	}
	return out, nil
}

// byConfusion fills out with a confusion-matrix metric on resamples.
func byConfusion(ch *challenges.Challenge, hidden *challenges.HiddenSet, p *Predictions, examples []int, d *draws, out []float64) ([]float64, error) {
	k, n := ch.NumClasses, len(examples)
	cells := make([]int32, n)
	for i, e := range examples {
		t, c := hidden.Labels[e], p.Classes[e]
		if t < 0 || t >= k || c < 0 || c >= k {
			return nil, fmt.Errorf("bootstrap: example %d has class %d predicted as %d, outside 0..%d", e, t, c, k-1)
		}
		cells[i] = int32(t*k + c)
	}
	flat := make([]int, k*k)
	conf := make([][]int, k)
	for i := range conf {
		conf[i] = flat[i*k : (i+1)*k]
	}
	for r := range out {
		clear(flat)
		for range n {
			flat[cells[d.below(n)]]++
		}
		v, _ := scoring.FromConfusion(ch.PrimaryMetric, conf, n)
		out[r] = v
	}
	return out, nil
}

// undefinedAsNaN is the metric, or NaN where it is undefined on a
// resample (ROC AUC with one class drawn): such a resample says nothing
// either way.
func undefinedAsNaN(values map[string]float64, metric string) float64 {
	if v, ok := values[metric]; ok {
		return v
	}
	return math.NaN()
}

// draws is a fast seeded generator of indices below n (xorshift64* and
// Lemire's multiply-shift): a bootstrap draws millions of them, and every
// submission to a challenge must get the same ones.
type draws struct{ s uint64 }

func newDraws(seed1, seed2 uint64) *draws {
	s := seed1*0x9e3779b97f4a7c15 ^ seed2
	if s == 0 {
		s = 1
	}
	return &draws{s}
}

func (d *draws) below(n int) int {
	d.s ^= d.s >> 12
	d.s ^= d.s << 25
	d.s ^= d.s >> 27
	hi, _ := bits.Mul64(d.s*2685821657736338717, uint64(n))
	return int(hi)
}

func halfName(half int) string {
	if half == 0 {
		return store.BoardPublic
	}
	return store.BoardPrivate
}
