package judge

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hackarena/hackarena/challenges"
	"github.com/hackarena/hackarena/platform/blob"
	"github.com/hackarena/hackarena/platform/store"
)

func challengeEnv() challenges.Env {
	return challenges.Env{Datasets: challenges.FindDatasets(), MNISTDir: os.Getenv("HACKARENA_MNIST_DIR")}
}

// putRevision records spec as the organizers' next revision of slug and
// builds the challenge it makes.
func putRevision(t *testing.T, st *store.Store, slug string, spec challenges.Spec) *challenges.Challenge {
	t.Helper()
	ctx := context.Background()
	rev, err := st.PutChallengeSpec(ctx, slug, spec)
	if err != nil {
		t.Fatal(err)
	}
	ch := challenges.Build(ctx, slug, spec, challengeEnv())
	if ch.Status != challenges.StatusOpen {
		t.Fatalf("revision %d of %s: %s", rev, slug, ch.StatusReason)
	}
	ch.Revision = rev
	return ch
}

// scoredWith records a scored submission of ch whose kept predictions are
// pred.
func scoredWith(t *testing.T, st *store.Store, preds *PredictionStore, slug, teamName string, pred *Predictions) store.Submission {
	t.Helper()
	ctx := context.Background()
	team, err := st.CreateTeam(ctx, teamName, "h", store.RoleParticipant)
	if err != nil {
		t.Fatal(err)
	}
	sub, _ := st.Enqueue(ctx, slug, team, "sha", 1)
	run, _, err := st.Start(ctx, sub.ID, "w")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Finish(ctx, run, store.Result{Status: store.StatusScored, Metrics: &store.Metrics{Public: map[string]float64{"accuracy": 0}}}); err != nil {
		t.Fatal(err)
	}
	if err := preds.Save(sub.ID, pred); err != nil {
		t.Fatal(err)
	}
	return sub
}

// TestARescoreAfterASplitChangeMatchesEachAnswerToItsExample: a perfect
// MNIST submission rescored after the organizers change the split seed
// stays perfect (it scored 0.0998 when answers were taken in the new
// order); answers that cannot be matched (kept before they named their
// examples, or for hidden rows another seed no longer draws) are refused
// with a message that says to rejudge, not scored wrongly.
func TestARescoreAfterASplitChangeMatchesEachAnswerToItsExample(t *testing.T) {
	ctx := context.Background()
	st, _, _ := mnistQueue(t)
	preds := &PredictionStore{Dir: t.TempDir()}
	ch := loadMNIST(t)
	hidden, err := ch.Hidden()
	if err != nil {
		t.Fatal(err)
	}
	perfect := &Predictions{Classes: append([]int(nil), hidden.Labels...), Revision: ch.Revision, Seed: ch.Spec.Split.Seed, Examples: examplesOf(hidden)}
	sub := scoredWith(t, st, preds, "mnist", "perfect", perfect)
	legacy := scoredWith(t, st, preds, "mnist", "legacy", &Predictions{Classes: append([]int(nil), hidden.Labels...)})

	spec := ch.Spec
	spec.Split.Seed += 7
	spec.Split.PublicFraction = 0.3
	changed := putRevision(t, st, "mnist", spec)
	rep, err := Rescore(ctx, st, preds, changed)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := st.Submission(ctx, sub.ID)
	if rep.Rescored != 1 || got.Metrics.Public["accuracy"] != 1 || got.Metrics.Private["accuracy"] != 1 || got.Revision != changed.Revision {
		t.Fatalf("a perfect submission rescored under a new seed: %+v (revision %d), report %+v", got.Metrics.Public, got.Revision, rep)
	}
	if len(rep.Skipped) != 1 || rep.Skipped[0].SubmissionID != legacy.ID || !strings.Contains(rep.Skipped[0].Reason, "rejudge") {
		t.Fatalf("predictions that name no examples: %+v", rep.Skipped)
	}

	// Another seed draws other hidden rows of the houses data set.
	houses := loadChallenge(t, "houses")
	hh, err := houses.Hidden()
	if err != nil {
		t.Fatal(err)
	}
	prices := &Predictions{Values: append([]float64(nil), hh.Targets...), Seed: houses.Spec.Split.Seed, Examples: examplesOf(hh)}
	hsub := scoredWith(t, st, preds, "houses", "prices", prices)
	hspec := houses.Spec
	hspec.Split.Seed++
	rep, err = Rescore(ctx, st, preds, putRevision(t, st, "houses", hspec))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Rescored != 0 || len(rep.Skipped) != 1 || rep.Skipped[0].SubmissionID != hsub.ID ||
		!strings.Contains(rep.Skipped[0].Reason, "lacks") || !strings.Contains(rep.Skipped[0].Reason, "rejudge") {
		t.Fatalf("houses answers under another draw of hidden rows: %+v", rep)
	}
}

// TestAJobJudgedUnderAnOlderRevisionIsScoredUnderTheCurrentOne: the
// organizers change the primary metric and the split while a job runs;
// its result is refused for the old revision, scored again from its own
// answers under the new one, and ranked by the new metric, exactly as a
// run under the new revision scores.
func TestAJobJudgedUnderAnOlderRevisionIsScoredUnderTheCurrentOne(t *testing.T) {
	ctx := context.Background()
	st, reg, team := mnistQueue(t)
	blobs := blob.New(t.TempDir())
	plugin := buildPlugin(t, "mnist-centroid")
	sha, size := storePlugin(t, blobs, plugin)
	spec := loadMNIST(t).Spec
	spec.PrimaryMetric = "macro_f1"
	spec.Split.Seed += 3
	changed := putRevision(t, st, "mnist", spec)
	sub, _ := st.Enqueue(ctx, "mnist", team, sha, size)
	ev := newEvaluator(t, time.Minute)
	// The judge learns of the change only once the job runs: the
	// organizer's PUT landed just after it refreshed, which a test can
	// only arrange by holding the refresh back until then.
	refresh := func(ctx context.Context) error {
		if cur, err := st.Submission(ctx, sub.ID); err != nil || cur.Status != store.StatusRunning {
			return err
		}
		return reg.Sync(ctx, st, challengeEnv())
	}
	w := &Worker{Store: st, Challenges: reg, Blobs: blobs, Evaluator: ev, Refresh: refresh,
		Consumer: "w", Lease: time.Hour, MaxAttempts: 3, Log: slog.New(slog.DiscardHandler)}
	stop := runWorker(t, w)
	got := waitStatus(t, st, sub.ID, time.Minute)
	stop()
	if got.Status != store.StatusScored || got.Revision != changed.Revision || got.Attempts != 1 {
		t.Fatalf("judged across a revision: %s (revision %d, attempt %d): %s", got.Status, got.Revision, got.Attempts, got.Message)
	}
	want, _, _, err := ev.Evaluate(ctx, team.ID, plugin, changed)
	if err != nil {
		t.Fatal(err)
	}
	if got.Metrics.Public["macro_f1"] != want.Public["macro_f1"] || got.Metrics.Private["accuracy"] != want.Private["accuracy"] {
		t.Fatalf("scored %v / %v across the change; a run under the new revision scores %v / %v", got.Metrics.Public, got.Metrics.Private, want.Public, want.Private)
	}
	metric, _, _ := st.BoardRules(ctx, "mnist")
	board, _ := st.Board(ctx, "mnist", store.BoardPublic)
	if metric != "macro_f1" || len(board) != 1 || board[0].Score != want.Public["macro_f1"] {
		t.Fatalf("board ranks by %q: %+v; want the new metric's score %v", metric, board, want.Public["macro_f1"])
	}
}
