package store

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hackarena/hackarena/challenges"
	"github.com/redis/go-redis/v9"
)

// takeOver has judge b claim and start the job judge a started: what
// happens when a is frozen past its lease.
func takeOver(t *testing.T, s *Store, ctx context.Context) (job *Job, a, b Submission) {
	t.Helper()
	team, _ := s.CreateTeam(ctx, "t", "h", RoleParticipant)
	if err := s.EnsureGroups(ctx, []string{"ch"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Enqueue(ctx, "ch", team, "sha", 1); err != nil {
		t.Fatal(err)
	}
	job, err := one(s.ReadJobs(ctx, []string{"ch"}, "a", false, time.Second))
	if err != nil || job == nil {
		t.Fatal(job, err)
	}
	a, _, err = s.Start(ctx, job.SubmissionID, "a")
	if err != nil || a.Attempts != 1 {
		t.Fatalf("a's start: attempt %d, %v", a.Attempts, err)
	}
	claimed, err := s.ClaimStale(ctx, []string{"ch"}, "b", 0)
	if err != nil || claimed == nil {
		t.Fatal(claimed, err)
	}
	b, _, err = s.Start(ctx, claimed.SubmissionID, "b")
	if err != nil || b.Attempts != 2 {
		t.Fatalf("b's start: attempt %d, %v", b.Attempts, err)
	}
	return job, a, b
}

func pendingOwner(t *testing.T, s *Store, ctx context.Context, job *Job) string {
	t.Helper()
	p, err := s.rdb.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: queueKey(job.Challenge), Group: JudgeGroup, Start: "-", End: "+", Count: 10}).Result()
	if err != nil || len(p) != 1 {
		t.Fatalf("pending entries: %v %v", p, err)
	}
	return p[0].Consumer
}

// TestAStaleAttemptWritesNothing: once another judge has taken the job
// over, the first judge's result, requeue and lease renewal are refused
// and change nothing; the current attempt's result is written once.
func TestAStaleAttemptWritesNothing(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	job, a, b := takeOver(t, s, ctx)
	events := func() int64 { n, _ := s.rdb.XLen(ctx, eventsKey).Result(); return n }
	before := events()
	if ok, err := s.Finish(ctx, a, Result{Status: StatusScored, Metrics: &Metrics{Public: map[string]float64{"accuracy": 1}}}); ok || !errors.Is(err, ErrFenced) {
		t.Fatalf("a's finish: %v %v, want refused", ok, err)
	}
	if err := s.Requeue(ctx, job, a.Attempts, "a stopped"); !errors.Is(err, ErrFenced) {
		t.Fatalf("a's requeue: %v, want refused", err)
	}
	if err := s.RenewLease(ctx, job, "a", a.Attempts); !errors.Is(err, ErrFenced) {
		t.Fatalf("a's renewal: %v, want refused", err)
	}
	if owner := pendingOwner(t, s, ctx, job); owner != "b" {
		t.Fatalf("the job's entry belongs to %q after a's renewal, want b", owner)
	}
	if got, _ := s.Submission(ctx, job.SubmissionID); got.Status != StatusRunning || got.Attempts != 2 || events() != before {
		t.Fatalf("a's refused writes changed the record (%s, attempt %d) or wrote %d events", got.Status, got.Attempts, events()-before)
	}
	if err := s.RenewLease(ctx, job, "b", b.Attempts); err != nil {
		t.Fatalf("b's renewal: %v", err)
	}
	if ok, err := s.Finish(ctx, b, Result{Status: StatusFailed, Reason: "crashed", Message: "b's"}); !ok || err != nil {
		t.Fatalf("b's finish: %v %v", ok, err)
	}
	// A requeue after the result (a judge that hit an internal error or a
	// stop after the other finished) must not send it back.
	if err := s.Requeue(ctx, job, b.Attempts, "late"); !errors.Is(err, ErrFenced) {
		t.Fatalf("requeue of a final submission: %v, want refused", err)
	}
	got, _ := s.Submission(ctx, job.SubmissionID)
	if got.Status != StatusFailed || got.Message != "b's" || events() != before+1 {
		t.Fatalf("final record %s %q, %d events; want b's result and one event", got.Status, got.Message, events()-before)
	}
}

