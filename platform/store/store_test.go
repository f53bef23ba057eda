package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hackarena/hackarena/internal/redistest"
)

func newStore(t *testing.T) *Store {
	t.Helper()
	rdb, _ := redistest.Start(t)
	return New(rdb)
}

func TestCreateTeamNameIsUniqueUnderConcurrency(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	var mu sync.Mutex
	created, taken := 0, 0
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			// Names differ only in case: they are the same team name.
			name := "Alpha"
			if i%2 == 0 {
				name = "alpha"
			}
			_, err := s.CreateTeam(ctx, name, "hash", RoleParticipant)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				created++
			case errors.Is(err, ErrNameTaken):
				taken++
			default:
				t.Errorf("create team: %v", err)
			}
		}(i)
	}
	wg.Wait()
	if created != 1 || taken != 19 {
		t.Fatalf("created %d, taken %d; want exactly one team", created, taken)
	}
	team, err := s.TeamByName(ctx, "ALPHA")
	if err != nil {
		t.Fatalf("look up by name, other case: %v", err)
	}
	if team.Role != RoleParticipant {
		t.Errorf("role %q", team.Role)
	}
}

func sub(id, team string, at time.Time) Submission {
	return Submission{ID: id, TeamID: team, TeamName: "name-" + team, QueuedAt: at}
}

func TestBoardKeepsBestPerTeamAndBreaksTiesByTime(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, higher := range []bool{true, false} {
		t.Run(fmt.Sprintf("higher_is_better=%v", higher), func(t *testing.T) {
			s := newStore(t)
			// better(x) turns "x is a better score than y" into the
			// board's direction.
			better := func(x float64) float64 {
				if higher {
					return x
				}
				return -x
			}
			updates := []struct {
				sub     Submission
				score   float64
				changed bool
			}{
				{sub("a1", "a", t0), better(0.5), true},
				{sub("a2", "a", t0.Add(time.Minute)), better(0.4), false},   // worse: ignored
				{sub("a3", "a", t0.Add(2*time.Minute)), better(0.5), false}, // tie, later: ignored
				{sub("b1", "b", t0.Add(3*time.Minute)), better(0.5), true},  // ties a, later: ranks after a
				{sub("c1", "c", t0.Add(4*time.Minute)), better(0.9), true},
				{sub("c1", "c", t0.Add(4*time.Minute)), better(0.9), false}, // same result again: no-op
				{sub("b2", "b", t0.Add(5*time.Minute)), better(0.95), true}, // b improves past c
			}
			for _, u := range updates {
				changed, err := s.UpdateBoard(ctx, "ch", Rules{Metric: "m", HigherIsBetter: higher}, u.sub, u.score)
				if err != nil {
					t.Fatal(err)
				}
				if changed != u.changed {
					t.Errorf("update %s score %v: changed=%v, want %v", u.sub.ID, u.score, changed, u.changed)
				}
			}
			entries, err := s.Board(ctx, "ch", BoardPublic)
			if err != nil {
				t.Fatal(err)
			}
			want := []string{"b2", "c1", "a1"}
			if len(entries) != len(want) {
				t.Fatalf("%d entries, want %d: %+v", len(entries), len(want), entries)
			}
			for i, e := range entries {
				if e.SubmissionID != want[i] || e.Rank != i+1 {
					t.Errorf("rank %d: %s (rank field %d), want %s", i+1, e.SubmissionID, e.Rank, want[i])
				}
			}
		})
	}
}

