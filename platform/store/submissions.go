package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/hackarena/hackarena/challenges"
)

// Submission states.
const (
	StatusQueued  = "queued"
	StatusRunning = "running"
	StatusScored  = "scored"
	StatusFailed  = "failed"
)

// Metrics are the scores of a submission on the public and private parts of
// the hidden split.
type Metrics struct {
	Public  map[string]float64 `json:"public"`
	Private map[string]float64 `json:"private,omitempty"`
	// Confusion matrices (classification): [true class][predicted class].
	PublicConfusion  [][]int `json:"public_confusion,omitempty"`
	PrivateConfusion [][]int `json:"private_confusion,omitempty"`
}

// Submission is one uploaded plugin and what became of it.
type Submission struct {
	ID        string
	Challenge string
	TeamID    string
	TeamName  string
	// Member is who in the team sent it (a user name; "" for submissions
	// of the version before members).
	Member string
	// Excluded is set while the organizers exclude it from ranking.
	Excluded *Exclusion
	Status   string
	Reason   string
	Message  string
	Metrics  *Metrics
	SHA256   string
	Size     int64
	Attempts int
	StreamID string
	Log      string
	QueuedAt time.Time
	// QuotaDay is the UTC day whose quota the submission took (zero when
	// it took none); a refund gives it back to that day.
	QuotaDay   time.Time
	StartedAt  time.Time
	FinishedAt time.Time
	// QuotaRefunded: the run failed for an internal reason and the team
	// got its daily submission back.
	QuotaRefunded bool
	// Revision is the challenge's spec revision its metrics were computed
	// under (0: the spec file, or not scored).
	Revision int64
	// ProgressDone of ProgressTotal examples are answered, while running.
	ProgressDone, ProgressTotal int
	// JudgeVersion and Sandbox say what judged it, and Stamp the challenge
	// its metrics were computed under (empty before it ended, or when an
	// earlier version judged it).
	JudgeVersion, Sandbox string
	Stamp                 Stamp
	// Resources are what its run used (nil before it ended).
	Resources *Resources
	// Interval is its primary metric's 95% bootstrap interval per half
	// (no samples), when it was bootstrapped.
	Interval *Bootstrap
	// BinaryReleasedAt is when the storage retention removed its plugin
	// binary (zero while it is kept): its scores and kept predictions
	// stay, but it cannot run again.
	BinaryReleasedAt time.Time
}

// Final reports whether the submission reached a final state.
func (s Submission) Final() bool { return s.Status == StatusScored || s.Status == StatusFailed }

// enqueueScript takes a daily submission (when the challenge has a quota:
// ARGV[10] > 0), writes the record, indexes it under the team, counts it
// and appends it to the challenge queue in one atomic step, so a crash can
// never leave a queued record without a queue entry or the reverse, nor a
// quota taken for nothing. The record keeps the quota's day, which a
// refund gives back to. Over the quota it returns "" and writes nothing.
var enqueueScript = redis.NewScript(emitLua + takeQuotaLua + `
if ARGV[12] == '1' then
  local prev = redis.call('GET', KEYS[7])
  if prev then return '=' .. prev end
end
if tonumber(ARGV[10]) > 0 and not take_quota(KEYS[6], tonumber(ARGV[10])) then return '' end
local sid = redis.call('XADD', KEYS[4], '*', 'submission_id', ARGV[1])
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'challenge', ARGV[2], 'team_id', ARGV[3], 'team_name', ARGV[4],
  'status', 'queued', 'sha256', ARGV[5], 'size', ARGV[6], 'queued_at', ARGV[7], 'attempts', 0, 'stream_id', sid)
if ARGV[13] ~= '' then redis.call('HSET', KEYS[1], 'member', ARGV[13]) end
if tonumber(ARGV[10]) > 0 then redis.call('HSET', KEYS[1], 'quota_day', ARGV[11]) end
redis.call('ZADD', KEYS[2], ARGV[8], ARGV[1])
redis.call('HINCRBY', KEYS[3], ARGV[3], 1)
emit(KEYS[5], 'submission', ARGV[2], ARGV[9])
if ARGV[12] == '1' then redis.call('SET', KEYS[7], ARGV[1], 'EX', 86400) end
return sid
`)