// TestARenewedLeaseIsNotTakenOver: a judge that renews its lease keeps
// its job however long it runs.
func TestARenewedLeaseIsNotTakenOver(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	team, _ := s.CreateTeam(ctx, "t", "h", RoleParticipant)
	_ = s.EnsureGroups(ctx, []string{"ch"})
	_, _ = s.Enqueue(ctx, "ch", team, "sha", 1)
	job, _ := one(s.ReadJobs(ctx, []string{"ch"}, "a", false, time.Second))
	a, _, _ := s.Start(ctx, job.SubmissionID, "a")
	const lease = 300 * time.Millisecond
	for i := 0; i < 10; i++ {
		time.Sleep(lease / 3)
		if err := s.RenewLease(ctx, job, "a", a.Attempts); err != nil {
			t.Fatal(err)
		}
		if claimed, err := s.ClaimStale(ctx, []string{"ch"}, "b", lease); claimed != nil || err != nil {
			t.Fatalf("a renewed job was taken over after %s: %v %v", time.Duration(i+1)*lease/3, claimed, err)
		}
	}
	time.Sleep(lease + 50*time.Millisecond)
	if claimed, _ := s.ClaimStale(ctx, []string{"ch"}, "b", lease); claimed == nil {
		t.Fatal("a job whose lease ran out was not taken over")
	}
}

// TestTheRefundNoteIsTrue: the note that a failure did not count is in
// the message only when a submission was given back.
func TestTheRefundNoteIsTrue(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	team, _ := s.CreateTeam(ctx, "t", "h", RoleParticipant)
	now := time.Now()
	for _, taken := range []bool{true, false} {
		if taken {
			if wait, err := s.TakeQuota(ctx, "ch", team.ID, 5, now); wait != 0 || err != nil {
				t.Fatal(wait, err)
			}
		}
		sb, _ := s.Enqueue(ctx, "ch", team, "sha", 1)
		sb, _, _ = s.Start(ctx, sb.ID, "w")
		if ok, err := s.Finish(ctx, sb, Result{Status: StatusFailed, Reason: "internal", Message: "broke", RefundQuota: true}); !ok || err != nil {
			t.Fatal(ok, err)
		}
		got, _ := s.Submission(ctx, sb.ID)
		if strings.Contains(got.Message, RefundNote) != taken || got.QuotaRefunded != taken {
			t.Fatalf("quota taken %v: message %q, refunded %v", taken, got.Message, got.QuotaRefunded)
		}
	}
}

