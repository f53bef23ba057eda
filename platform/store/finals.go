package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/hackarena/hackarena/challenges"
)

// The private board ranks each team by its finals only: the submissions it
// selected (at most Rules.Finals), or, when it selected none, its best
// Rules.Finals by public score. A team that submits many variants cannot
// have the luckiest one on the private half counted (Kaggle's rule).

func finalsKey(slug, teamID string) string { return prefix + "finals:" + slug + ":" + teamID }

// privateVersionsKey counts, per team, the changes to what its private
// entry is computed from (a scored result, a selection, a rescore): an
// entry computed before such a change is not written.
func privateVersionsKey(slug string) string { return prefix + "lb:" + slug + ":private:versions" }

// Rules are what a challenge's boards rank by.
type Rules struct {
	Metric         string
	HigherIsBetter bool
	// Finals is how many of a team's submissions count on the private
	// board (0: challenges.DefaultFinalSubmissions).
	Finals int
	// TieBreaker is the resource (a key of TieBreakers) that ranks equal
	// scores before their submission time does; "" for none.
	TieBreaker string
}

// RulesOf is what ch's boards rank by.
func RulesOf(ch *challenges.Challenge) Rules {
	return Rules{Metric: ch.PrimaryMetric, HigherIsBetter: ch.HigherIsBetter, Finals: ch.Finals, TieBreaker: ch.Spec.TieBreaker}
}

func (r Rules) finals() int {
	if r.Finals <= 0 {
		return challenges.DefaultFinalSubmissions
	}
	return r.Finals
}

// args are the rules as the scripts record and compare them: how many
// finals count and the tie-breaker travel together, since both change
// which entry a board holds.
func (r Rules) args() (metric, higher, finals string) {
	finals = strconv.Itoa(r.finals())
	if r.TieBreaker != "" {
		finals += ":" + r.TieBreaker
	}
	return r.Metric, strconv.FormatBool(r.HigherIsBetter), finals
}

// Finals are a team's submissions that count on a challenge's private
// board.
type Finals struct {
	// Submissions, best public score first.
	Submissions []Submission
	// Selected: the team chose them; otherwise they are its best by public
	// score.
	Selected bool
}

// Has reports whether the submission id is one of the finals.
func (f Finals) Has(id string) bool {
	return slices.ContainsFunc(f.Submissions, func(s Submission) bool { return s.ID == id })
}

// score is sub's score in metric on one half (private or not).
func score(sub Submission, metric string, private bool) (float64, bool) {
	if sub.Metrics == nil {
		return 0, false
	}
	part := sub.Metrics.Public
	if private {
		part = sub.Metrics.Private
	}
	v, ok := part[metric]
	return v, ok
}

// ranksBefore: a with score va ranks before b with vb (ties to the earlier
// submission, as on the boards).
func ranksBefore(a, b Submission, va, vb float64, r Rules) bool {
	ka, kb := sortKey(va, r.HigherIsBetter), sortKey(vb, r.HigherIsBetter)
	return ka < kb || (ka == kb && boardMember(a, r) < boardMember(b, r))
}

// finalsOf picks a team's finals from its scored submissions to a
// challenge and the ids it selected.
func finalsOf(subs []Submission, selected []string, r Rules) Finals {
	var chosen []Submission
	for _, sub := range subs {
		if sub.Status == StatusScored && slices.Contains(selected, sub.ID) {
			chosen = append(chosen, sub)
		}
	}
	out := Finals{Selected: len(chosen) > 0}
	if !out.Selected {
		for _, sub := range subs {
			if _, ok := score(sub, r.Metric, false); ok && sub.Status == StatusScored {
				chosen = append(chosen, sub)
			}
		}
	}
	slices.SortStableFunc(chosen, func(a, b Submission) int {
		va, oka := score(a, r.Metric, false)
		vb, okb := score(b, r.Metric, false)
		switch {
		case oka && okb && ranksBefore(a, b, va, vb, r):
			return -1
		case oka && okb && ranksBefore(b, a, vb, va, r):
			return 1
		case oka != okb && oka:
			return -1
		case oka != okb:
			return 1
		}
		return 0
	})
	if !out.Selected && len(chosen) > r.finals() {
		chosen = chosen[:r.finals()]
	}
	out.Submissions = chosen
	return out
}