// idempotencyKey names a team's upload key for a challenge: the key is
// hashed, so any length a client sends makes a bounded name.
func idempotencyKey(slug, teamID, key string) string {
	sum := sha256.Sum256([]byte(key))
	return prefix + "idem:" + slug + ":" + teamID + ":" + hex.EncodeToString(sum[:16])
}

// ErrIdempotencyConflict is an upload whose Idempotency-Key the team
// already used for another binary.
var ErrIdempotencyConflict = errors.New("the idempotency key was used for another upload")

// QuotaExceededError is an upload past the team's daily submissions; Retry
// is how long until the quota resets (midnight UTC).
type QuotaExceededError struct{ Retry time.Duration }

func (e *QuotaExceededError) Error() string {
	return fmt.Sprintf("the daily submissions are used up; the quota resets in %s", e.Retry.Round(time.Minute))
}

// Enqueue records a new submission as queued and appends it to its
// challenge's judge queue, without a quota.
func (s *Store) Enqueue(ctx context.Context, challenge string, team Team, sha256 string, size int64) (Submission, error) {
	return s.EnqueueWithQuota(ctx, challenge, team, sha256, size, 0)
}

// EnqueueWithQuota is Enqueue that also takes one of the team's perDay
// daily (UTC) submissions, in the same step: *QuotaExceededError when none
// is left, and then nothing is written.
func (s *Store) EnqueueWithQuota(ctx context.Context, challenge string, team Team, sha256 string, size int64, perDay int) (Submission, error) {
	sub, _, err := s.EnqueueOnce(ctx, challenge, team, sha256, size, perDay, "")
	return sub, err
}

// EnqueueOnce is EnqueueWithQuota for an upload a client may send again
// (a dropped answer): the first upload with key (kept for a day) is the
// submission, and a later one with the same key and binary returns it,
// replayed, taking no quota and queueing nothing. The same key with
// another binary is ErrIdempotencyConflict. An empty key is no key.
func (s *Store) EnqueueOnce(ctx context.Context, challenge string, team Team, sha256 string, size int64, perDay int, key string) (sub Submission, replayed bool, err error) {
	id, err := uuid.NewV7()
	if err != nil {
		return Submission{}, false, fmt.Errorf("new submission id: %w", err)
	}
	now := time.Now().UTC()
	day := now.Truncate(24 * time.Hour)
	sub = Submission{ID: id.String(), Challenge: challenge, TeamID: team.ID, TeamName: team.Name, Member: team.ActingMember,
		Status: StatusQueued, SHA256: sha256, Size: size, QueuedAt: now}
	if perDay > 0 {
		sub.QuotaDay = day
	}
	event, err := submissionEvent(sub, StatusQueued, "", nil, time.Time{})
	if err != nil {
		return Submission{}, false, err
	}
	useKey := "0"
	if key != "" {
		useKey = "1"
	}
	sid, err := enqueueScript.Run(ctx, s.rdb,
		[]string{submissionKey(sub.ID), teamSubsKey(team.ID), countsKey(challenge), queueKey(challenge), eventsKey, quotaKey(challenge, team.ID, day),
			idempotencyKey(challenge, team.ID, key)},
		sub.ID, challenge, team.ID, team.Name, sha256, size, now.Format(time.RFC3339Nano), now.UnixNano(), event,
		perDay, day.Format("20060102"), useKey, team.ActingMember).Text()
	if err != nil {
		return Submission{}, false, fmt.Errorf("enqueue submission for %q: %w", challenge, err)
	}
	if prevID, ok := strings.CutPrefix(sid, "="); ok {
		prev, err := s.Submission(ctx, prevID)
		if err != nil {
			return Submission{}, false, fmt.Errorf("the submission an idempotency key names: %w", err)
		}
		if prev.SHA256 != sha256 {
			return Submission{}, false, ErrIdempotencyConflict
		}
		return prev, true, nil
	}
	if sid == "" {
		return Submission{}, false, &QuotaExceededError{Retry: day.Add(24 * time.Hour).Sub(now)}
	}
	sub.StreamID = sid
	return sub, false, nil
}