// TestQuotaIsTakenWithTheEnqueueAndRefundedToItsDay: over the quota
// nothing is written at all; a refund goes back to the day the quota was
// taken from, even when the run ends on the next day.
func TestQuotaIsTakenWithTheEnqueueAndRefundedToItsDay(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	team, _ := s.CreateTeam(ctx, "t", "h", RoleParticipant)
	_ = s.EnsureGroups(ctx, []string{"ch"})
	first, err := s.EnqueueWithQuota(ctx, "ch", team, "sha", 1, 1)
	if err != nil || first.QuotaDay.IsZero() {
		t.Fatalf("first: %+v %v", first, err)
	}
	queued := func() int64 { n, _ := s.rdb.XLen(ctx, queueKey("ch")).Result(); return n }
	subs := func() int64 { n, _ := s.rdb.ZCard(ctx, teamSubsKey(team.ID)).Result(); return n }
	var over *QuotaExceededError
	if _, err := s.EnqueueWithQuota(ctx, "ch", team, "sha", 1, 1); !errors.As(err, &over) || over.Retry <= 0 || over.Retry > 24*time.Hour {
		t.Fatalf("over the quota: %v", err)
	}
	if queued() != 1 || subs() != 1 {
		t.Fatalf("over the quota left %d queue entries and %d records, want 1 and 1", queued(), subs())
	}
	// The quota was taken "yesterday": the record says so, and that day's
	// counter holds it.
	yesterday := first.QuotaDay.Add(-24 * time.Hour)
	today := quotaKey("ch", team.ID, first.QuotaDay)
	if err := s.rdb.Rename(ctx, today, quotaKey("ch", team.ID, yesterday)).Err(); err != nil {
		t.Fatal(err)
	}
	s.rdb.HSet(ctx, submissionKey(first.ID), "quota_day", yesterday.Format("20060102"))
	s.rdb.Set(ctx, today, 1, time.Hour) // today's own submission, not to be touched
	run, _, _ := s.Start(ctx, first.ID, "w")
	if ok, err := s.Finish(ctx, run, Result{Status: StatusFailed, Reason: "internal", RefundQuota: true}); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if n, _ := s.rdb.Get(ctx, quotaKey("ch", team.ID, yesterday)).Int(); n != 0 {
		t.Fatalf("yesterday's counter is %d after the refund, want 0", n)
	}
	if n, _ := s.rdb.Get(ctx, today).Int(); n != 1 {
		t.Fatalf("today's counter is %d after yesterday's refund, want 1", n)
	}
}

// TestAnUnstartedJobIsGivenBackOnce: a stopping judge gives back a job it
// was handed but did not start; giving the same entry back again (or a
// started one, as unstarted) changes nothing.
func TestAnUnstartedJobIsGivenBackOnce(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	team, _ := s.CreateTeam(ctx, "t", "h", RoleParticipant)
	_ = s.EnsureGroups(ctx, []string{"ch"})
	sb, _ := s.Enqueue(ctx, "ch", team, "sha", 1)
	job, _ := one(s.ReadJobs(ctx, []string{"ch"}, "a", false, time.Second))
	if err := s.Requeue(ctx, job, 0, "the judge stopped"); err != nil {
		t.Fatal(err)
	}
	if err := s.Requeue(ctx, job, 0, "again"); !errors.Is(err, ErrFenced) {
		t.Fatalf("the same entry given back twice: %v", err)
	}
	got, _ := s.Submission(ctx, sb.ID)
	if got.Status != StatusQueued || got.StreamID == job.StreamID || got.Message != "the judge stopped" {
		t.Fatalf("after the give-back: %+v", got)
	}
	if n, _ := s.rdb.XLen(ctx, queueKey("ch")).Result(); n != 2 {
		t.Fatalf("%d queue entries, want the old (acknowledged) and the new", n)
	}
	next, _ := one(s.ReadJobs(ctx, []string{"ch"}, "b", false, time.Second))
	if next == nil || next.SubmissionID != sb.ID || next.StreamID != got.StreamID {
		t.Fatalf("the given-back job is not next in the queue: %+v", next)
	}
	if _, _, err := s.Start(ctx, sb.ID, "b"); err != nil {
		t.Fatal(err)
	}
	if err := s.Requeue(ctx, next, 0, "as unstarted"); !errors.Is(err, ErrFenced) {
		t.Fatalf("a started job given back as unstarted: %v", err)
	}
}