// privateBest is the final with the best private score, if any has one.
func privateBest(f Finals, r Rules) (Submission, float64, bool) {
	var best Submission
	var bestScore float64
	found := false
	for _, sub := range f.Submissions {
		v, ok := score(sub, r.Metric, true)
		if ok && (!found || ranksBefore(sub, best, v, bestScore, r)) {
			best, bestScore, found = sub, v, true
		}
	}
	return best, bestScore, found
}

// briefFields are the fields of a record that board and finals
// computations read (not its log).
var briefFields = []string{"id", "challenge", "team_id", "team_name", "status", "metrics", "queued_at", "started_at", "finished_at", "revision", "sha256", "size", "resources", "excluded", "member"}

// briefSubmissions loads the records of ids without their logs.
func (s *Store) briefSubmissions(ctx context.Context, ids []string) ([]Submission, error) {
	return s.loadSubmissions(ctx, ids, briefFields)
}

// teamScored is a team's scored submissions to slug, with what it
// selected and the version of its private entry's inputs, read in one
// consistent state.
func (s *Store) teamScored(ctx context.Context, slug, teamID string) (subs []Submission, selected []string, version string, err error) {
	var ids *redis.StringSliceCmd
	var sel *redis.StringSliceCmd
	var ver *redis.StringCmd
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		ids = p.ZRange(ctx, teamSubsKey(teamID), 0, -1)
		sel = p.SMembers(ctx, finalsKey(slug, teamID))
		ver = p.HGet(ctx, privateVersionsKey(slug), teamID)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, nil, "", fmt.Errorf("read the submissions of team %s: %w", teamID, err)
	}
	all, err := s.briefSubmissions(ctx, ids.Val())
	if err != nil {
		return nil, nil, "", err
	}
	for _, sub := range all {
		if sub.Challenge == slug && sub.Status == StatusScored && sub.Excluded == nil {
			subs = append(subs, sub)
		}
	}
	version = ver.Val()
	if version == "" {
		version = "0"
	}
	return subs, sel.Val(), version, nil
}

// TeamFinals returns a team's finals in slug under r.
func (s *Store) TeamFinals(ctx context.Context, slug, teamID string, r Rules) (Finals, error) {
	subs, selected, _, err := s.teamScored(ctx, slug, teamID)
	if err != nil {
		return Finals{}, err
	}
	return finalsOf(subs, selected, r), nil
}

// setPrivateScript writes a team's private entry, computed from the state
// whose version it names: when that state has changed since (a result, a
// selection), nothing is written (-2) and the caller computes again; when
// the board ranks by other rules, -1. An empty sort key removes the entry,
// as does the team's disqualification.
var setPrivateScript = redis.NewScript(offerLua + `
if rules_differ(KEYS[3], ARGV[3], ARGV[4], ARGV[5]) then return -1 end
if (redis.call('HGET', KEYS[4], ARGV[1]) or '0') ~= ARGV[2] then return -2 end
set_rules(KEYS[3], ARGV[3], ARGV[4], ARGV[5])
local sortkey = ARGV[6]
if redis.call('HEXISTS', KEYS[5], ARGV[1]) == 1 then sortkey = '' end
local old = redis.call('HGET', KEYS[2], ARGV[1])
if (old and old == ARGV[8] and sortkey ~= '') or (not old and sortkey == '') then return 0 end
if old then redis.call('ZREM', KEYS[1], cjson.decode(old)['member']) end
if sortkey == '' then
  redis.call('HDEL', KEYS[2], ARGV[1])
else
  redis.call('ZADD', KEYS[1], ARGV[6], ARGV[7])
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[8])
end
return 1
`)

// RefreshPrivateEntry sets a team's private board entry to the best
// private score among its finals (none when no final has one). It returns
// whether the entry changed, and ErrBoardRulesChanged when the board ranks
// by other rules than r.
func (s *Store) RefreshPrivateEntry(ctx context.Context, slug, teamID string, r Rules) (bool, error) {
	metric, higher, finals := r.args()
	for try := 0; try < 20; try++ {
		subs, selected, version, err := s.teamScored(ctx, slug, teamID)
		if err != nil {
			return false, err
		}
		var o boardOffer
		if best, v, ok := privateBest(finalsOf(subs, selected, r), r); ok {
			if o, err = newBoardOffer(best, v, r); err != nil {
				return false, err
			}
		}
		res, err := setPrivateScript.Run(ctx, s.rdb, []string{boardKey(slug, BoardPrivate), boardEntriesKey(slug, BoardPrivate), boardMetaKey(slug), privateVersionsKey(slug), disqualifiedKey(slug)},
			teamID, version, metric, higher, finals, o.sortKey, o.member, o.record).Int()
		if err != nil {
			return false, fmt.Errorf("set the private board entry of team %s in %q: %w", teamID, slug, err)
		}
		switch res {
		case -1:
			return false, ErrBoardRulesChanged
		case -2:
			continue
		}
		return res == 1, nil
	}
	return false, fmt.Errorf("set the private board entry of team %s in %q: its submissions kept changing; try again", teamID, slug)
}