// Submission loads one submission.
func (s *Store) Submission(ctx context.Context, id string) (Submission, error) {
	m, err := s.rdb.HGetAll(ctx, submissionKey(id)).Result()
	if err != nil {
		return Submission{}, fmt.Errorf("load submission %s: %w", id, err)
	}
	if len(m) == 0 {
		return Submission{}, ErrNotFound
	}
	return submissionFromHash(m)
}

func submissionFromHash(m map[string]string) (Submission, error) {
	sub := Submission{
		ID: m["id"], Challenge: m["challenge"], TeamID: m["team_id"], TeamName: m["team_name"],
		Status: m["status"], Reason: m["reason"], Message: m["message"], SHA256: m["sha256"],
		StreamID: m["stream_id"], Log: m["log"], QuotaRefunded: m["quota_refunded"] == "1",
		JudgeVersion: m["judge_version"], Sandbox: m["sandbox"], Member: m["member"],
	}
	if raw := m["excluded"]; raw != "" {
		var ex Exclusion
		if json.Unmarshal([]byte(raw), &ex) == nil {
			sub.Excluded = &ex
		}
	}
	sub.Stamp.SpecSHA256 = m["spec_sha256"]
	if raw := m["resources"]; raw != "" {
		var r Resources
		if json.Unmarshal([]byte(raw), &r) == nil {
			sub.Resources = &r
		}
	}
	if raw := m["interval"]; raw != "" {
		var b Bootstrap
		if json.Unmarshal([]byte(raw), &b) == nil {
			sub.Interval = &b
		}
	}
	if raw := m["datasets"]; raw != "" {
		_ = json.Unmarshal([]byte(raw), &sub.Stamp.Datasets)
	}
	sub.Size, _ = strconv.ParseInt(m["size"], 10, 64)
	sub.Attempts, _ = strconv.Atoi(m["attempts"])
	sub.QueuedAt = parseTime(m["queued_at"])
	if d, err := time.Parse("20060102", m["quota_day"]); err == nil {
		sub.QuotaDay = d
	}
	sub.StartedAt = parseTime(m["started_at"])
	sub.FinishedAt = parseTime(m["finished_at"])
	sub.BinaryReleasedAt = parseTime(m["binary_released_at"])
	sub.Revision, _ = strconv.ParseInt(m["revision"], 10, 64)
	sub.ProgressDone, _ = strconv.Atoi(m["progress_done"])
	sub.ProgressTotal, _ = strconv.Atoi(m["progress_total"])
	if raw := m["metrics"]; raw != "" {
		var metrics Metrics
		if err := json.Unmarshal([]byte(raw), &metrics); err != nil {
			return Submission{}, fmt.Errorf("decode metrics of submission %s: %w", sub.ID, err)
		}
		sub.Metrics = &metrics
	}
	return sub, nil
}

func parseTime(s string) time.Time {
	t, _ := time.Parse(time.RFC3339Nano, s)
	return t
}

// TeamSubmissions lists a team's submissions, newest first.
func (s *Store) TeamSubmissions(ctx context.Context, teamID string, limit int64) ([]Submission, error) {
	ids, err := s.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{Key: teamSubsKey(teamID), Start: 0, Stop: limit - 1, Rev: true}).Result()
	if err != nil {
		return nil, fmt.Errorf("list submissions of team %s: %w", teamID, err)
	}
	return s.submissions(ctx, ids)
}

// startScript moves a non-final submission to running and counts the
// attempt, returning it (the run's fencing token); a final one is left
// alone (it was already judged).
var startScript = redis.NewScript(emitLua + `
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return -1 end
if st == 'scored' or st == 'failed' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'running', 'started_at', ARGV[1], 'worker', ARGV[2])
redis.call('HDEL', KEYS[1], 'progress_done', 'progress_total')
local attempt = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
emit(KEYS[2], 'submission', ARGV[4], ARGV[3])
return attempt
`)