// TestAResultIsRankedInTheStepThatWritesIt: the boards are offered a
// scored result by the script that writes it, so a stale attempt's score
// reaches no board, the current one's reaches both at once, and a result
// whose rules the boards do not rank by is written but not ranked (its
// judge repairs the boards).
func TestAResultIsRankedInTheStepThatWritesIt(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	_, a, b := takeOver(t, s, ctx)
	ranked := func(acc float64) Result {
		return Result{Status: StatusScored, Metrics: &Metrics{Public: map[string]float64{"accuracy": acc}, Private: map[string]float64{"accuracy": acc}},
			Ranking: &Ranking{Rules: Rules{Metric: "accuracy", HigherIsBetter: true}}}
	}
	if _, err := s.FinishRun(ctx, a, ranked(1)); !errors.Is(err, ErrFenced) {
		t.Fatalf("a's ranked finish: %v, want refused", err)
	}
	for _, board := range []string{BoardPublic, BoardPrivate} {
		if entries, _ := s.Board(ctx, "ch", board); len(entries) != 0 {
			t.Fatalf("a refused result is on the %s board: %+v", board, entries)
		}
	}
	done, err := s.FinishRun(ctx, b, ranked(0.5))
	if err != nil || !done.Wrote || done.BoardsRefused || !done.PublicChanged {
		t.Fatalf("b's ranked finish: %+v %v", done, err)
	}
	for _, board := range []string{BoardPublic, BoardPrivate} {
		if entries, _ := s.Board(ctx, "ch", board); len(entries) != 1 || entries[0].SubmissionID != b.ID || entries[0].Score != 0.5 {
			t.Fatalf("%s board after b's result: %+v", board, entries)
		}
	}

	// The boards now rank by accuracy: a result ranked by another metric
	// is recorded, and left off the boards for its judge to repair.
	team, _ := s.CreateTeam(ctx, "u", "h", RoleParticipant)
	sub, _ := s.Enqueue(ctx, "ch", team, "sha", 1)
	run, _, _ := s.Start(ctx, sub.ID, "b")
	other := ranked(0.9)
	other.Ranking.Metric = "macro_f1"
	other.Metrics.Public["macro_f1"], other.Metrics.Private["macro_f1"] = 0.9, 0.9
	done, err = s.FinishRun(ctx, run, other)
	if err != nil || !done.Wrote || !done.BoardsRefused || done.PublicChanged {
		t.Fatalf("a result under other rules: %+v %v", done, err)
	}
	if got, _ := s.Submission(ctx, sub.ID); got.Status != StatusScored {
		t.Fatalf("the result under other rules was not recorded: %s", got.Status)
	}
	if entries, _ := s.Board(ctx, "ch", BoardPublic); len(entries) != 1 {
		t.Fatalf("a result under other rules was ranked: %+v", entries)
	}
	if rebuilt, _, err := s.ReconcileBoards(ctx, "ch", Rules{Metric: "macro_f1", HigherIsBetter: true}); err != nil || !rebuilt {
		t.Fatalf("repair: %v %v", rebuilt, err)
	}
	if entries, _ := s.Board(ctx, "ch", BoardPublic); len(entries) != 1 || entries[0].SubmissionID != sub.ID {
		t.Fatalf("after the repair (b's result has no macro_f1): %+v", entries)
	}
}

