package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/hackarena/hackarena/challenges"
)

// Boards a challenge has.
const (
	BoardPublic  = "public"
	BoardPrivate = "private"
)

// ErrBoardRulesChanged: the board ranks by another metric than the caller
// assumed (an organizer changed the challenge); reload the challenge.
var ErrBoardRulesChanged = errors.New("the leaderboard ranks by another metric now")

// BoardEntry is a team's best submission on a board.
type BoardEntry struct {
	Rank         int       `json:"rank"`
	TeamID       string    `json:"-"`
	TeamName     string    `json:"team"`
	Score        float64   `json:"score"`
	SubmissionID string    `json:"submission_id"`
	SubmittedAt  time.Time `json:"submitted_at"`
	Submissions  int64     `json:"submissions"`
	// Resources are what the entry's run used.
	Resources *Resources `json:"resources,omitempty"`
	// Interval is the 95% bootstrap interval of the score; TiedWithLeader:
	// a paired bootstrap on the same resamples does not tell it apart from
	// the leader's.
	Interval       *[2]float64 `json:"interval,omitempty"`
	TiedWithLeader bool        `json:"tied_with_leader,omitempty"`
}

type boardRecord struct {
	TeamName     string    `json:"team_name"`
	Score        float64   `json:"score"`
	SubmissionID string    `json:"submission_id"`
	SubmittedAt  time.Time `json:"submitted_at"`
	Member       string    `json:"member"`
}

// boardMember orders ties: Redis orders equal scores by member
// (lexicographically), and members start with the tie-breaker's value when
// the rules name one (a fixed-width key that sorts as the value ranks),
// then the zero-padded submission time, so the earlier submission wins
// what is still tied.
func boardMember(sub Submission, r Rules) string {
	return tieKey(sub, r) + fmt.Sprintf("%020d:%s", sub.QueuedAt.UnixNano(), sub.TeamID)
}

// tieKey is sub's tie-breaker value as 16 hex digits that sort as it ranks
// (a run that did not measure it ranks last), then "/"; "" without one.
func tieKey(sub Submission, r Rules) string {
	higher, ok := challenges.TieBreakers[r.TieBreaker]
	if !ok {
		return ""
	}
	v, measured := 0.0, sub.Resources != nil
	if measured {
		switch r.TieBreaker {
		case "judging_seconds":
			v = sub.Resources.JudgingSeconds
		case "peak_memory_bytes":
			v, measured = float64(sub.Resources.PeakMemoryBytes), sub.Resources.PeakMemoryBytes > 0
		case "engine_seconds":
			v = sub.Resources.EngineSeconds
		case "binary_bytes":
			v = float64(sub.Resources.BinaryBytes)
		case "examples_per_second":
			v = sub.Resources.ExamplesPerSecond
		}
	}
	if !measured {
		return "ffffffffffffffff/"
	}
	v = sortKey(v, higher)
	bits := math.Float64bits(v)
	if v >= 0 {
		bits ^= 1 << 63
	} else {
		bits = ^bits
	}
	return fmt.Sprintf("%016x/", bits)
}

// sortKey orients a score so that lower always ranks first.
func sortKey(score float64, higherIsBetter bool) float64 {
	if higherIsBetter {
		return -score
	}
	return score
}

// offerLua keeps one member per team in the public board's sorted set. A
// submission replaces the team's entry only if it ranks strictly before it,
// which also makes a repeated offer of the same submission a no-op. The
// boards' rules (metric, direction, how many finals count) are recorded
// with them; an offer under other rules is refused (-1), so a judge that
// missed a rule change cannot mix metrics, and boards written before the
// finals rule existed (no "finals" recorded) are rebuilt once. A change of
// the public board counts up its version (kversion), which orders the
// snapshots PublishBoard writes. It is shared by UpdateBoard and the
// result's own script, which offers the score in the step that writes it.
// Neither offers an excluded submission or a disqualified team's (barred).
const offerLua = `
local function barred(ksub, kdq, team)
  return (redis.call('HGET', ksub, 'excluded') or '') ~= '' or redis.call('HEXISTS', kdq, team) == 1
end
local function rules_differ(kmeta, metric, higher, finals)
  local m = redis.call('HGET', kmeta, 'metric')
  return m and (m ~= metric or redis.call('HGET', kmeta, 'higher_is_better') ~= higher or redis.call('HGET', kmeta, 'finals') ~= finals)
end
local function set_rules(kmeta, metric, higher, finals)
  if not redis.call('HGET', kmeta, 'metric') then redis.call('HSET', kmeta, 'metric', metric, 'higher_is_better', higher, 'finals', finals) end
end
local function offer(kboard, kentries, kmeta, kversion, team, sortkey, member, rec, metric, higher, finals, public)
  if rules_differ(kmeta, metric, higher, finals) then return -1 end
  set_rules(kmeta, metric, higher, finals)
  local old = redis.call('HGET', kentries, team)
  if old then
    local oldm = cjson.decode(old)['member']
    local olds = tonumber(redis.call('ZSCORE', kboard, oldm))
    local news = tonumber(sortkey)
    if olds < news or (olds == news and oldm <= member) then return 0 end
    redis.call('ZREM', kboard, oldm)
  end
  redis.call('ZADD', kboard, sortkey, member)
  redis.call('HSET', kentries, team, rec)
  if public then redis.call('HINCRBY', kversion, 'version', 1) end
  return 1
end
`

