package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Organizers moderate: a disqualified team is on neither board of the
// challenge, an excluded submission ranks nowhere, and a locked user
// cannot log in. Each is a flag in Redis that every write to a board
// checks in the same script (offerLua's barred, setPrivateScript), so a
// result judged while the flag is set never reaches a board; each change
// counts up the challenge's moderation version, which a rebuild watches,
// so a rebuild computed before the change is not written.

func disqualifiedKey(slug string) string { return prefix + "dq:" + slug }
func moderationKey(slug string) string   { return prefix + "mod:" + slug }

// auditKey is the stream of organizers' actions; it is never trimmed.
const auditKey = prefix + "audit"

// Disqualification is a team's removal from a challenge's boards.
type Disqualification struct {
	TeamID string    `json:"-"`
	Team   string    `json:"team"`
	Reason string    `json:"reason"`
	By     string    `json:"by"`
	At     time.Time `json:"at"`
}

// Exclusion is why a submission ranks on no board.
type Exclusion struct {
	Reason string    `json:"reason"`
	By     string    `json:"by"`
	At     time.Time `json:"at"`
}

// AuditEntry is one organizer action.
type AuditEntry struct {
	ID     string    `json:"id"`
	At     time.Time `json:"at"`
	Actor  string    `json:"actor"`
	Action string    `json:"action"`
	// Challenge is the challenge acted on, if any.
	Challenge string `json:"challenge,omitempty"`
	// Target is the team, submission or user acted on, if any.
	Target string `json:"target,omitempty"`
	Reason string `json:"reason,omitempty"`
	// Detail is what the action changed (a revision, a rebuild's report).
	Detail json.RawMessage `json:"detail,omitempty"`
}

// Audit actions.
const (
	ActionSpecChange = "spec_change"
	ActionReveal     = "reveal"
	ActionRejudge    = "rejudge"
	ActionDisqualify = "disqualify"
	ActionReinstate  = "reinstate"
	ActionExclude    = "exclude"
	ActionInclude    = "include"
	ActionLock       = "lock"
	ActionUnlock     = "unlock"
)

// auditLua appends an entry to the audit stream; the moderation scripts
// write theirs in the step that makes the change, so neither exists
// without the other.
const auditLua = `
local function audit(kaudit, at, actor, action, challenge, target, reason, detail)
  redis.call('XADD', kaudit, '*', 'at', at, 'actor', actor, 'action', action, 'challenge', challenge, 'target', target, 'reason', reason, 'detail', detail)
end
`

func auditArgs(e AuditEntry) []any {
	detail := string(e.Detail)
	return []any{e.At.UTC().Format(time.RFC3339Nano), e.Actor, e.Action, e.Challenge, e.Target, e.Reason, detail}
}

var auditScript = redis.NewScript(auditLua + `
audit(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7])
return 1
`)

// Audit records an organizer action that is not a moderation flag (those
// record theirs with the change).
func (s *Store) Audit(ctx context.Context, e AuditEntry) error {
	if e.At.IsZero() {
		e.At = time.Now()
	}
	if err := auditScript.Run(ctx, s.rdb, []string{auditKey}, auditArgs(e)...).Err(); err != nil {
		return fmt.Errorf("record %s in the audit log: %w", e.Action, err)
	}
	return nil
}

// AuditFilter selects audit entries.
type AuditFilter struct {
	Action, Challenge, Actor, Target string
	// Before is an entry id: only older entries are listed.
	Before string
	Limit  int
}

// AuditLog lists audit entries, newest first, that match f.
func (s *Store) AuditLog(ctx context.Context, f AuditFilter) ([]AuditEntry, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	out := []AuditEntry{}
	end := "+"
	if f.Before != "" {
		end = "(" + f.Before
	}
	const page = 500
	for scanned := 0; len(out) < f.Limit && scanned < 100_000; {
		msgs, err := s.rdb.XRevRangeN(ctx, auditKey, end, "-", page).Result()
		if err != nil {
			return nil, fmt.Errorf("read the audit log: %w", err)
		}
		for _, m := range msgs {
			e := auditFromStream(m)
			if (f.Action == "" || e.Action == f.Action) && (f.Challenge == "" || e.Challenge == f.Challenge) &&
				(f.Actor == "" || strings.EqualFold(e.Actor, f.Actor)) && (f.Target == "" || strings.EqualFold(e.Target, f.Target)) {
				out = append(out, e)
				if len(out) == f.Limit {
					break
				}
			}
		}
		scanned += len(msgs)
		if len(msgs) < page {
			break
		}
		end = "(" + msgs[len(msgs)-1].ID
	}
	return out, nil
}