func TestQueueDeliversOnceAndResumesPendingAfterCrash(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	if err := s.EnsureGroups(ctx, []string{"ch"}); err != nil {
		t.Fatal(err)
	}
	team, err := s.CreateTeam(ctx, "t", "h", RoleParticipant)
	if err != nil {
		t.Fatal(err)
	}
	first, _ := s.Enqueue(ctx, "ch", team, "sha1", 10)
	second, _ := s.Enqueue(ctx, "ch", team, "sha2", 10)
	if pos, err := s.QueuePosition(ctx, "ch", second.StreamID); err != nil || pos != 2 {
		t.Fatalf("position of second = %d, %v; want 2", pos, err)
	}
	job, err := one(s.ReadJobs(ctx, []string{"ch"}, "w1", false, 100*time.Millisecond))
	if err != nil || job == nil || job.SubmissionID != first.ID {
		t.Fatalf("first read = %+v, %v; want %s", job, err, first.ID)
	}
	if pos, _ := s.QueuePosition(ctx, "ch", second.StreamID); pos != 1 {
		t.Fatalf("after one delivery, position of second = %d, want 1", pos)
	}
	// Worker w1 "dies" without acking; another worker does not see the
	// job as new...
	other, err := one(s.ReadJobs(ctx, []string{"ch"}, "w2", false, 100*time.Millisecond))
	if err != nil || other == nil || other.SubmissionID != second.ID {
		t.Fatalf("w2 read = %+v, %v; want the second job", other, err)
	}
	// ...but w1, restarted under the same name, resumes it.
	resumed, err := one(s.ReadJobs(ctx, []string{"ch"}, "w1", true, 0))
	if err != nil || resumed == nil || resumed.SubmissionID != first.ID {
		t.Fatalf("pending read = %+v, %v; want %s", resumed, err, first.ID)
	}
	// And a stale job can be claimed by someone else after the lease.
	time.Sleep(20 * time.Millisecond)
	claimed, err := s.ClaimStale(ctx, []string{"ch"}, "w3", 10*time.Millisecond)
	if err != nil || claimed == nil {
		t.Fatalf("claim stale = %+v, %v", claimed, err)
	}
	for _, j := range []*Job{job, other} {
		if err := s.Ack(ctx, j); err != nil {
			t.Fatal(err)
		}
	}
	if left, _ := s.ReadJobs(ctx, []string{"ch"}, "w1", true, 0); left != nil {
		t.Fatalf("job left pending after ack: %+v", left)
	}
}

// one is the single job of a read, nil for none; more is an error.
func one(jobs []*Job, err error) (*Job, error) {
	switch {
	case err != nil || len(jobs) == 0:
		return nil, err
	case len(jobs) > 1:
		return nil, fmt.Errorf("read returned %d jobs, want one", len(jobs))
	}
	return jobs[0], nil
}

// TestReadsTakeOneJobAndServeEveryQueue: with work queued on several
// challenges, each read takes exactly one job (nothing is held back from
// other workers) and the queues are served in turn.
func TestReadsTakeOneJobAndServeEveryQueue(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	slugs := []string{"a", "b", "c"}
	if err := s.EnsureGroups(ctx, slugs); err != nil {
		t.Fatal(err)
	}
	team, _ := s.CreateTeam(ctx, "t", "h", RoleParticipant)
	for range 2 {
		for _, slug := range slugs {
			if _, err := s.Enqueue(ctx, slug, team, "sha", 1); err != nil {
				t.Fatal(err)
			}
		}
	}
	served := map[string]int{}
	for i := range 6 {
		job, err := one(s.ReadJobs(ctx, slugs, "w", false, 100*time.Millisecond))
		if err != nil || job == nil {
			t.Fatalf("read %d: %v %v", i, job, err)
		}
		served[job.Challenge]++
		if i == 2 && len(served) != 3 {
			t.Fatalf("after three reads only %v were served", served)
		}
	}
	if job, err := one(s.ReadJobs(ctx, slugs, "w", false, 50*time.Millisecond)); job != nil || err != nil {
		t.Fatalf("empty queues gave %v %v", job, err)
	}
}

func TestFinishIsWrittenOnce(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	team, _ := s.CreateTeam(ctx, "t", "h", RoleParticipant)
	sb, _ := s.Enqueue(ctx, "ch", team, "sha", 1)
	running, started, err := s.Start(ctx, sb.ID, "w")
	if err != nil || !started {
		t.Fatalf("start: %v %v", started, err)
	}
	if stored, _ := s.Submission(ctx, sb.ID); running.Status != stored.Status || running.Attempts != stored.Attempts ||
		!running.StartedAt.Equal(stored.StartedAt) || running.Status != StatusRunning {
		t.Fatalf("Start returned %+v, stored %+v", running, stored)
	}
	first := Result{Status: StatusScored, Metrics: &Metrics{Public: map[string]float64{"accuracy": 0.9}}}
	if ok, err := s.Finish(ctx, running, first); err != nil || !ok {
		t.Fatalf("first finish: %v %v", ok, err)
	}
	if ok, err := s.Finish(ctx, running, Result{Status: StatusFailed, Reason: "internal"}); err != nil || ok {
		t.Fatalf("second finish changed a final result: %v %v", ok, err)
	}
	if _, started, _ := s.Start(ctx, sb.ID, "w"); started {
		t.Fatal("a final submission was started again")
	}
	got, _ := s.Submission(ctx, sb.ID)
	if got.Status != StatusScored || got.Metrics.Public["accuracy"] != 0.9 || got.Attempts != 1 {
		t.Fatalf("stored %+v", got)
	}
}

