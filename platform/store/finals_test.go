package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// judged scores a submission of team as a judge does: the result and its
// ranking in one step.
func judged(t *testing.T, s *Store, team Team, r Rules, pub, priv float64) Submission {
	t.Helper()
	return finished(t, s, team, Result{Status: StatusScored, Metrics: &Metrics{Public: map[string]float64{r.Metric: pub}, Private: map[string]float64{r.Metric: priv}},
		Ranking: &Ranking{Rules: r}})
}

func privateEntry(t *testing.T, s *Store, team string) (string, float64) {
	t.Helper()
	entries, err := s.Board(context.Background(), "ch", BoardPrivate)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.TeamName == team {
			return e.SubmissionID, e.Score
		}
	}
	return "", 0
}

// TestThePrivateBoardRanksATeamByItsFinals: a team that submits 20
// variants whose private scores scatter is ranked on the private board by
// its finals only: by default its best 2 by public score, else those it
// selected; selecting another moves it, a rebuild agrees, and selections
// are bounded, scored-only and end when the challenge closes.
func TestThePrivateBoardRanksATeamByItsFinals(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	r := Rules{Metric: "accuracy", HigherIsBetter: true, Finals: 2}
	many, _ := s.CreateTeam(ctx, "many", "h", RoleParticipant)
	one, _ := s.CreateTeam(ctx, "one", "h", RoleParticipant)
	// Public scores rise with i; private ones scatter around 0.80, the
	// luckiest (0.95) on a middling public score.
	var subs []Submission
	for i := range 20 {
		priv := 0.80 + 0.01*float64((i*7)%11-5)
		if i == 6 {
			priv = 0.95
		}
		subs = append(subs, judged(t, s, many, r, 0.70+0.01*float64(i), priv))
	}
	judged(t, s, one, r, 0.75, 0.90)

	// By default: the best 2 by public score (i = 19, 18), and the better
	// private of those.
	wantDefault := subs[18]
	if subs[19].Metrics.Private["accuracy"] > subs[18].Metrics.Private["accuracy"] {
		wantDefault = subs[19]
	}
	if id, score := privateEntry(t, s, "many"); id != wantDefault.ID || score != wantDefault.Metrics.Private["accuracy"] {
		t.Fatalf("by default the private entry is %s (%v), want the better of the best 2 public: %s (%v)", id, score, wantDefault.ID, wantDefault.Metrics.Private["accuracy"])
	}
	if entries, _ := s.Board(ctx, "ch", BoardPrivate); entries[0].TeamName != "one" {
		t.Fatalf("team one (0.90) should lead the private board over the finals of many: %+v", entries)
	}
	finals, err := s.TeamFinals(ctx, "ch", many.ID, r)
	if err != nil || finals.Selected || len(finals.Submissions) != 2 || finals.Submissions[0].ID != subs[19].ID || !finals.Has(subs[18].ID) {
		t.Fatalf("default finals: %+v %v", finals, err)
	}

	// Selecting the lucky variant moves the team to the top.
	since, _ := s.LastEventID(ctx)
	if changed, err := s.SelectFinal(ctx, subs[6], true, r, time.Time{}); err != nil || !changed {
		t.Fatalf("select: %v %v", changed, err)
	}
	if id, score := privateEntry(t, s, "many"); id != subs[6].ID || score != 0.95 {
		t.Fatalf("after selecting the lucky one: %s %v", id, score)
	}
	if entries, _ := s.Board(ctx, "ch", BoardPrivate); entries[0].TeamName != "many" {
		t.Fatalf("the selected 0.95 should lead: %+v", entries)
	}
	// Selecting again changes nothing; a second one is allowed, a third not.
	if changed, err := s.SelectFinal(ctx, subs[6], true, r, time.Time{}); err != nil || changed {
		t.Fatalf("selecting again: %v %v", changed, err)
	}
	if _, err := s.SelectFinal(ctx, subs[0], true, r, time.Time{}); err != nil {
		t.Fatal(err)
	}
	var tooMany *TooManyFinalsError
	if _, err := s.SelectFinal(ctx, subs[1], true, r, time.Time{}); !errors.As(err, &tooMany) || tooMany.Max != 2 || len(tooMany.Selected) != 2 {
		t.Fatalf("a third final: %v", err)
	}
	// The rebuild follows the same rule.
	rep, err := s.RebuildBoards(ctx, "ch", r)
	if err != nil || len(rep.Boards[1].Changes) != 0 {
		t.Fatalf("a rebuild after the selection changed the private board: %+v %v", rep.Boards, err)
	}
	// Unselecting the lucky one leaves only subs[0] selected.
	if _, err := s.SelectFinal(ctx, subs[6], false, r, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if id, _ := privateEntry(t, s, "many"); id != subs[0].ID {
		t.Fatalf("with only subs[0] selected the entry is %s", id)
	}
	if _, err := s.SelectFinal(ctx, subs[0], false, r, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if id, _ := privateEntry(t, s, "many"); id != wantDefault.ID {
		t.Fatalf("with nothing selected the entry is %s, want the default %s", id, wantDefault.ID)
	}
	// A new submission that enters the best 2 by public score changes the
	// default finals.
	top := judged(t, s, many, r, 0.99, 0.97)
	if id, _ := privateEntry(t, s, "many"); id != top.ID {
		t.Fatalf("a new best public submission is a default final: entry %s, want %s", id, top.ID)
	}

	// Every selection change is an event, naming team and submission.
	events, _ := s.EventsAfter(ctx, since, 1000)
	var changes []string
	for _, e := range events {
		if e.Type == EventFinal {
			var fe FinalEvent
			if err := json.Unmarshal(e.Data, &fe); err != nil {
				t.Fatal(err)
			}
			changes = append(changes, fmt.Sprintf("%s %s %v", fe.Team, fe.SubmissionID, fe.Selected))
		}
	}
	want := []string{"many " + subs[6].ID + " true", "many " + subs[0].ID + " true", "many " + subs[6].ID + " false", "many " + subs[0].ID + " false"}
	if fmt.Sprint(changes) != fmt.Sprint(want) {
		t.Fatalf("final events %v, want %v", changes, want)
	}

	// Only a scored submission can be a final, and only until the close.
	failed := scored(t, s, many, nil, nil)
	if _, err := s.SelectFinal(ctx, failed, true, r, time.Time{}); !errors.Is(err, ErrNotScored) {
		t.Fatalf("selecting a failed submission: %v", err)
	}
	if _, err := s.SelectFinal(ctx, subs[3], true, r, time.Now().Add(-time.Second)); !errors.Is(err, ErrClosed) {
		t.Fatalf("selecting after the close: %v", err)
	}
}

// TestBoardsWrittenBeforeFinalsAreRebuiltOnce: boards written by a version
// that ranked the private board by every submission (no "finals" rule
// recorded) are rebuilt by the first reconcile, then left alone; a change
// of how many finals count rebuilds them too.
func TestBoardsWrittenBeforeFinalsAreRebuiltOnce(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	r := Rules{Metric: "accuracy", HigherIsBetter: true}
	team, _ := s.CreateTeam(ctx, "t", "h", RoleParticipant)
	low := judged(t, s, team, r, 0.9, 0.5)
	lucky := judged(t, s, team, r, 0.7, 0.99)
	judged(t, s, team, r, 0.8, 0.6)
	// As the old version wrote them: the luckiest private score ranked,
	// and no finals rule recorded.
	o, _ := newBoardOffer(lucky, 0.99, r)
	s.rdb.Del(ctx, boardKey("ch", BoardPrivate), boardEntriesKey("ch", BoardPrivate))
	s.rdb.ZAdd(ctx, boardKey("ch", BoardPrivate), redisZ(o))
	s.rdb.HSet(ctx, boardEntriesKey("ch", BoardPrivate), team.ID, o.record)
	s.rdb.HDel(ctx, boardMetaKey("ch"), "finals")

	rebuilt, _, err := s.ReconcileBoards(ctx, "ch", r)
	if err != nil || !rebuilt {
		t.Fatalf("reconcile of old boards: %v %v", rebuilt, err)
	}
	// Default finals: the best 2 public (0.9 and 0.8): private 0.6 of the
	// third submission.
	if id, score := privateEntry(t, s, "t"); id == lucky.ID || id == low.ID || score != 0.6 {
		t.Fatalf("after the migration the private entry is %s (%v), want the third (0.6)", id, score)
	}
	if again, _, err := s.ReconcileBoards(ctx, "ch", r); err != nil || again {
		t.Fatalf("a second reconcile rebuilt again: %v %v", again, err)
	}
	three := r
	three.Finals = 3
	if rebuilt, _, err := s.ReconcileBoards(ctx, "ch", three); err != nil || !rebuilt {
		t.Fatalf("3 finals instead of 2: %v %v", rebuilt, err)
	}
	if id, _ := privateEntry(t, s, "t"); id != lucky.ID {
		t.Fatalf("with 3 finals every submission counts: entry %s, want %s", id, lucky.ID)
	}
}

func redisZ(o boardOffer) redis.Z {
	v, _ := strconv.ParseFloat(o.sortKey, 64)
	return redis.Z{Score: v, Member: o.member}
}

// TestWhatARunUsedIsKeptAndOnTheBoards: the resources a judge measured
// are on the record and on both boards' entries.
func TestWhatARunUsedIsKeptAndOnTheBoards(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	team, _ := s.CreateTeam(ctx, "t", "h", RoleParticipant)
	sb, _ := s.Enqueue(ctx, "ch", team, "sha", 1234)
	sb, _, _ = s.Start(ctx, sb.ID, "w")
	used := &Resources{JudgingSeconds: 2.5, Examples: 1000, ExamplesPerSecond: 400, PeakMemoryBytes: 64 << 20, EngineSeconds: 1.25, BinaryBytes: 1234}
	r := Rules{Metric: "accuracy", HigherIsBetter: true}
	res := Result{Status: StatusScored, Metrics: &Metrics{Public: map[string]float64{"accuracy": 0.9}, Private: map[string]float64{"accuracy": 0.8}},
		Ranking: &Ranking{Rules: r}, Resources: used}
	if done, err := s.FinishRun(ctx, sb, res); err != nil || !done.Wrote {
		t.Fatal(done, err)
	}
	got, _ := s.Submission(ctx, sb.ID)
	if got.Resources == nil || *got.Resources != *used {
		t.Fatalf("record: %+v, want %+v", got.Resources, used)
	}
	for _, board := range []string{BoardPublic, BoardPrivate} {
		entries, err := s.Board(ctx, "ch", board)
		if err != nil || len(entries) != 1 || entries[0].Resources == nil || *entries[0].Resources != *used {
			t.Fatalf("%s board: %+v %v", board, entries, err)
		}
	}
}

// TestATieBreakerRanksEqualScoresByWhatTheRunsUsed: two teams tie on the
// primary metric; by default the earlier submission ranks first, with
// judging_seconds as the tie-breaker the faster run does, on both boards,
// incrementally and after a rebuild (which a change of tie-breaker makes).
func TestATieBreakerRanksEqualScoresByWhatTheRunsUsed(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	judge := func(team Team, r Rules, seconds float64) Submission {
		t.Helper()
		return finished(t, s, team, Result{Status: StatusScored, Metrics: &Metrics{Public: map[string]float64{"accuracy": 0.9}, Private: map[string]float64{"accuracy": 0.9}},
			Ranking: &Ranking{Rules: r}, Resources: &Resources{JudgingSeconds: seconds}})
	}
	top := func(board string) string {
		t.Helper()
		entries, err := s.Board(ctx, "ch", board)
		if err != nil || len(entries) != 2 {
			t.Fatalf("%s board: %+v %v", board, entries, err)
		}
		return entries[0].TeamName
	}
	slow, _ := s.CreateTeam(ctx, "slow", "h", RoleParticipant)
	fast, _ := s.CreateTeam(ctx, "fast", "h", RoleParticipant)
	byTime := Rules{Metric: "accuracy", HigherIsBetter: true, TieBreaker: "judging_seconds"}
	judge(slow, byTime, 9)
	judge(fast, byTime, 2)
	for _, b := range []string{BoardPublic, BoardPrivate} {
		if got := top(b); got != "fast" {
			t.Fatalf("with judging_seconds breaking ties, %s leads the %s board", got, b)
		}
	}
	// Without a tie-breaker the earlier submission wins the tie.
	plain := Rules{Metric: "accuracy", HigherIsBetter: true}
	if rebuilt, _, err := s.ReconcileBoards(ctx, "ch", plain); err != nil || !rebuilt {
		t.Fatalf("dropping the tie-breaker: %v %v", rebuilt, err)
	}
	for _, b := range []string{BoardPublic, BoardPrivate} {
		if got := top(b); got != "slow" {
			t.Fatalf("without a tie-breaker, %s leads the %s board", got, b)
		}
	}
	// And back: the rebuild agrees with the incremental ranking.
	if rebuilt, _, err := s.ReconcileBoards(ctx, "ch", byTime); err != nil || !rebuilt {
		t.Fatalf("setting the tie-breaker again: %v %v", rebuilt, err)
	}
	if got := top(BoardPublic); got != "fast" {
		t.Fatalf("after the rebuild %s leads", got)
	}
	if again, _, err := s.ReconcileBoards(ctx, "ch", byTime); err != nil || again {
		t.Fatalf("a second reconcile under the same rules rebuilt: %v %v", again, err)
	}
}

// TestBoardsShowIntervalsAndWhoIsTiedWithTheLeader: entries carry their
// run's interval on the board's half and whether a paired comparison on
// the same resamples tells them apart from the leader; runs bootstrapped
// under another metric carry neither.
func TestBoardsShowIntervalsAndWhoIsTiedWithTheLeader(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	r := Rules{Metric: "accuracy", HigherIsBetter: true}
	// samples are a run's metric on 200 resamples: around mean, with the
	// wobble every run shares (the same draws) and, for all but the
	// leader, a disagreement of its own that goes both ways.
	samples := func(mean float64, own bool) []float32 {
		out := make([]float32, 200)
		for i := range out {
			v := mean + 0.01*float64(i%21-10)/10
			if own {
				v += 0.003 * float64(i%7-3) / 3
			}
			out[i] = float32(v)
		}
		return out
	}
	judge := func(name string, mean float64, metric string) {
		team, _ := s.CreateTeam(ctx, name, "h", RoleParticipant)
		half := func() *HalfBootstrap {
			return &HalfBootstrap{Lo: mean - 0.01, Hi: mean + 0.01, Samples: samples(mean, name != "leader")}
		}
		finished(t, s, team, Result{Status: StatusScored, Metrics: &Metrics{Public: map[string]float64{"accuracy": mean}, Private: map[string]float64{"accuracy": mean}},
			Ranking: &Ranking{Rules: r}, Bootstrap: &Bootstrap{Metric: metric, Resamples: 200, Public: half(), Private: half()}})
	}
	judge("leader", 0.900, "accuracy")
	judge("close", 0.899, "accuracy")
	judge("far", 0.800, "accuracy")
	judge("stale", 0.700, "macro_f1")
	for range 2 { // the second read answers from the remembered pairs
		for _, board := range []string{BoardPublic, BoardPrivate} {
			entries, err := s.Board(ctx, "ch", board)
			if err != nil || len(entries) != 4 {
				t.Fatalf("%s board: %+v %v", board, entries, err)
			}
			byTeam := map[string]BoardEntry{}
			for _, e := range entries {
				byTeam[e.TeamName] = e
			}
			if in := byTeam["leader"].Interval; in == nil || in[0] != 0.89 || in[1] != 0.91 {
				t.Fatalf("%s: the leader's interval %v", board, in)
			}
			if !byTeam["close"].TiedWithLeader || byTeam["far"].TiedWithLeader || byTeam["leader"].TiedWithLeader {
				t.Fatalf("%s: tied flags close %v far %v leader %v", board, byTeam["close"].TiedWithLeader, byTeam["far"].TiedWithLeader, byTeam["leader"].TiedWithLeader)
			}
			if byTeam["stale"].Interval != nil || byTeam["stale"].TiedWithLeader {
				t.Fatalf("%s: a run bootstrapped under another metric shows %+v", board, byTeam["stale"])
			}
		}
	}
	memo := prefix + "lb:ch:public:tied"
	pairs, _ := s.rdb.HGetAll(ctx, memo).Result()
	if len(pairs) != 2 {
		t.Fatalf("%d remembered comparisons on the public board, want 2", len(pairs))
	}
	// A remembered comparison is what a read answers: make one wrong, as
	// a rescore that replaced the samples would.
	entries, _ := s.Board(ctx, "ch", BoardPublic)
	farPair := entries[0].SubmissionID + ":" + entries[2].SubmissionID
	s.rdb.HSet(ctx, memo, farPair, "1")
	if entries, _ := s.Board(ctx, "ch", BoardPublic); !entries[2].TiedWithLeader {
		t.Fatal("a read did not answer from the remembered comparison")
	}
	// A rebuild (which every rescore ends with) forgets them.
	if _, err := s.RebuildBoards(ctx, "ch", r); err != nil {
		t.Fatal(err)
	}
	if entries, _ := s.Board(ctx, "ch", BoardPublic); entries[2].TeamName != "far" || entries[2].TiedWithLeader {
		t.Fatalf("after the rebuild: %+v", entries[2])
	}
}