var updateBoardScript = redis.NewScript(offerLua + `
if barred(KEYS[5], KEYS[6], ARGV[1]) then return 0 end
return offer(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], true)
`)

// boardOffer is one board's entry for a scored submission, as offerLua
// takes it.
type boardOffer struct {
	sortKey, member, record string
}

func newBoardOffer(sub Submission, score float64, r Rules) (boardOffer, error) {
	higherIsBetter := r.HigherIsBetter
	member := boardMember(sub, r)
	rec, err := json.Marshal(boardRecord{TeamName: sub.TeamName, Score: score, SubmissionID: sub.ID, SubmittedAt: sub.QueuedAt, Member: member})
	if err != nil {
		return boardOffer{}, fmt.Errorf("encode board entry: %w", err)
	}
	return boardOffer{sortKey: strconv.FormatFloat(sortKey(score, higherIsBetter), 'g', -1, 64), member: member, record: string(rec)}, nil
}

// UpdateBoard offers a scored submission's public score (in r.Metric) to
// the public board; it returns whether the team's entry changed, and
// ErrBoardRulesChanged when the boards rank by other rules. A change is
// published as an event. (The private board follows a team's finals:
// RefreshPrivateEntry.)
func (s *Store) UpdateBoard(ctx context.Context, slug string, r Rules, sub Submission, score float64) (bool, error) {
	o, err := newBoardOffer(sub, score, r)
	if err != nil {
		return false, err
	}
	metric, higher, finals := r.args()
	changed, err := updateBoardScript.Run(ctx, s.rdb, []string{boardKey(slug, BoardPublic), boardEntriesKey(slug, BoardPublic), boardMetaKey(slug), boardVersionKey(slug),
		submissionKey(sub.ID), disqualifiedKey(slug)},
		sub.TeamID, o.sortKey, o.member, o.record, metric, higher, finals).Int()
	if err != nil {
		return false, fmt.Errorf("update the public board of %q: %w", slug, err)
	}
	if changed == -1 {
		return false, ErrBoardRulesChanged
	}
	if changed == 1 {
		if err := s.PublishBoard(ctx, slug, r.Metric, r.HigherIsBetter); err != nil {
			return true, err
		}
	}
	return changed == 1, nil
}

// Board returns a board's entries, best first.
func (s *Store) Board(ctx context.Context, slug, board string) ([]BoardEntry, error) {
	entries, _, err := s.readBoard(ctx, slug, board)
	return entries, err
}

// readBoard reads a board and its version in one transaction, so the
// entries are one consistent state of the board.
func (s *Store) readBoard(ctx context.Context, slug, board string) ([]BoardEntry, int64, error) {
	var members *redis.StringSliceCmd
	var records, counts *redis.MapStringStringCmd
	var version *redis.StringCmd
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		members = p.ZRange(ctx, boardKey(slug, board), 0, -1)
		records = p.HGetAll(ctx, boardEntriesKey(slug, board))
		counts = p.HGetAll(ctx, countsKey(slug))
		version = p.HGet(ctx, boardVersionKey(slug), "version")
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, 0, fmt.Errorf("read %s board of %q: %w", board, slug, err)
	}
	entries := make([]BoardEntry, 0, len(members.Val()))
	for _, member := range members.Val() {
		e, err := boardEntry(member, records.Val()[memberTeam(member)], len(entries)+1)
		if err != nil {
			return nil, 0, err
		}
		e.Submissions, _ = strconv.ParseInt(counts.Val()[e.TeamID], 10, 64)
		entries = append(entries, e)
	}
	if err := s.annotate(ctx, slug, board, entries); err != nil {
		return nil, 0, err
	}
	v, _ := strconv.ParseInt(version.Val(), 10, 64)
	return entries, v, nil
}