func TestQuotaIsAtomic(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	now := time.Date(2026, 3, 1, 18, 0, 0, 0, time.UTC)
	var wg sync.WaitGroup
	var mu sync.Mutex
	granted := 0
	for i := 0; i < 30; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			retry, err := s.TakeQuota(ctx, "ch", "team", 5, now)
			if err != nil {
				t.Error(err)
				return
			}
			if retry == 0 {
				mu.Lock()
				granted++
				mu.Unlock()
			} else if retry != 6*time.Hour {
				t.Errorf("retry after %s, want 6h (to UTC midnight)", retry)
			}
		}()
	}
	wg.Wait()
	if granted != 5 {
		t.Fatalf("granted %d submissions, want 5", granted)
	}
	if err := s.ReturnQuota(ctx, "ch", "team", now); err != nil {
		t.Fatal(err)
	}
	if retry, _ := s.TakeQuota(ctx, "ch", "team", 5, now); retry != 0 {
		t.Fatal("a returned submission could not be taken again")
	}
	if retry, _ := s.TakeQuota(ctx, "ch", "team", 5, now.Add(7*time.Hour)); retry != 0 {
		t.Fatal("quota did not reset the next UTC day")
	}
}

// scored enqueues, starts and finishes a submission with the given public
// and private scores (nil metrics: it fails).
func scored(t *testing.T, s *Store, team Team, pub, priv map[string]float64) Submission {
	t.Helper()
	res := Result{Status: StatusFailed, Reason: "crashed"}
	if pub != nil {
		res = Result{Status: StatusScored, Metrics: &Metrics{Public: pub, Private: priv}}
	}
	return finished(t, s, team, res)
}

// finished enqueues a submission of team, starts it and writes res as its
// result, as a judge does, and returns the record.
func finished(t *testing.T, s *Store, team Team, res Result) Submission {
	t.Helper()
	ctx := context.Background()
	sb, err := s.Enqueue(ctx, "ch", team, "sha", 1)
	if err != nil {
		t.Fatal(err)
	}
	sb, _, err = s.Start(ctx, sb.ID, "w")
	if err != nil {
		t.Fatal(err)
	}
	if done, err := s.FinishRun(ctx, sb, res); err != nil || !done.Wrote {
		t.Fatalf("finish: %+v %v", done, err)
	}
	sb, _ = s.Submission(ctx, sb.ID)
	return sb
}

func boardIDs(t *testing.T, s *Store, board string) []string {
	t.Helper()
	entries, err := s.Board(context.Background(), "ch", board)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range entries {
		ids = append(ids, e.SubmissionID)
	}
	return ids
}

