package store

import (
	"context"
	"errors"
	"fmt"
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
				changed, err := s.UpdateBoard(ctx, "ch", BoardPublic, higher, u.sub, u.score)
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
	job, err := s.ReadJobs(ctx, []string{"ch"}, "w1", false, 100*time.Millisecond)
	if err != nil || job == nil || job.SubmissionID != first.ID {
		t.Fatalf("first read = %+v, %v; want %s", job, err, first.ID)
	}
	if pos, _ := s.QueuePosition(ctx, "ch", second.StreamID); pos != 1 {
		t.Fatalf("after one delivery, position of second = %d, want 1", pos)
	}
	// Worker w1 "dies" without acking; another worker does not see the
	// job as new...
	other, err := s.ReadJobs(ctx, []string{"ch"}, "w2", false, 100*time.Millisecond)
	if err != nil || other == nil || other.SubmissionID != second.ID {
		t.Fatalf("w2 read = %+v, %v; want the second job", other, err)
	}
	// ...but w1, restarted under the same name, resumes it.
	resumed, err := s.ReadJobs(ctx, []string{"ch"}, "w1", true, 0)
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

func TestFinishIsWrittenOnce(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	team, _ := s.CreateTeam(ctx, "t", "h", RoleParticipant)
	sb, _ := s.Enqueue(ctx, "ch", team, "sha", 1)
	if _, started, err := s.Start(ctx, sb.ID, "w"); err != nil || !started {
		t.Fatalf("start: %v %v", started, err)
	}
	first := Result{Status: StatusScored, Metrics: &Metrics{Public: map[string]float64{"accuracy": 0.9}}}
	if ok, err := s.Finish(ctx, sb.ID, first); err != nil || !ok {
		t.Fatalf("first finish: %v %v", ok, err)
	}
	if ok, err := s.Finish(ctx, sb.ID, Result{Status: StatusFailed, Reason: "internal"}); err != nil || ok {
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