// Start marks a submission as running under a new attempt, which the
// returned submission's Attempts holds: every later write of this run
// names it. It returns started=false when the submission is already
// final, and ErrNotFound when it does not exist.
func (s *Store) Start(ctx context.Context, id, worker string) (sub Submission, started bool, err error) {
	before, err := s.Submission(ctx, id)
	if err != nil {
		return Submission{}, false, err
	}
	event, err := submissionEvent(before, StatusRunning, "", nil, time.Time{})
	if err != nil {
		return Submission{}, false, err
	}
	now := time.Now().UTC()
	r, err := startScript.Run(ctx, s.rdb, []string{submissionKey(id), eventsKey},
		now.Format(time.RFC3339Nano), worker, event, before.Challenge).Int()
	if err != nil {
		return Submission{}, false, fmt.Errorf("start submission %s: %w", id, err)
	}
	switch r {
	case -1:
		return Submission{}, false, ErrNotFound
	case 0:
		return before, false, nil // final already, so as read
	}
	// What the script changed, without reading the record again; the
	// attempt is the script's count, this run's fencing token.
	before.Status, before.StartedAt = StatusRunning, now
	before.Attempts = r
	return before, true, nil
}

// progressScript records how far the current attempt's run has got and
// announces it; a stale attempt's progress is refused.
var progressScript = redis.NewScript(emitLua + `
if redis.call('HGET', KEYS[1], 'status') ~= 'running' or tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0') ~= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'progress_done', ARGV[2], 'progress_total', ARGV[3])
emit(KEYS[2], 'progress', ARGV[4], ARGV[5])
return 1
`)

// SetProgress records that the run sub is (its attempt) has answered done
// of total examples, as a progress event too; ErrFenced when the run is
// not the current attempt.
func (s *Store) SetProgress(ctx context.Context, sub Submission, done, total int) error {
	event, err := json.Marshal(ProgressEvent{ID: sub.ID, Challenge: sub.Challenge, Team: sub.TeamName, Done: done, Total: total})
	if err != nil {
		return fmt.Errorf("encode progress event: %w", err)
	}
	n, err := progressScript.Run(ctx, s.rdb, []string{submissionKey(sub.ID), eventsKey}, sub.Attempts, done, total, sub.Challenge, string(event)).Int()
	if err != nil {
		return fmt.Errorf("record progress of submission %s: %w", sub.ID, err)
	}
	if n == 0 {
		return ErrFenced
	}
	return nil
}

// Result is the outcome of judging a submission.
type Result struct {
	Status  string
	Reason  string
	Message string
	Metrics *Metrics
	Log     string
	// RefundQuota gives the team its daily submission back: the run
	// failed through no fault of theirs.
	RefundQuota bool
	// Ranking, for a scored result, is what it is ranked by: the boards
	// are offered its scores in the step that writes it. Nil leaves the
	// boards alone (and the revision unchecked).
	Ranking *Ranking
	// JudgeVersion and Sandbox say what judged it, and Stamp the
	// challenge it was computed under, for its receipt.
	JudgeVersion, Sandbox string
	Stamp                 Stamp
	// Resources are what the run used (nil: not measured).
	Resources *Resources
	// Bootstrap is the primary metric on the challenge's resamples.
	Bootstrap *Bootstrap
}

// Resources are what a judged run used: its judging time (Describe to the
// scores), the examples its plugin answered and how many a second, the
// plugin's peak memory (0: the sandbox could not tell), its Engine time,
// and the binary's size.
type Resources struct {
	JudgingSeconds    float64 `json:"judging_seconds"`
	Examples          int     `json:"examples"`
	ExamplesPerSecond float64 `json:"examples_per_second"`
	PeakMemoryBytes   int64   `json:"peak_memory_bytes,omitempty"`
	EngineSeconds     float64 `json:"engine_seconds"`
	BinaryBytes       int64   `json:"binary_bytes"`
}

// Stamp pins the challenge a result was computed under: its spec's hash and
// data files.
type Stamp struct {
	SpecSHA256 string
	Datasets   []challenges.FileSpec
}