// TestRebuildRanksByTheNewMetric: after the primary metric changes from
// accuracy (higher is better) to log_loss (lower is better), the rebuilt
// boards hold each team's best by log_loss, failed runs stay off, and the
// report says what moved.
func TestRebuildRanksByTheNewMetric(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	a, _ := s.CreateTeam(ctx, "a", "h", RoleParticipant)
	b, _ := s.CreateTeam(ctx, "b", "h", RoleParticipant)
	c, _ := s.CreateTeam(ctx, "c", "h", RoleParticipant)
	m := func(acc, loss float64) map[string]float64 {
		return map[string]float64{"accuracy": acc, "log_loss": loss}
	}
	a1 := scored(t, s, a, m(0.9, 0.50), m(0.9, 0.55))
	a2 := scored(t, s, a, m(0.8, 0.20), m(0.8, 0.25))
	b1 := scored(t, s, b, m(0.85, 0.30), m(0.85, 0.10))
	scored(t, s, c, nil, nil) // failed: never ranked
	byAccuracy := Rules{Metric: "accuracy", HigherIsBetter: true}
	for _, sub := range []Submission{a1, a2, b1} {
		if _, err := s.UpdateBoard(ctx, "ch", byAccuracy, sub, sub.Metrics.Public["accuracy"]); err != nil {
			t.Fatal(err)
		}
		if _, err := s.RefreshPrivateEntry(ctx, "ch", sub.TeamID, byAccuracy); err != nil {
			t.Fatal(err)
		}
	}
	if got := boardIDs(t, s, BoardPublic); !slices.Equal(got, []string{a1.ID, b1.ID}) {
		t.Fatalf("accuracy board %v", got)
	}
	// A judge that still ranks by accuracy after the change is refused.
	byLoss := Rules{Metric: "log_loss"}
	rep, err := s.RebuildBoards(ctx, "ch", byLoss)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateBoard(ctx, "ch", byAccuracy, a1, 0.9); !errors.Is(err, ErrBoardRulesChanged) {
		t.Fatalf("stale metric update: %v, want ErrBoardRulesChanged", err)
	}
	if got := boardIDs(t, s, BoardPublic); !slices.Equal(got, []string{a2.ID, b1.ID}) {
		t.Fatalf("public log_loss board %v, want a2 (0.20) then b1 (0.30)", got)
	}
	if got := boardIDs(t, s, BoardPrivate); !slices.Equal(got, []string{b1.ID, a2.ID}) {
		t.Fatalf("private log_loss board %v, want b1 (0.10) then a2 (0.25)", got)
	}
	if rep.Considered != 3 || len(rep.MissingMetric) != 0 || len(rep.Boards) != 2 {
		t.Fatalf("report %+v", rep)
	}
	pub := rep.Boards[0]
	// Every score changes with the metric; team a also changes submission.
	if pub.Board != BoardPublic || len(pub.Changes) != 2 || pub.Changes[0].Team != "a" || pub.Changes[1].NewScore != 0.30 ||
		pub.Changes[0].OldSubmission != a1.ID || pub.Changes[0].NewSubmission != a2.ID || pub.Changes[0].NewScore != 0.20 {
		t.Fatalf("public changes %+v", pub.Changes)
	}
	priv := rep.Boards[1]
	if len(priv.Changes) != 2 || priv.Changes[0].Team != "b" || priv.Changes[0].OldRank != 2 || priv.Changes[0].NewRank != 1 {
		t.Fatalf("private changes %+v", priv.Changes)
	}
	// Rebuilding again changes nothing.
	again, err := s.RebuildBoards(ctx, "ch", byLoss)
	if err != nil || len(again.Boards[0].Changes)+len(again.Boards[1].Changes) != 0 {
		t.Fatalf("second rebuild: %+v %v", again, err)
	}
	// Submissions scored before a metric existed are reported, not ranked.
	missing, err := s.RebuildBoards(ctx, "ch", Rules{Metric: "f1", HigherIsBetter: true})
	if err != nil || len(missing.MissingMetric) != 3 || missing.Boards[0].Entries != 0 {
		t.Fatalf("rebuild by an unscored metric: %+v %v", missing, err)
	}
	hist, err := s.History(ctx, "ch", "accuracy")
	if err != nil || len(hist) != 3 || hist[0].SubmissionID != a1.ID || hist[2].Score != 0.85 || hist[0].At.IsZero() {
		t.Fatalf("history %+v %v", hist, err)
	}
}

func TestInternalFailureRefundsQuotaOnce(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	team, _ := s.CreateTeam(ctx, "t", "h", RoleParticipant)
	now := time.Now()
	for range 2 {
		if wait, err := s.TakeQuota(ctx, "ch", team.ID, 2, now); err != nil || wait != 0 {
			t.Fatalf("take: %v %v", wait, err)
		}
	}
	if wait, _ := s.TakeQuota(ctx, "ch", team.ID, 2, now); wait == 0 {
		t.Fatal("a third submission passed a quota of 2")
	}
	sb, _ := s.Enqueue(ctx, "ch", team, "sha", 1)
	sb, _, _ = s.Start(ctx, sb.ID, "w")
	res := Result{Status: StatusFailed, Reason: "internal", RefundQuota: true}
	if ok, err := s.Finish(ctx, sb, res); err != nil || !ok {
		t.Fatal(ok, err)
	}
	// A second finish (a reclaimed job) must not refund again.
	if ok, _ := s.Finish(ctx, sb, res); ok {
		t.Fatal("finished twice")
	}
	if wait, _ := s.TakeQuota(ctx, "ch", team.ID, 2, now); wait != 0 {
		t.Fatal("the refunded submission cannot be used")
	}
	if wait, _ := s.TakeQuota(ctx, "ch", team.ID, 2, now); wait == 0 {
		t.Fatal("the quota was refunded twice")
	}
	if got, _ := s.Submission(ctx, sb.ID); !got.QuotaRefunded {
		t.Fatal("the submission does not say its quota was refunded")
	}
}