// TestAScoreOfAnOlderRevisionIsRefused: a result or a rescore computed
// under a spec revision the organizers have since replaced writes nothing,
// so the judge rescores it under the current one.
func TestAScoreOfAnOlderRevisionIsRefused(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	team, _ := s.CreateTeam(ctx, "t", "h", RoleParticipant)
	sub, _ := s.Enqueue(ctx, "ch", team, "sha", 1)
	run, _, _ := s.Start(ctx, sub.ID, "a")
	rev, err := s.PutChallengeSpec(ctx, "ch", challenges.Spec{Title: "changed"})
	if err != nil || rev != 1 {
		t.Fatal(rev, err)
	}
	res := Result{Status: StatusScored, Metrics: &Metrics{Public: map[string]float64{"accuracy": 1}}, Ranking: &Ranking{Rules: Rules{Metric: "accuracy", HigherIsBetter: true}}}
	if _, err := s.FinishRun(ctx, run, res); !errors.Is(err, ErrRevisionChanged) {
		t.Fatalf("a result of revision 0 after revision 1: %v, want refused", err)
	}
	if got, _ := s.Submission(ctx, sub.ID); got.Status != StatusRunning {
		t.Fatalf("the refused result changed the record: %s", got.Status)
	}
	if entries, _ := s.Board(ctx, "ch", BoardPublic); len(entries) != 0 {
		t.Fatalf("the refused result was ranked: %+v", entries)
	}
	res.Ranking.Revision = 1
	if done, err := s.FinishRun(ctx, run, res); err != nil || !done.Wrote {
		t.Fatalf("a result of the current revision: %+v %v", done, err)
	}
	if got, _ := s.Submission(ctx, sub.ID); got.Revision != 1 {
		t.Fatalf("the record names revision %d, want 1", got.Revision)
	}
	if err := s.SetMetrics(ctx, sub.ID, 0, Metrics{Public: map[string]float64{"accuracy": 0}}, Stamp{}, nil); !errors.Is(err, ErrRevisionChanged) {
		t.Fatalf("a rescore under revision 0: %v, want refused", err)
	}
	if err := s.SetMetrics(ctx, sub.ID, 1, Metrics{Public: map[string]float64{"accuracy": 0.5}}, Stamp{}, nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Submission(ctx, sub.ID); got.Metrics.Public["accuracy"] != 0.5 {
		t.Fatalf("rescored metrics %v", got.Metrics.Public)
	}
}

// TestProgressIsTheCurrentAttemptsOnly: a run's progress is recorded and
// announced for the current attempt; a stale one's is refused, and a new
// attempt starts from nothing.
func TestProgressIsTheCurrentAttemptsOnly(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	job, a, b := takeOver(t, s, ctx)
	if err := s.SetProgress(ctx, a, 5000, 10000); !errors.Is(err, ErrFenced) {
		t.Fatalf("a stale attempt's progress: %v, want refused", err)
	}
	if err := s.SetProgress(ctx, b, 3000, 10000); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Submission(ctx, job.SubmissionID)
	if got.ProgressDone != 3000 || got.ProgressTotal != 10000 {
		t.Fatalf("progress %d/%d, want 3000/10000", got.ProgressDone, got.ProgressTotal)
	}
	events, _ := s.EventsAfter(ctx, "0", 100)
	if last := events[len(events)-1]; last.Type != "progress" || !strings.Contains(string(last.Data), `"done":3000`) {
		t.Fatalf("last event %s %s, want b's progress", last.Type, last.Data)
	}
	if err := s.Requeue(ctx, job, b.Attempts, "again"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Start(ctx, job.SubmissionID, "c"); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Submission(ctx, job.SubmissionID); got.ProgressTotal != 0 {
		t.Fatalf("a new attempt starts with the last one's progress %d/%d", got.ProgressDone, got.ProgressTotal)
	}
}

// TestQuotaMismatchesFindsACounterThatDrifted: submissions less refunds
// match their day's counter until the counter is moved behind their back.
func TestQuotaMismatchesFindsACounterThatDrifted(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	team, _ := s.CreateTeam(ctx, "t", "h", RoleParticipant)
	_ = s.EnsureGroups(ctx, []string{"ch"})
	for range 3 {
		if _, err := s.EnqueueWithQuota(ctx, "ch", team, "sha", 1, 5); err != nil {
			t.Fatal(err)
		}
	}
	subs, _ := s.TeamSubmissions(ctx, team.ID, 10)
	run, _, _ := s.Start(ctx, subs[0].ID, "w")
	if ok, err := s.Finish(ctx, run, Result{Status: StatusFailed, Reason: "internal", RefundQuota: true}); !ok || err != nil {
		t.Fatal(ok, err)
	}
	subs, _ = s.TeamSubmissions(ctx, team.ID, 10)
	if m, err := s.QuotaMismatches(ctx, "ch", subs); err != nil || len(m) != 0 {
		t.Fatalf("3 submissions, 1 refund, counter 2: %v %v", m, err)
	}
	s.rdb.Incr(ctx, quotaKey("ch", team.ID, subs[0].QuotaDay))
	if m, err := s.QuotaMismatches(ctx, "ch", subs); err != nil || len(m) != 1 || !strings.Contains(m[0], "counts 3 for 3 submissions and 1 refunds") {
		t.Fatalf("a counter moved by one: %v %v", m, err)
	}
}
