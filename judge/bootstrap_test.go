package judge

import (
	"encoding/json"
	"math"
	"os"
	"testing"

	"github.com/hackarena/hackarena/challenges"
	"github.com/hackarena/hackarena/judge/scoring"
	"github.com/hackarena/hackarena/platform/store"
)

// fixtureSet is testdata/bootstrap/fixture.json as a challenge, its hidden
// set and predictions.
func fixtureSet(t testing.TB) (*challenges.Challenge, *challenges.HiddenSet, *Predictions, map[string]map[string]float64) {
	t.Helper()
	raw, err := os.ReadFile("testdata/bootstrap/fixture.json")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Truth     []int                         `json:"truth"`
		Pred      []int                         `json:"pred"`
		IsPublic  []bool                        `json:"is_public"`
		Intervals map[string]map[string]float64 `json:"intervals"`
	}
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	want := f.Intervals
	ch := &challenges.Challenge{Slug: "fixture", Task: scoring.TaskClassification, PrimaryMetric: "accuracy", HigherIsBetter: true, NumClasses: 10}
	ch.Spec.Split.Seed = 7
	hidden := &challenges.HiddenSet{Count: len(f.Truth), Labels: f.Truth, Public: f.IsPublic}
	return ch, hidden, &Predictions{Classes: f.Pred}, want
}

// TestBootstrapIntervalsAgreeWithNumpy: the judge's 95% percentile
// bootstrap interval of accuracy on each half, from 20,000 of its own
// resamples, agrees with numpy's from 20,000 of numpy's
// (testdata/bootstrap/make_fixture.py) to within Monte Carlo error.
func TestBootstrapIntervalsAgreeWithNumpy(t *testing.T) {
	ch, hidden, pred, want := fixtureSet(t)
	for half, mask := range [2][]bool{hidden.Public, hidden.Private()} {
		var examples []int
		for i, in := range mask {
			if in {
				examples = append(examples, i)
			}
		}
		samples, err := resampled(ch, hidden, pred, examples, half, 20000)
		if err != nil {
			t.Fatal(err)
		}
		lo, hi := store.Percentile(samples, 2.5), store.Percentile(samples, 97.5)
		w := want[halfName(half)]
		if math.Abs(lo-w["lo"]) > 0.002 || math.Abs(hi-w["hi"]) > 0.002 {
			t.Errorf("%s half: [%.4f, %.4f], numpy [%.4f, %.4f]", halfName(half), lo, hi, w["lo"], w["hi"])
		}
		t.Logf("%s half: accuracy %.4f, interval [%.4f, %.4f], numpy [%.4f, %.4f]", halfName(half), w["accuracy"], lo, hi, w["lo"], w["hi"])
	}
}

// TestAHandfulOfExamplesIsATieAndAClearGapIsNot: on the same resamples,
// predictions that disagree with the leader's on 5 examples (3 worse, 2
// better) are not told apart from it, predictions 10 points worse are;
// the same draws every time (seeded), and an interval that holds the
// score. (A model strictly worse on 5 examples and equal elsewhere is told
// apart: on every resample it is no better.)
func TestAHandfulOfExamplesIsATieAndAClearGapIsNot(t *testing.T) {
	ch, hidden, leader, _ := fixtureSet(t)
	// changed answers worse public examples wrongly that the leader got
	// right, and better right that it got wrong.
	changed := func(worse, better int) *Predictions {
		p := &Predictions{Classes: append([]int(nil), leader.Classes...)}
		for i := 0; i < len(p.Classes); i++ {
			switch {
			case !hidden.Public[i]:
			case worse > 0 && p.Classes[i] == hidden.Labels[i]:
				p.Classes[i] = (p.Classes[i] + 1) % 10
				worse--
			case better > 0 && p.Classes[i] != hidden.Labels[i]:
				p.Classes[i] = hidden.Labels[i]
				better--
			}
		}
		return p
	}
	boot := func(p *Predictions) *store.Bootstrap {
		b, err := BootstrapOf(ch, hidden, p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	lead, again := boot(leader), boot(leader)
	for i := range lead.Public.Samples {
		if lead.Public.Samples[i] != again.Public.Samples[i] {
			t.Fatal("the resamples differ between two runs")
		}
	}
	if lead.Public.Lo >= 0.83 || lead.Public.Hi <= 0.83 || len(lead.Public.Samples) != Resamples {
		t.Fatalf("leader's public interval [%v, %v] over %d resamples, score 0.83", lead.Public.Lo, lead.Public.Hi, len(lead.Public.Samples))
	}
	// Two similar models: they disagree on 5 examples, 3 one way and 2
	// the other.
	close, far := boot(changed(3, 2)), boot(changed(200, 0))
	if lo, hi, ok := store.PairedInterval(close.Public.Samples, lead.Public.Samples); !ok || lo > 0 || hi < 0 {
		t.Errorf("5 examples apart: paired interval [%v, %v], want it to hold 0 (tied)", lo, hi)
	}
	if lo, hi, ok := store.PairedInterval(far.Public.Samples, lead.Public.Samples); !ok || hi >= 0 {
		t.Errorf("200 examples (10 points) apart: paired interval [%v, %v], want it below 0", lo, hi)
	}
}

// TestTheFastResamplesAreTheScoringPackagesOwn: counting each resample's
// confusion cells, or summing log-loss terms, gives what the scoring
// package computes on the same resample drawn out in full.
func TestTheFastResamplesAreTheScoringPackagesOwn(t *testing.T) {
	ch, hidden, pred, _ := fixtureSet(t)
	var examples []int
	for i, in := range hidden.Public {
		if in {
			examples = append(examples, i)
		}
	}
	for _, metric := range []string{"accuracy", "macro_f1", "macro_precision", "macro_recall"} {
		ch.PrimaryMetric = metric
		fast, err := resampled(ch, hidden, pred, examples, 0, 50)
		if err != nil {
			t.Fatal(err)
		}
		slow, err := byScoring(ch, hidden, pred, examples, newDraws(resampleSeed(ch, 0)), make([]float64, 50))
		if err != nil {
			t.Fatal(err)
		}
		for i := range fast {
			if fast[i] != slow[i] {
				t.Fatalf("%s, resample %d: %v counted, %v scored", metric, i, fast[i], slow[i])
			}
		}
	}
	// Log loss, on made-up probabilities of two classes.
	binary := &challenges.Challenge{Task: scoring.TaskClassification, PrimaryMetric: "log_loss", NumClasses: 2}
	labels, probs := make([]int, len(examples)), make([][]float64, len(examples))
	classes := make([]int, len(examples))
	for i := range labels {
		labels[i] = hidden.Labels[i] % 2
		q := float64(hidden.Labels[i]+1) / 12
		probs[i] = []float64{1 - q, q}
	}
	set := &challenges.HiddenSet{Count: len(labels), Labels: labels, Public: make([]bool, len(labels))}
	p := &Predictions{Classes: classes, Probabilities: probs}
	all := make([]int, len(labels))
	for i := range all {
		all[i] = i
	}
	fast, err := resampled(binary, set, p, all, 0, 20)
	if err != nil {
		t.Fatal(err)
	}
	slow, err := byScoring(binary, set, p, all, newDraws(resampleSeed(binary, 0)), make([]float64, 20))
	if err != nil {
		t.Fatal(err)
	}
	for i := range fast {
		if math.Abs(fast[i]-slow[i]) > 1e-12 {
			t.Fatalf("log loss, resample %d: %v summed, %v scored", i, fast[i], slow[i])
		}
	}
}