func auditFromStream(m redis.XMessage) AuditEntry {
	text := func(k string) string { v, _ := m.Values[k].(string); return v }
	e := AuditEntry{ID: m.ID, At: parseTime(text("at")), Actor: text("actor"), Action: text("action"),
		Challenge: text("challenge"), Target: text("target"), Reason: text("reason")}
	if d := text("detail"); d != "" && json.Valid([]byte(d)) {
		e.Detail = json.RawMessage(d)
	}
	return e
}

// disqualifyScript sets (ARGV[1] = '1') or clears a team's
// disqualification. Setting it takes the team off both boards in the same
// step; either way the team's private version and the challenge's
// moderation version count up, and the audit entry is written.
var disqualifyScript = redis.NewScript(auditLua + `
local team = ARGV[2]
if ARGV[1] == '1' then
  redis.call('HSET', KEYS[1], team, ARGV[3])
  for i = 2, 4, 2 do
    local old = redis.call('HGET', KEYS[i + 1], team)
    if old then
      redis.call('ZREM', KEYS[i], cjson.decode(old)['member'])
      redis.call('HDEL', KEYS[i + 1], team)
    end
  end
  redis.call('HINCRBY', KEYS[6], 'version', 1)
else
  if redis.call('HDEL', KEYS[1], team) == 0 then return 0 end
end
redis.call('HINCRBY', KEYS[7], team, 1)
redis.call('INCR', KEYS[8])
audit(KEYS[9], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10])
return 1
`)

// Disqualify takes a team off both boards of slug at once and keeps it off
// until Reinstate, recording e in the audit log. A second call replaces
// the reason. The caller rebuilds and publishes the boards (RebuildBoards
// skips disqualified teams).
func (s *Store) Disqualify(ctx context.Context, slug string, d Disqualification, e AuditEntry) error {
	raw, err := json.Marshal(d)
	if err != nil {
		return err
	}
	_, err = s.setDisqualified(ctx, slug, d.TeamID, "1", string(raw), e)
	return err
}

// Reinstate lifts a team's disqualification; false when it had none. The
// caller rebuilds the boards, which brings its best entries back.
func (s *Store) Reinstate(ctx context.Context, slug, teamID string, e AuditEntry) (bool, error) {
	return s.setDisqualified(ctx, slug, teamID, "0", "", e)
}

func (s *Store) setDisqualified(ctx context.Context, slug, teamID, set, record string, e AuditEntry) (bool, error) {
	keys := []string{disqualifiedKey(slug), boardKey(slug, BoardPublic), boardEntriesKey(slug, BoardPublic),
		boardKey(slug, BoardPrivate), boardEntriesKey(slug, BoardPrivate), boardVersionKey(slug), privateVersionsKey(slug),
		moderationKey(slug), auditKey}
	res, err := disqualifyScript.Run(ctx, s.rdb, keys, append([]any{set, teamID, record}, auditArgs(e)...)...).Int()
	if err != nil {
		return false, fmt.Errorf("%s team %s in %q: %w", e.Action, teamID, slug, err)
	}
	return res == 1, nil
}

// Disqualifications lists a challenge's disqualified teams, by time.
func (s *Store) Disqualifications(ctx context.Context, slug string) ([]Disqualification, error) {
	m, err := s.rdb.HGetAll(ctx, disqualifiedKey(slug)).Result()
	if err != nil {
		return nil, fmt.Errorf("read disqualifications of %q: %w", slug, err)
	}
	out := make([]Disqualification, 0, len(m))
	for teamID, raw := range m {
		var d Disqualification
		if err := json.Unmarshal([]byte(raw), &d); err != nil {
			return nil, fmt.Errorf("disqualification of team %s in %q: %w", teamID, slug, err)
		}
		d.TeamID = teamID
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b Disqualification) int { return a.At.Compare(b.At) })
	return out, nil
}