// annotate gives each entry what its run used, and its interval and
// comparison with the leader (addIntervals), from one read of the
// entries' records.
func (s *Store) annotate(ctx context.Context, slug, board string, entries []BoardEntry) error {
	if len(entries) == 0 {
		return nil
	}
	ids := make([]string, len(entries))
	for i, e := range entries {
		ids[i] = e.SubmissionID
	}
	subs, err := s.loadSubmissions(ctx, ids, []string{"id", "resources", "interval"})
	if err != nil {
		return fmt.Errorf("read the runs of board entries: %w", err)
	}
	intervals := map[string]*Bootstrap{}
	resources := map[string]*Resources{}
	for _, sub := range subs {
		intervals[sub.ID], resources[sub.ID] = sub.Interval, sub.Resources
	}
	for i := range entries {
		entries[i].Resources = resources[entries[i].SubmissionID]
	}
	return s.addIntervals(ctx, slug, board, entries, intervals)
}

// memberTeam is the team of a board member: members are
// "<zero-padded submission time>:<team id>".
func memberTeam(member string) string {
	_, teamID, _ := strings.Cut(member, ":")
	return teamID
}

// boardEntry decodes a member's stored record at a rank.
func boardEntry(member, record string, rank int) (BoardEntry, error) {
	teamID := memberTeam(member)
	var rec boardRecord
	if err := json.Unmarshal([]byte(record), &rec); err != nil {
		return BoardEntry{}, fmt.Errorf("decode board entry of team %s: %w", teamID, err)
	}
	return BoardEntry{Rank: rank, TeamID: teamID, TeamName: rec.TeamName, Score: rec.Score,
		SubmissionID: rec.SubmissionID, SubmittedAt: rec.SubmittedAt}, nil
}

// BoardSummary is how many teams submitted to a challenge and who leads
// its public board (nil while nobody is ranked).
func (s *Store) BoardSummary(ctx context.Context, slug string) (int64, *BoardEntry, error) {
	teams, err := s.rdb.HLen(ctx, countsKey(slug)).Result()
	if err != nil {
		return 0, nil, fmt.Errorf("count teams of %q: %w", slug, err)
	}
	top, err := s.rdb.ZRange(ctx, boardKey(slug, BoardPublic), 0, 0).Result()
	if err != nil || len(top) == 0 {
		return teams, nil, err
	}
	raw, err := s.rdb.HGet(ctx, boardEntriesKey(slug, BoardPublic), memberTeam(top[0])).Result()
	if err != nil {
		return teams, nil, fmt.Errorf("read the leader of %q: %w", slug, err)
	}
	leader, err := boardEntry(top[0], raw, 1)
	if err != nil {
		return teams, nil, fmt.Errorf("the leader of %q: %w", slug, err)
	}
	return teams, &leader, nil
}

// BoardChange is how one team's entry differs after a rebuild; a zero rank
// means "not on the board".
type BoardChange struct {
	Team          string  `json:"team"`
	OldRank       int     `json:"old_rank"`
	NewRank       int     `json:"new_rank"`
	OldScore      float64 `json:"old_score"`
	NewScore      float64 `json:"new_score"`
	OldSubmission string  `json:"old_submission,omitempty"`
	NewSubmission string  `json:"new_submission,omitempty"`
}

// BoardRebuild reports what a rebuild of one board changed.
type BoardRebuild struct {
	Board   string        `json:"board"`
	Entries int           `json:"entries"`
	Changes []BoardChange `json:"changes"`
}

// RebuildReport is what a rebuild did.
type RebuildReport struct {
	Metric         string `json:"metric"`
	HigherIsBetter bool   `json:"higher_is_better"`
	// Scored submissions considered, and those without a score in the
	// metric (they need a rescore to be ranked).
	Considered    int            `json:"considered"`
	MissingMetric []string       `json:"missing_metric"`
	Boards        []BoardRebuild `json:"boards"`
}

