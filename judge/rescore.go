package judge

import (
	"context"
	"errors"
	"fmt"

	"github.com/hackarena/hackarena/challenges"
	"github.com/hackarena/hackarena/platform/store"
)

// RescoreReport says what a rescore did.
type RescoreReport struct {
	Rescored int `json:"rescored"`
	// RescoredIDs are the submissions rescored.
	RescoredIDs []string `json:"-"`
	// Skipped lists submissions that could not be rescored, with why
	// (their predictions were not kept, say); they keep their old metrics.
	Skipped []RescoreSkip `json:"skipped"`
}

// RescoreSkip is a submission a rescore left alone.
type RescoreSkip struct {
	SubmissionID string `json:"submission_id"`
	Reason       string `json:"reason"`
}

// Rescore recomputes every scored submission of ch with ch's current
// metrics, hidden set and split, from the predictions kept when it was
// judged: an organizer who adds a metric, fixes a label or changes the
// split does not have to run hundreds of plugins again. Each metric is
// written for ch's revision only: when the challenge changes again during
// the rescore, it stops with store.ErrRevisionChanged (run it again).
func Rescore(ctx context.Context, st *store.Store, preds *PredictionStore, ch *challenges.Challenge) (RescoreReport, error) {
	rep := RescoreReport{Skipped: []RescoreSkip{}}
	hidden, err := ch.Hidden()
	if err != nil {
		return rep, fmt.Errorf("rescore %q: load hidden set: %w", ch.Slug, err)
	}
	subs, err := st.ScoredSubmissions(ctx, ch.Slug)
	if err != nil {
		return rep, err
	}
	for _, sub := range subs {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		pred, err := preds.Load(sub.ID)
		if err != nil {
			rep.Skipped = append(rep.Skipped, RescoreSkip{sub.ID, err.Error()})
			continue
		}
		m, boot, err := scoreKept(ch, hidden, pred)
		if err != nil {
			rep.Skipped = append(rep.Skipped, RescoreSkip{sub.ID, err.Error()})
			continue
		}
		if err := st.SetMetrics(ctx, sub.ID, ch.Revision, *m, store.StampOf(ch), boot); err != nil {
			if errors.Is(err, store.ErrRevisionChanged) {
				return rep, fmt.Errorf("rescore %q: the challenge was changed again during the rescore (it is past revision %d); rescore again: %w", ch.Slug, ch.Revision, err)
			}
			return rep, err
		}
		rep.Rescored++
		rep.RescoredIDs = append(rep.RescoredIDs, sub.ID)
	}
	return rep, nil
}

// scoreKept scores kept predictions under ch's current rules, matching
// each answer to its example first, with the primary metric's bootstrap.
func scoreKept(ch *challenges.Challenge, hidden *challenges.HiddenSet, pred *Predictions) (*store.Metrics, *store.Bootstrap, error) {
	matched, err := answersFor(pred, hidden)
	if err != nil {
		return nil, nil, err
	}
	m, err := Score(ch, hidden, matched)
	if err != nil {
		return nil, nil, err
	}
	boot, err := BootstrapOf(ch, hidden, matched)
	return m, boot, err
}

// examplesOf is the examples of a hidden set in the order it is sent.
func examplesOf(h *challenges.HiddenSet) []int {
	if h.Examples != nil {
		return h.Examples
	}
	out := make([]int, h.Count)
	for i := range out {
		out[i] = i
	}
	return out
}

// answersFor puts p's answers in the order of hidden's examples: as they
// are when p answered the same examples in the same order, matched by
// example when the split or its seed changed since, or an error that says
// why the submission must be judged again.
func answersFor(p *Predictions, hidden *challenges.HiddenSet) (*Predictions, error) {
	n := len(p.Classes)
	if p.Values != nil {
		n = len(p.Values)
	}
	if p.Examples == nil {
		return nil, fmt.Errorf("its predictions were kept before they named their examples, so they cannot be matched to the current split: rejudge the submission")
	}
	if len(p.Examples) != n || (p.Probabilities != nil && len(p.Probabilities) != n) {
		return nil, fmt.Errorf("its kept predictions are inconsistent (%d answers for %d examples): rejudge the submission", n, len(p.Examples))
	}
	want := examplesOf(hidden)
	if equalInts(p.Examples, want) {
		return p, nil
	}
	at := make(map[int]int, n)
	for i, e := range p.Examples {
		at[e] = i
	}
	out := &Predictions{Revision: p.Revision, Seed: p.Seed, Examples: want}
	missing := 0
	for _, e := range want {
		i, ok := at[e]
		if !ok {
			missing++
			continue
		}
		if p.Classes != nil {
			out.Classes = append(out.Classes, p.Classes[i])
		}
		if p.Probabilities != nil {
			out.Probabilities = append(out.Probabilities, p.Probabilities[i])
		}
		if p.Values != nil {
			out.Values = append(out.Values, p.Values[i])
		}
	}
	if missing > 0 {
		return nil, fmt.Errorf("its predictions answer the hidden set of revision %d (split seed %d), which lacks %d of the %d examples hidden now: rejudge the submission",
			p.Revision, p.Seed, missing, len(want))
	}
	return out, nil
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