// StampOf is ch's stamp.
func StampOf(ch *challenges.Challenge) Stamp {
	return Stamp{SpecSHA256: ch.Spec.SHA256(), Datasets: ch.Spec.Dataset.Files}
}

func (st Stamp) encode() (sha, datasets string, err error) {
	if st.SpecSHA256 == "" {
		return "", "", nil
	}
	raw, err := json.Marshal(st.Datasets)
	if err != nil {
		return "", "", fmt.Errorf("encode the data files of a result: %w", err)
	}
	return st.SpecSHA256, string(raw), nil
}

// Ranking is the rules a scored result was computed and is ranked under.
type Ranking struct {
	Rules
	// Revision is the challenge's spec revision the metrics were computed
	// under; a result for an older one is refused with ErrRevisionChanged.
	Revision int64
}

// Fencing: a judge's run is one attempt, the number Start counted for it.
// Every write the run makes (its result and board entries, a refund, a
// requeue, a lease renewal) checks in the same script that the submission
// is still running under that attempt: a judge that was frozen past its
// lease, and whose job another judge took over, finds its writes refused.

// ErrFenced is a write by a run that is no longer the submission's current
// attempt (another judge took the job over, or it is final).
var ErrFenced = errors.New("the run is no longer the submission's current attempt")

// ErrRevisionChanged is a scored result computed under an older revision
// of the challenge than the current one: rescore it and write it again.
var ErrRevisionChanged = errors.New("the challenge changed since the run started")

// finishScript writes a final state once, for the current attempt only: a
// second finish, or one by a stale attempt, changes nothing, so the scored
// index, the board entries, the event and a quota refund happen once. The
// refund note joins the message only when a refund was made. A scored
// result names the spec revision it was computed under and is refused
// (-3) under another; the public board is offered its score unless the
// boards rank by other rules (then it returns 2 and the caller repairs
// them), and its team's private version is counted up (its finals may be
// others now: the caller computes its private entry).
var finishScript = redis.NewScript(emitLua + offerLua + `
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return {-1, 0} end
if st == 'scored' or st == 'failed' then return {0, 0} end
if st ~= 'running' or tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0') ~= tonumber(ARGV[12]) then return {-2, 0} end
if ARGV[14] ~= '' and tonumber(redis.call('HGET', KEYS[5], ARGV[11]) or '0') ~= tonumber(ARGV[14]) then return {-3, 0} end
local msg = ARGV[3]
if ARGV[8] == '1' then
  local n = tonumber(redis.call('GET', KEYS[3]) or '0')
  if n > 0 then
    redis.call('DECR', KEYS[3])
    redis.call('HSET', KEYS[1], 'quota_refunded', '1')
    msg = msg .. ARGV[13]
  end
end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'reason', ARGV[2], 'message', msg, 'metrics', ARGV[4], 'log', ARGV[5], 'finished_at', ARGV[6],
  'judge_version', ARGV[21], 'sandbox', ARGV[22], 'spec_sha256', ARGV[23], 'datasets', ARGV[24], 'resources', ARGV[25])
if ARGV[26] ~= '' then
  redis.call('HSET', KEYS[1], 'interval', ARGV[26])
  redis.call('SET', KEYS[11], ARGV[27])
  redis.call('SET', KEYS[12], ARGV[28])
end
if ARGV[14] ~= '' then redis.call('HSET', KEYS[1], 'revision', ARGV[14]) end
if ARGV[1] == 'scored' then
  redis.call('ZADD', KEYS[2], ARGV[7], ARGV[9])
  redis.call('HINCRBY', KEYS[9], redis.call('HGET', KEYS[1], 'team_id'), 1)
end
emit(KEYS[4], 'submission', ARGV[11], ARGV[10])
local code, public = 1, 0
if ARGV[15] ~= '' then
  if rules_differ(KEYS[6], ARGV[15], ARGV[16], ARGV[20]) then
    code = 2
  elseif ARGV[18] ~= '' and not barred(KEYS[1], KEYS[13], redis.call('HGET', KEYS[1], 'team_id')) then
    public = offer(KEYS[7], KEYS[8], KEYS[6], KEYS[10], redis.call('HGET', KEYS[1], 'team_id'), ARGV[18], ARGV[17], ARGV[19], ARGV[15], ARGV[16], ARGV[20], true)
  end
end
return {code, public}
`)