// Errors of a finals selection.
var (
	// ErrNotScored: only a scored submission can be a final.
	ErrNotScored = errors.New("only a scored submission can be a final")
	// ErrClosed: the challenge has closed; finals are fixed.
	ErrClosed = errors.New("the challenge has closed")
)

// TooManyFinalsError: the team has selected as many finals as count.
type TooManyFinalsError struct {
	Selected []string
	Max      int
}

func (e *TooManyFinalsError) Error() string {
	return fmt.Sprintf("%d submissions are selected already, the most that count", e.Max)
}

// FinalEvent is a change of a team's selected finals.
type FinalEvent struct {
	Challenge    string `json:"challenge"`
	Team         string `json:"team"`
	SubmissionID string `json:"submission_id"`
	Selected     bool   `json:"selected"`
}

// EventFinal is the event type of a selection change.
const EventFinal = "final"

// selectScript selects (ARGV[1] = '1') or unselects a scored submission
// as one of its team's finals, at most ARGV[2] of them, bumping the team's
// private version and writing the event in the same step.
var selectScript = redis.NewScript(emitLua + `
if redis.call('HGET', KEYS[1], 'status') ~= 'scored' then return -1 end
local team = redis.call('HGET', KEYS[1], 'team_id')
if ARGV[1] == '1' then
  if redis.call('SISMEMBER', KEYS[2], ARGV[5]) == 1 then return 0 end
  if redis.call('SCARD', KEYS[2]) >= tonumber(ARGV[2]) then return -2 end
  redis.call('SADD', KEYS[2], ARGV[5])
else
  if redis.call('SREM', KEYS[2], ARGV[5]) == 0 then return 0 end
end
redis.call('HINCRBY', KEYS[3], team, 1)
emit(KEYS[4], 'final', ARGV[3], ARGV[4])
return 1
`)

// SelectFinal selects (or, with selected false, unselects) sub as one of
// its team's finals in its challenge, until closes (zero: never). At most
// r.Finals may be selected (TooManyFinalsError). It returns whether the
// selection changed; the team's private entry follows it.
func (s *Store) SelectFinal(ctx context.Context, sub Submission, selected bool, r Rules, closes time.Time) (bool, error) {
	if !closes.IsZero() && !time.Now().Before(closes) {
		return false, ErrClosed
	}
	flag := "0"
	if selected {
		flag = "1"
	}
	raw, err := json.Marshal(FinalEvent{Challenge: sub.Challenge, Team: sub.TeamName, SubmissionID: sub.ID, Selected: selected})
	if err != nil {
		return false, err
	}
	res, err := selectScript.Run(ctx, s.rdb, []string{submissionKey(sub.ID), finalsKey(sub.Challenge, sub.TeamID), privateVersionsKey(sub.Challenge), eventsKey},
		flag, r.finals(), sub.Challenge, string(raw), sub.ID).Int()
	if err != nil {
		return false, fmt.Errorf("select finals of team %s: %w", sub.TeamID, err)
	}
	switch res {
	case -1:
		return false, ErrNotScored
	case -2:
		chosen, err := s.rdb.SMembers(ctx, finalsKey(sub.Challenge, sub.TeamID)).Result()
		if err != nil {
			return false, fmt.Errorf("read finals of team %s: %w", sub.TeamID, err)
		}
		slices.Sort(chosen)
		return false, &TooManyFinalsError{Selected: chosen, Max: r.finals()}
	case 0:
		return false, nil
	}
	if _, err := s.RefreshPrivateEntry(ctx, sub.Challenge, sub.TeamID, r); err != nil && !errors.Is(err, ErrBoardRulesChanged) {
		return true, err
	}
	return true, nil
}