// TestEventsFollowEachChangeOnce: every status change of a submission is
// one event, written with the change (a repeated finish writes none), a
// public board change is one event, and no event carries a private score,
// a log or a failure message.
func TestEventsFollowEachChangeOnce(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	team, _ := s.CreateTeam(ctx, "Owls", "h", RoleParticipant)
	sb := scored(t, s, team, map[string]float64{"accuracy": 0.91}, map[string]float64{"accuracy": 0.12345})
	if _, err := s.Finish(ctx, sb, Result{Status: StatusFailed, Reason: "internal"}); err != nil {
		t.Fatal(err)
	}
	byAccuracy := Rules{Metric: "accuracy", HigherIsBetter: true}
	if _, err := s.UpdateBoard(ctx, "ch", byAccuracy, sb, sb.Metrics.Public["accuracy"]); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RefreshPrivateEntry(ctx, "ch", sb.TeamID, byAccuracy); err != nil {
		t.Fatal(err)
	}
	failed := scored(t, s, team, nil, nil)
	if _, err := s.Reveal(ctx, "ch", time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Reveal(ctx, "ch", time.Now()); err != nil {
		t.Fatal(err)
	}

	evs, err := s.EventsAfter(ctx, "0-0", 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ev := range evs {
		if strings.Contains(string(ev.Data), "0.12345") || strings.Contains(string(ev.Data), "private") {
			t.Errorf("event %s leaks the private score: %s", ev.Type, ev.Data)
		}
		desc := ev.Type
		if ev.Type == EventSubmission {
			var se SubmissionEvent
			if err := json.Unmarshal(ev.Data, &se); err != nil {
				t.Fatal(err)
			}
			desc += ":" + se.Status
			if se.Team != "Owls" || se.Challenge != "ch" || ev.Challenge != "ch" {
				t.Errorf("submission event %+v on %q", se, ev.Challenge)
			}
			if se.Status == StatusScored && se.Public["accuracy"] != 0.91 {
				t.Errorf("scored event without its public score: %s", ev.Data)
			}
			if se.ID == failed.ID && se.Status == StatusFailed && se.Reason != "crashed" {
				t.Errorf("failed event without its reason: %s", ev.Data)
			}
		}
		got = append(got, desc)
	}
	want := "submission:queued submission:running submission:scored leaderboard " +
		"submission:queued submission:running submission:failed reveal"
	if strings.Join(got, " ") != want {
		t.Fatalf("events:\n got %s\nwant %s", strings.Join(got, " "), want)
	}
}

// TestBoardEventsNeverGoBackwards: judges changing a board at once publish
// snapshots in the order the board changed, so a page that applies each
// snapshot never shows a team's score going down, and the last snapshot is
// the board.
func TestBoardEventsNeverGoBackwards(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	const judges, rounds = 6, 30
	var wg sync.WaitGroup
	for j := range judges {
		team, err := s.CreateTeam(ctx, fmt.Sprintf("team-%d", j), "h", RoleParticipant)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				sub, err := s.Enqueue(ctx, "ch", team, "sha", 1)
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := s.UpdateBoard(ctx, "ch", Rules{Metric: "accuracy", HigherIsBetter: true}, sub, float64(r+1)/100); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	evs, err := s.EventsAfter(ctx, "0-0", 100000)
	if err != nil {
		t.Fatal(err)
	}
	best := map[string]float64{}
	var last BoardEvent
	boards := 0
	for _, ev := range evs {
		if ev.Type != EventLeaderboard {
			continue
		}
		boards++
		last = BoardEvent{}
		if err := json.Unmarshal(ev.Data, &last); err != nil {
			t.Fatal(err)
		}
		for _, e := range last.Entries {
			if e.Score < best[e.TeamName] {
				t.Fatalf("event %s shows %s at %.2f after a snapshot with %.2f", ev.ID, e.TeamName, e.Score, best[e.TeamName])
			}
			best[e.TeamName] = e.Score
		}
	}
	// A snapshot older than one already written is dropped, never sent
	// late; so there may be fewer events than changes.
	if boards == 0 || boards > judges*rounds {
		t.Fatalf("%d board events for %d board changes", boards, judges*rounds)
	}
	now, err := s.Board(ctx, "ch", BoardPublic)
	if err != nil {
		t.Fatal(err)
	}
	for i := range now {
		now[i].TeamID = "" // not in events
	}
	if got, want := fmt.Sprint(last.Entries), fmt.Sprint(now); got != want {
		t.Fatalf("last snapshot %s, board %s", got, want)
	}
}

func TestCompareStreamIDsIsNumeric(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"1-0", "1-0", 0},
		{"1-0", "1-1", -1},
		{"2-0", "10-0", -1},   // not lexicographic
		{"10-2", "10-10", -1}, // nor in the sequence
		{"1700000000001-0", "1700000000000-99", 1},
		{"0-0", "1-0", -1},
	} {
		if got := CompareStreamIDs(tc.a, tc.b); got != tc.want {
			t.Errorf("CompareStreamIDs(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}