// RebuildBoards recomputes both boards of a challenge from the scored
// submission records under r, and replaces them atomically: the public
// board holds each team's best public score, the private board the best
// private score among its finals. Failed submissions are never in the
// records it reads, so never ranked.
func (s *Store) RebuildBoards(ctx context.Context, slug string, r Rules) (RebuildReport, error) {
	rep := RebuildReport{Metric: r.Metric, HigherIsBetter: r.HigherIsBetter, MissingMetric: []string{}}
	boards := []string{BoardPublic, BoardPrivate}
	old := map[string][]BoardEntry{}
	for _, b := range boards {
		var err error
		if old[b], err = s.Board(ctx, slug, b); err != nil {
			return rep, err
		}
	}
	var seen map[string]bool
	// A disqualification or exclusion made while this computed would be
	// undone by writing what it computed: the write is refused (the
	// moderation version is watched) and the rebuild computes again.
	var err error
	for try := 0; ; try++ {
		err = s.rdb.Watch(ctx, func(tx *redis.Tx) error {
			var err error
			seen, err = s.rebuildOnce(ctx, tx, slug, r, &rep)
			return err
		}, moderationKey(slug))
		if !errors.Is(err, redis.TxFailedErr) || try == 20 {
			break
		}
	}
	if err != nil {
		return rep, fmt.Errorf("replace boards of %q: %w", slug, err)
	}
	// A submission scored, or a final selected, while this ran went to the
	// old boards and was wiped with them: offer it again (offering is
	// idempotent), and compute its team's private entry again.
	again, err := s.ScoredSubmissions(ctx, slug)
	if err != nil {
		return rep, err
	}
	for _, sub := range again {
		if seen[sub.ID] {
			continue
		}
		if v, ok := score(sub, r.Metric, false); ok {
			if _, err := s.UpdateBoard(ctx, slug, r, sub, v); err != nil {
				return rep, err
			}
		}
		if _, err := s.RefreshPrivateEntry(ctx, slug, sub.TeamID, r); err != nil {
			return rep, err
		}
	}
	for _, b := range boards {
		now, err := s.Board(ctx, slug, b)
		if err != nil {
			return rep, err
		}
		rep.Boards = append(rep.Boards, BoardRebuild{Board: b, Entries: len(now), Changes: diffBoards(old[b], now)})
	}
	return rep, s.PublishBoard(ctx, slug, r.Metric, r.HigherIsBetter)
}

func diffBoards(old, now []BoardEntry) []BoardChange {
	byTeam := map[string]*BoardChange{}
	var order []string
	get := func(e BoardEntry) *BoardChange {
		c, ok := byTeam[e.TeamID]
		if !ok {
			c = &BoardChange{Team: e.TeamName}
			byTeam[e.TeamID] = c
			order = append(order, e.TeamID)
		}
		return c
	}
	for _, e := range old {
		c := get(e)
		c.OldRank, c.OldScore, c.OldSubmission = e.Rank, e.Score, e.SubmissionID
	}
	for _, e := range now {
		c := get(e)
		c.NewRank, c.NewScore, c.NewSubmission = e.Rank, e.Score, e.SubmissionID
	}
	out := []BoardChange{}
	for _, id := range order {
		c := byTeam[id]
		if c.OldRank != c.NewRank || c.OldScore != c.NewScore || c.OldSubmission != c.NewSubmission {
			out = append(out, *c)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		return rankOrLast(out[i].NewRank) < rankOrLast(out[j].NewRank)
	})
	return out
}

func rankOrLast(r int) int {
	if r == 0 {
		return int(^uint(0) >> 1)
	}
	return r
}

// HistoryPoint is one scored submission on a challenge's score history.
type HistoryPoint struct {
	Team         string    `json:"team"`
	SubmissionID string    `json:"submission_id"`
	At           time.Time `json:"at"`
	Score        float64   `json:"score"`
}

// History lists every scored submission's public score in metric, in the
// order they were scored, so a page can draw how the board evolved.
func (s *Store) History(ctx context.Context, slug, metric string) ([]HistoryPoint, error) {
	subs, err := s.ScoredSubmissions(ctx, slug)
	if err != nil {
		return nil, err
	}
	barred, err := s.disqualifiedTeams(ctx, slug)
	if err != nil {
		return nil, err
	}
	out := make([]HistoryPoint, 0, len(subs))
	for _, sub := range subs {
		// What ranks nowhere is not drawn either.
		if sub.Metrics == nil || !barred.ranks(sub) {
			continue
		}
		v, ok := sub.Metrics.Public[metric]
		if !ok {
			continue
		}
		out = append(out, HistoryPoint{Team: sub.TeamName, SubmissionID: sub.ID, At: sub.FinishedAt, Score: v})
	}
	return out, nil
}

// BoardRules is the metric and direction a challenge's boards are ranked
// by, as Redis records them; metric is "" before the first entry.
func (s *Store) BoardRules(ctx context.Context, slug string) (metric string, higherIsBetter bool, err error) {
	metric, higher, _, err := s.boardRules(ctx, slug)
	return metric, higher == "true", err
}

