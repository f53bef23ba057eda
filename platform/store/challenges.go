package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hackarena/hackarena/challenges"
	"github.com/redis/go-redis/v9"
)

const (
	specsKey = prefix + "specs"
	// specRevisionsKey counts each challenge's organizer updates; a scored
	// result or a rescore names the revision it was computed under.
	specRevisionsKey = specsKey + ":rev"
	revealedKey      = prefix + "revealed"
)

// putSpecScript stores an organizer's spec under the next revision, so
// every server and judge can tell it is newer than what they hold.
var putSpecScript = redis.NewScript(`
local rev = redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
redis.call('HSET', KEYS[1], ARGV[1], string.format('{"revision":%d,"spec":%s}', rev, ARGV[2]))
return rev
`)

// PutChallengeSpec records an organizer's (valid) spec for slug and returns
// its revision.
func (s *Store) PutChallengeSpec(ctx context.Context, slug string, spec challenges.Spec) (int64, error) {
	raw, err := json.Marshal(spec)
	if err != nil {
		return 0, fmt.Errorf("encode spec of %q: %w", slug, err)
	}
	rev, err := putSpecScript.Run(ctx, s.rdb, []string{specsKey, specRevisionsKey}, slug, string(raw)).Int64()
	if err != nil {
		return 0, fmt.Errorf("store spec of %q: %w", slug, err)
	}
	return rev, nil
}

// SpecRevision is the latest revision of a challenge's spec the organizers
// wrote (0: none, the spec file stands).
func (s *Store) SpecRevision(ctx context.Context, slug string) (int64, error) {
	rev, err := s.rdb.HGet(ctx, specRevisionsKey, slug).Int64()
	if err != nil && !errors.Is(err, redis.Nil) {
		return 0, fmt.Errorf("read spec revision of %q: %w", slug, err)
	}
	return rev, nil
}

// ChallengeSpecs returns the organizer's specs by slug (challenges.SpecSource).
func (s *Store) ChallengeSpecs(ctx context.Context) (map[string]challenges.StoredSpec, error) {
	raw, err := s.rdb.HGetAll(ctx, specsKey).Result()
	if err != nil {
		return nil, fmt.Errorf("load challenge specs: %w", err)
	}
	out := make(map[string]challenges.StoredSpec, len(raw))
	for slug, v := range raw {
		var st challenges.StoredSpec
		if err := json.Unmarshal([]byte(v), &st); err != nil {
			return nil, fmt.Errorf("decode stored spec of %q: %w", slug, err)
		}
		out[slug] = st
	}
	return out, nil
}

// revealScript records the first reveal of a challenge and announces it.
var revealScript = redis.NewScript(emitLua + `
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then emit(KEYS[2], 'reveal', ARGV[1], ARGV[3]) end
return 0
`)

// Reveal makes a challenge's private board public from at on. An earlier
// reveal stands.
func (s *Store) Reveal(ctx context.Context, slug string, at time.Time) (time.Time, error) {
	event, err := json.Marshal(RevealEvent{Challenge: slug, At: at.UTC()})
	if err != nil {
		return time.Time{}, fmt.Errorf("encode reveal event: %w", err)
	}
	if err := revealScript.Run(ctx, s.rdb, []string{revealedKey, eventsKey}, slug, at.UTC().Format(time.RFC3339Nano), string(event)).Err(); err != nil {
		return time.Time{}, fmt.Errorf("reveal %q: %w", slug, err)
	}
	return s.RevealedAt(ctx, slug)
}

// RevealedAt is when the organizers revealed a challenge's private board,
// or the zero time.
func (s *Store) RevealedAt(ctx context.Context, slug string) (time.Time, error) {
	v, err := s.rdb.HGet(ctx, revealedKey, slug).Result()
	if errors.Is(err, redis.Nil) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("read reveal of %q: %w", slug, err)
	}
	return parseTime(v), nil
}

// QueueEntry is a submission waiting for or held by a judge.
type QueueEntry struct {
	SubmissionID string    `json:"submission_id"`
	Team         string    `json:"team"`
	Status       string    `json:"status"`
	QueuedAt     time.Time `json:"queued_at"`
	Attempts     int       `json:"attempts"`
	// Worker and Idle are set for delivered entries: who holds the job and
	// how long since it was delivered or claimed.
	Worker string        `json:"worker,omitempty"`
	Idle   time.Duration `json:"-"`
	IdleS  float64       `json:"idle_seconds,omitempty"`
}

// QueueView is one challenge's queue as the organizers see it.
type QueueView struct {
	Challenge string       `json:"challenge"`
	Waiting   []QueueEntry `json:"waiting"`
	Running   []QueueEntry `json:"running"`
}

// Queue lists a challenge's undelivered and unacknowledged jobs.
func (s *Store) Queue(ctx context.Context, slug string) (QueueView, error) {
	view := QueueView{Challenge: slug, Waiting: []QueueEntry{}, Running: []QueueEntry{}}
	start := "-"
	groups, err := s.rdb.XInfoGroups(ctx, queueKey(slug)).Result()
	if err != nil && !isNoSuchKey(err) {
		return view, fmt.Errorf("queue info %q: %w", slug, err)
	}
	for _, g := range groups {
		if g.Name == JudgeGroup {
			start = "(" + g.LastDeliveredID
		}
	}
	waiting, err := s.rdb.XRangeN(ctx, queueKey(slug), start, "+", 1000).Result()
	if err != nil {
		return view, fmt.Errorf("queue range %q: %w", slug, err)
	}
	for _, msg := range waiting {
		e, err := s.queueEntry(ctx, msg.Values)
		if err != nil {
			return view, err
		}
		view.Waiting = append(view.Waiting, e)
	}
	if start == "-" {
		return view, nil
	}
	pending, err := s.rdb.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: queueKey(slug), Group: JudgeGroup, Start: "-", End: "+", Count: 1000}).Result()
	if err != nil {
		return view, fmt.Errorf("queue pending %q: %w", slug, err)
	}
	for _, p := range pending {
		msgs, err := s.rdb.XRangeN(ctx, queueKey(slug), p.ID, p.ID, 1).Result()
		if err != nil || len(msgs) == 0 {
			continue
		}
		e, err := s.queueEntry(ctx, msgs[0].Values)
		if err != nil {
			return view, err
		}
		e.Worker, e.Idle, e.IdleS = p.Consumer, p.Idle, p.Idle.Seconds()
		view.Running = append(view.Running, e)
	}
	return view, nil
}

func (s *Store) queueEntry(ctx context.Context, values map[string]any) (QueueEntry, error) {
	id, _ := values["submission_id"].(string)
	sub, err := s.Submission(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return QueueEntry{SubmissionID: id, Status: "missing"}, nil
	}
	if err != nil {
		return QueueEntry{}, err
	}
	return QueueEntry{SubmissionID: id, Team: sub.TeamName, Status: sub.Status, QueuedAt: sub.QueuedAt, Attempts: sub.Attempts}, nil
}