// barredTeams are the ids of a challenge's disqualified teams.
type barredTeams map[string]bool

// ranks reports whether sub may rank on the boards: it is not excluded and
// its team is not disqualified (what offerLua's barred checks in Redis).
func (b barredTeams) ranks(sub Submission) bool { return sub.Excluded == nil && !b[sub.TeamID] }

// disqualifiedTeams reads the ids of slug's disqualified teams.
func (s *Store) disqualifiedTeams(ctx context.Context, slug string) (barredTeams, error) {
	ids, err := s.rdb.HKeys(ctx, disqualifiedKey(slug)).Result()
	if err != nil {
		return nil, fmt.Errorf("read disqualifications of %q: %w", slug, err)
	}
	out := make(barredTeams, len(ids))
	for _, id := range ids {
		out[id] = true
	}
	return out, nil
}

// Disqualified is a team's disqualification in slug, if any.
func (s *Store) Disqualified(ctx context.Context, slug, teamID string) (*Disqualification, error) {
	raw, err := s.rdb.HGet(ctx, disqualifiedKey(slug), teamID).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read disqualification of team %s in %q: %w", teamID, slug, err)
	}
	var d Disqualification
	if err := json.Unmarshal([]byte(raw), &d); err != nil {
		return nil, fmt.Errorf("disqualification of team %s in %q: %w", teamID, slug, err)
	}
	d.TeamID = teamID
	return &d, nil
}

// excludeScript sets (ARGV[1] non-empty) or clears a submission's
// exclusion, counting up its challenge's moderation version and its
// team's private version, with its audit entry.
var excludeScript = redis.NewScript(auditLua + `
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local was = redis.call('HGET', KEYS[1], 'excluded') or ''
if ARGV[1] == '' and was == '' then return 0 end
redis.call('HSET', KEYS[1], 'excluded', ARGV[1])
redis.call('HINCRBY', KEYS[2], redis.call('HGET', KEYS[1], 'team_id'), 1)
redis.call('INCR', KEYS[3])
audit(KEYS[4], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8])
return 1
`)

// SetExclusion excludes a submission from ranking (ex non-nil) or
// includes it again, recording e in the audit log; it returns whether
// anything changed. The caller rebuilds the boards.
func (s *Store) SetExclusion(ctx context.Context, sub Submission, ex *Exclusion, e AuditEntry) (bool, error) {
	raw := ""
	if ex != nil {
		b, err := json.Marshal(ex)
		if err != nil {
			return false, err
		}
		raw = string(b)
	}
	res, err := excludeScript.Run(ctx, s.rdb, []string{submissionKey(sub.ID), privateVersionsKey(sub.Challenge), moderationKey(sub.Challenge), auditKey},
		append([]any{raw}, auditArgs(e)...)...).Int()
	if err != nil {
		return false, fmt.Errorf("%s submission %s: %w", e.Action, sub.ID, err)
	}
	if res == -1 {
		return false, ErrNotFound
	}
	return res == 1, nil
}

var lockAuditScript = redis.NewScript(auditLua + `
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local was = redis.call('HGET', KEYS[1], 'locked') or ''
if ARGV[1] == '' and was == '' then return 0 end
redis.call('HSET', KEYS[1], 'locked', ARGV[1])
audit(KEYS[2], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8])
return 1
`)

// SetLock locks (a non-nil lock) or unlocks a user's login, recording e
// in the audit log. A locked user's tokens are refused and their password
// logs in no more. It returns whether anything changed.
func (s *Store) SetLock(ctx context.Context, userID string, lock *Lock, e AuditEntry) (bool, error) {
	raw := ""
	if lock != nil {
		b, err := json.Marshal(lock)
		if err != nil {
			return false, err
		}
		raw = string(b)
	}
	res, err := lockAuditScript.Run(ctx, s.rdb, []string{userKey(userID), auditKey}, append([]any{raw}, auditArgs(e)...)...).Int()
	if err != nil {
		return false, fmt.Errorf("%s user %s: %w", e.Action, userID, err)
	}
	if res == -1 {
		return false, ErrNotFound
	}
	return res == 1, nil
}