// boardRules are the rules a challenge's boards record, as the scripts
// wrote them (Rules.args).
func (s *Store) boardRules(ctx context.Context, slug string) (metric, higher, finals string, err error) {
	m, err := s.rdb.HGetAll(ctx, boardMetaKey(slug)).Result()
	if err != nil {
		return "", "", "", fmt.Errorf("read board rules of %q: %w", slug, err)
	}
	return m["metric"], m["higher_is_better"], m["finals"], nil
}

// ReconcileBoards makes a challenge's boards rank by r: when the rules
// Redis records for them differ (a spec change whose rebuild was lost to a
// crash, a file edited between restarts, another server's view, boards
// written before the finals rule), it rebuilds them from the records.
// Rebuilding is idempotent, so any process may repair, and a repeated call
// is a no-op.
func (s *Store) ReconcileBoards(ctx context.Context, slug string, r Rules) (rebuilt bool, rep RebuildReport, err error) {
	metric, higher, finals, err := s.boardRules(ctx, slug)
	wantMetric, wantHigher, wantFinals := r.args()
	if err != nil || metric == "" || (metric == wantMetric && higher == wantHigher && finals == wantFinals) {
		return false, rep, err
	}
	rep, err = s.RebuildBoards(ctx, slug, r)
	return err == nil, rep, err
}

// rebuildOnce computes both boards of slug from the scored records and
// writes them in one transaction of tx, which watches the moderation
// version. It returns the ids it read.
func (s *Store) rebuildOnce(ctx context.Context, tx *redis.Tx, slug string, r Rules, rep *RebuildReport) (map[string]bool, error) {
	subs, err := s.ScoredSubmissions(ctx, slug)
	if err != nil {
		return nil, err
	}
	barred, err := s.disqualifiedTeams(ctx, slug)
	if err != nil {
		return nil, err
	}
	rep.Considered = len(subs)
	rep.MissingMetric = []string{}
	seen := map[string]bool{}
	type entry struct {
		sub   Submission
		score float64
	}
	best := map[string]map[string]entry{BoardPublic: {}, BoardPrivate: {}}
	byTeam := map[string][]Submission{}
	for _, sub := range subs {
		seen[sub.ID] = true
		if sub.Status != StatusScored || !barred.ranks(sub) {
			continue
		}
		v, ok := score(sub, r.Metric, false)
		if !ok {
			rep.MissingMetric = append(rep.MissingMetric, sub.ID)
			continue
		}
		byTeam[sub.TeamID] = append(byTeam[sub.TeamID], sub)
		if cur, has := best[BoardPublic][sub.TeamID]; !has || ranksBefore(sub, cur.sub, v, cur.score, r) {
			best[BoardPublic][sub.TeamID] = entry{sub, v}
		}
	}
	teams := make([]string, 0, len(byTeam))
	for team := range byTeam {
		teams = append(teams, team)
	}
	slices.Sort(teams)
	for _, team := range teams {
		selected, err := s.rdb.SMembers(ctx, finalsKey(slug, team)).Result()
		if err != nil {
			return nil, fmt.Errorf("read finals of team %s: %w", team, err)
		}
		if sub, v, ok := privateBest(finalsOf(byTeam[team], selected, r), r); ok {
			best[BoardPrivate][team] = entry{sub, v}
		}
	}
	// Teams whose private entry a rebuild may drop: those ranked and those
	// barred, whose entries computed before it must not be written.
	bump := slices.Clone(teams)
	for team := range barred {
		bump = append(bump, team)
	}
	metric, higher, finals := r.args()
	_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, boardMetaKey(slug))
		p.HSet(ctx, boardMetaKey(slug), "metric", metric, "higher_is_better", higher, "finals", finals)
		p.HIncrBy(ctx, boardVersionKey(slug), "version", 1)
		for _, b := range []string{BoardPublic, BoardPrivate} {
			p.Del(ctx, boardKey(slug, b), boardEntriesKey(slug, b))
			for teamID, e := range best[b] {
				o, err := newBoardOffer(e.sub, e.score, r)
				if err != nil {
					return err
				}
				p.ZAdd(ctx, boardKey(slug, b), redis.Z{Score: sortKey(e.score, r.HigherIsBetter), Member: o.member})
				p.HSet(ctx, boardEntriesKey(slug, b), teamID, o.record)
			}
			// Comparisons with the leader rest on samples a rescore
			// (which rebuilds) may have replaced.
			p.Del(ctx, prefix+"lb:"+slug+":"+b+":tied")
		}
		// A private entry computed before this rebuild is not written.
		for _, team := range bump {
			p.HIncrBy(ctx, privateVersionsKey(slug), team, 1)
		}
		return nil
	})
	return seen, err
}