// quotaDay is the day a refund goes to: the one the quota was taken from,
// or for records written before that was kept, the day it was queued.
func (s Submission) quotaDay() time.Time {
	if !s.QuotaDay.IsZero() {
		return s.QuotaDay
	}
	return s.QueuedAt.UTC().Truncate(24 * time.Hour)
}

// RefundNote ends the message of a failure whose quota was given back.
const RefundNote = " (this did not count against your daily submissions)"

// Finish records the final result of the run that sub is (sub.Attempts is
// its attempt, as Start returned it). It returns false when the
// submission was already final, and ErrFenced when the run is not its
// current attempt; nothing is written then.
func (s *Store) Finish(ctx context.Context, sub Submission, res Result) (bool, error) {
	f, err := s.FinishRun(ctx, sub, res)
	return f.Wrote, err
}

// Finished is what FinishRun wrote.
type Finished struct {
	// Wrote: the result is the submission's record now.
	Wrote bool
	// BoardsRefused: the result was written, but the boards rank by other
	// rules than its Ranking, so it is on neither; repair them
	// (ReconcileBoards), offer it again (UpdateBoard) and compute its
	// team's private entry (RefreshPrivateEntry).
	BoardsRefused bool
	// PublicChanged: the team's public board entry is this result now.
	PublicChanged bool
}

// FinishRun is Finish that also reports what happened to the boards; a
// public board it changed is published as an event.
func (s *Store) FinishRun(ctx context.Context, sub Submission, res Result) (Finished, error) {
	metrics := ""
	if res.Metrics != nil {
		raw, err := json.Marshal(res.Metrics)
		if err != nil {
			return Finished{}, fmt.Errorf("encode metrics: %w", err)
		}
		metrics = string(raw)
	}
	now := time.Now().UTC()
	refund := "0"
	if res.RefundQuota {
		refund = "1"
	}
	var public map[string]float64
	if res.Status == StatusScored && res.Metrics != nil {
		public = res.Metrics.Public
	}
	event, err := submissionEvent(sub, res.Status, res.Reason, public, now)
	if err != nil {
		return Finished{}, err
	}
	// A scored result with rules is offered to the public board, in the
	// script that writes it.
	var revision, metric, higher, finals string
	var offer boardOffer
	if r := res.Ranking; r != nil && res.Status == StatusScored && res.Metrics != nil {
		revision = strconv.FormatInt(r.Revision, 10)
		metric, higher, finals = r.args()
		if v, ok := res.Metrics.Public[r.Metric]; ok {
			// Ranked as the record will be, with this result's resources.
			ranked := sub
			ranked.Resources = res.Resources
			if offer, err = newBoardOffer(ranked, v, r.Rules); err != nil {
				return Finished{}, err
			}
		}
	}
	specSHA, datasets, err := res.Stamp.encode()
	if err != nil {
		return Finished{}, err
	}
	interval, publicSamples, privateSamples, err := res.Bootstrap.encode()
	if err != nil {
		return Finished{}, err
	}
	resources := ""
	if res.Resources != nil {
		raw, err := json.Marshal(res.Resources)
		if err != nil {
			return Finished{}, fmt.Errorf("encode resources: %w", err)
		}
		resources = string(raw)
	}
	slug := sub.Challenge
	out, err := finishScript.Run(ctx, s.rdb,
		[]string{submissionKey(sub.ID), scoredKey(slug), quotaKey(slug, sub.TeamID, sub.quotaDay()), eventsKey, specRevisionsKey,
			boardMetaKey(slug), boardKey(slug, BoardPublic), boardEntriesKey(slug, BoardPublic), privateVersionsKey(slug), boardVersionKey(slug),
			bootKey(sub.ID, BoardPublic), bootKey(sub.ID, BoardPrivate), disqualifiedKey(slug)},
		res.Status, res.Reason, res.Message, metrics, res.Log, now.Format(time.RFC3339Nano), now.UnixNano(), refund, sub.ID, event, slug,
		sub.Attempts, RefundNote, revision, metric, higher, offer.member, offer.sortKey, offer.record, finals, res.JudgeVersion, res.Sandbox, specSHA, datasets, resources, interval, publicSamples, privateSamples).Int64Slice()
	if err != nil {
		return Finished{}, fmt.Errorf("finish submission %s: %w", sub.ID, err)
	}
	switch out[0] {
	case -1:
		return Finished{}, ErrNotFound
	case -2:
		return Finished{}, ErrFenced
	case -3:
		return Finished{}, ErrRevisionChanged
	case 0:
		return Finished{}, nil
	}
	f := Finished{Wrote: true, BoardsRefused: out[0] == 2, PublicChanged: out[1] == 1}
	if f.PublicChanged {
		if err := s.PublishBoard(ctx, slug, metric, res.Ranking.HigherIsBetter); err != nil {
			return f, err
		}
	}
	if res.Ranking != nil && res.Status == StatusScored && !f.BoardsRefused {
		if _, err := s.RefreshPrivateEntry(ctx, slug, sub.TeamID, res.Ranking.Rules); err != nil {
			return f, err
		}
	}
	return f, nil
}

