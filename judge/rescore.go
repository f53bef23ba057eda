package judge

import (
	"context"
	"fmt"

	"github.com/hackarena/hackarena/challenges"
	"github.com/hackarena/hackarena/platform/store"
)

// RescoreReport says what a rescore did.
type RescoreReport struct {
	Rescored int `json:"rescored"`
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
// metrics and hidden set, from the predictions kept when it was judged: an
// organizer who adds a metric or fixes a label does not have to run
// hundreds of plugins again.
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
		m, err := Score(ch, hidden, pred)
		if err != nil {
			rep.Skipped = append(rep.Skipped, RescoreSkip{sub.ID, err.Error()})
			continue
		}
		if err := st.SetMetrics(ctx, sub.ID, *m); err != nil {
			return rep, err
		}
		rep.Rescored++
	}
	return rep, nil
}