// setMetricsScript replaces a scored submission's metrics, when they were
// computed under the challenge's current revision.
var setMetricsScript = redis.NewScript(`
if tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0') ~= tonumber(ARGV[2]) then return -3 end
if redis.call('HGET', KEYS[1], 'status') ~= 'scored' then return 0 end
redis.call('HSET', KEYS[1], 'metrics', ARGV[3], 'revision', ARGV[2])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'spec_sha256', ARGV[4], 'datasets', ARGV[5]) end
if ARGV[6] ~= '' then
  redis.call('HSET', KEYS[1], 'interval', ARGV[6])
  redis.call('SET', KEYS[3], ARGV[7])
  redis.call('SET', KEYS[4], ARGV[8])
else
  redis.call('HDEL', KEYS[1], 'interval')
end
return 1
`)

// SetMetrics replaces a scored submission's metrics (a rescore) with ones
// computed under the challenge's spec revision (stamped by st);
// ErrRevisionChanged when that is no longer the current one.
func (s *Store) SetMetrics(ctx context.Context, id string, revision int64, m Metrics, st Stamp, boot *Bootstrap) error {
	raw, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode metrics: %w", err)
	}
	specSHA, datasets, err := st.encode()
	if err != nil {
		return err
	}
	interval, publicSamples, privateSamples, err := boot.encode()
	if err != nil {
		return err
	}
	slug, err := s.rdb.HGet(ctx, submissionKey(id), "challenge").Result()
	if errors.Is(err, redis.Nil) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("store metrics of submission %s: %w", id, err)
	}
	r, err := setMetricsScript.Run(ctx, s.rdb, []string{submissionKey(id), specRevisionsKey, bootKey(id, BoardPublic), bootKey(id, BoardPrivate)},
		slug, revision, string(raw), specSHA, datasets, interval, publicSamples, privateSamples).Int()
	if err != nil {
		return fmt.Errorf("store metrics of submission %s: %w", id, err)
	}
	if r == -3 {
		return ErrRevisionChanged
	}
	return nil
}

// ScoredSubmissions lists a challenge's scored submissions in the order they
// were scored.
func (s *Store) ScoredSubmissions(ctx context.Context, slug string) ([]Submission, error) {
	ids, err := s.rdb.ZRange(ctx, scoredKey(slug), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("list scored submissions of %q: %w", slug, err)
	}
	return s.submissions(ctx, ids)
}

func (s *Store) submissions(ctx context.Context, ids []string) ([]Submission, error) {
	return s.loadSubmissions(ctx, ids, nil)
}

// loadSubmissions loads the records of ids (those that exist), whole or
// only the given fields.
func (s *Store) loadSubmissions(ctx context.Context, ids []string, fields []string) ([]Submission, error) {
	pipe := s.rdb.Pipeline()
	whole := make([]*redis.MapStringStringCmd, len(ids))
	some := make([]*redis.SliceCmd, len(ids))
	for i, id := range ids {
		if fields == nil {
			whole[i] = pipe.HGetAll(ctx, submissionKey(id))
		} else {
			some[i] = pipe.HMGet(ctx, submissionKey(id), fields...)
		}
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("load submissions: %w", err)
	}
	out := make([]Submission, 0, len(ids))
	for i := range ids {
		m := map[string]string{}
		if fields == nil {
			m = whole[i].Val()
		} else {
			for j, v := range some[i].Val() {
				if str, ok := v.(string); ok {
					m[fields[j]] = str
				}
			}
		}
		if m["id"] == "" {
			continue
		}
		sub, err := submissionFromHash(m)
		if err != nil {
			return nil, err
		}
		out = append(out, sub)
	}
	return out, nil
}

// requeueScript gives a job back to the queue, for the current attempt
// of a running submission only: the old entry is acknowledged and a new
// one appended in the same step, so the job is never lost nor queued
// twice, and a finished submission is never sent back.
var requeueScript = redis.NewScript(emitLua + `
local st = redis.call('HGET', KEYS[1], 'status')
if ARGV[7] == '0' then
  if st ~= 'queued' or redis.call('HGET', KEYS[1], 'stream_id') ~= ARGV[2] then return 0 end
elseif st ~= 'running' or tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0') ~= tonumber(ARGV[7]) then return 0 end
redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
local sid = redis.call('XADD', KEYS[2], '*', 'submission_id', ARGV[3])
redis.call('HSET', KEYS[1], 'status', 'queued', 'message', ARGV[4], 'stream_id', sid)
emit(KEYS[3], 'submission', ARGV[6], ARGV[5])
return 1
`)

// Requeue puts a running job back in its queue (after an internal error or
// when the worker is stopping), with a message saying why; attempt is the
// run's, or 0 for a job this worker was handed but did not start (its
// entry must still be the submission's). ErrFenced when the run is no
// longer the submission's current attempt: nothing is changed then.
func (s *Store) Requeue(ctx context.Context, job *Job, attempt int, msg string) error {
	sub, err := s.Submission(ctx, job.SubmissionID)
	if err != nil {
		return fmt.Errorf("requeue submission %s: %w", job.SubmissionID, err)
	}
	event, err := submissionEvent(sub, StatusQueued, "", nil, time.Time{})
	if err != nil {
		return err
	}
	n, err := requeueScript.Run(ctx, s.rdb, []string{submissionKey(job.SubmissionID), queueKey(job.Challenge), eventsKey},
		JudgeGroup, job.StreamID, job.SubmissionID, msg, event, job.Challenge, attempt).Int()
	if err != nil {
		return fmt.Errorf("requeue submission %s: %w", job.SubmissionID, err)
	}
	if n == 0 {
		return ErrFenced
	}
	return nil
}

// renewScript resets the idle time of a job's queue entry, for the current
// attempt of a running submission only: a frozen judge that wakes after
// another took its job over must not claim the entry back.
var renewScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'status') ~= 'running' or tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0') ~= tonumber(ARGV[4]) then return 0 end
redis.call('XCLAIM', KEYS[2], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
return 1
`)

// RenewLease tells the other judges that consumer is still working on job
// (attempt is its run's), so they do not take it over. ErrFenced when the
// run is no longer current.
func (s *Store) RenewLease(ctx context.Context, job *Job, consumer string, attempt int) error {
	n, err := renewScript.Run(ctx, s.rdb, []string{submissionKey(job.SubmissionID), queueKey(job.Challenge)},
		JudgeGroup, consumer, job.StreamID, attempt).Int()
	if err != nil {
		return fmt.Errorf("renew the lease of submission %s: %w", job.SubmissionID, err)
	}
	if n == 0 {
		return ErrFenced
	}
	return nil
}
