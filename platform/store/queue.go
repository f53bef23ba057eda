package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// JudgeGroup is the consumer group every judge worker joins.
const JudgeGroup = "judges"

// Job is one queue entry: a submission waiting to be judged.
type Job struct {
	Challenge    string
	StreamID     string
	SubmissionID string
}

// EnsureGroups creates the judge consumer group on each challenge queue.
func (s *Store) EnsureGroups(ctx context.Context, slugs []string) error {
	for _, slug := range slugs {
		err := s.rdb.XGroupCreateMkStream(ctx, queueKey(slug), JudgeGroup, "0").Err()
		if err != nil && !strings.Contains(err.Error(), "BUSYGROUP") {
			return fmt.Errorf("create judge group on queue %q: %w", slug, err)
		}
	}
	return nil
}

// ReadJobs hands this consumer jobs. With pending=true it re-reads at most
// one job per queue already delivered to this consumer name and not
// acknowledged (work a previous incarnation of this worker was doing when
// it died). Otherwise it takes one new job, trying the queues in turn from
// the one after the last it served, and blocks up to block when all are
// empty; a blocked read that wakes on several queues at once returns a job
// from each. Every job returned is this consumer's until acknowledged, so
// the caller must judge them all. No job: nil, nil.
func (s *Store) ReadJobs(ctx context.Context, slugs []string, consumer string, pending bool, block time.Duration) ([]*Job, error) {
	if len(slugs) == 0 {
		return nil, nil
	}
	if pending {
		return s.readGroup(ctx, slugs, consumer, "0", -1)
	}
	// One queue per read, so a busy challenge cannot starve the others and
	// no second job is taken while this one is judged.
	start := int(s.readTurn.Add(1)) % len(slugs)
	for i := range slugs {
		jobs, err := s.readGroup(ctx, []string{slugs[(start+i)%len(slugs)]}, consumer, ">", -1)
		if err != nil || len(jobs) > 0 {
			return jobs, err
		}
	}
	return s.readGroup(ctx, slugs, consumer, ">", block)
}

func (s *Store) readGroup(ctx context.Context, slugs []string, consumer, id string, block time.Duration) ([]*Job, error) {
	streams := make([]string, 0, 2*len(slugs))
	for _, slug := range slugs {
		streams = append(streams, queueKey(slug))
	}
	for range slugs {
		streams = append(streams, id)
	}
	// Block -1 leaves BLOCK out: a plain read that never waits.
	args := &redis.XReadGroupArgs{Group: JudgeGroup, Consumer: consumer, Streams: streams, Count: 1, Block: block}
	if block == 0 {
		args.Block = -1
	}
	res, err := s.rdb.XReadGroup(ctx, args).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read judge queue: %w", err)
	}
	var jobs []*Job
	for _, stream := range res {
		for _, msg := range stream.Messages {
			jobs = append(jobs, jobFromMessage(strings.TrimPrefix(stream.Stream, prefix+"queue:"), msg))
		}
	}
	return jobs, nil
}

func jobFromMessage(slug string, msg redis.XMessage) *Job {
	id, _ := msg.Values["submission_id"].(string)
	return &Job{Challenge: slug, StreamID: msg.ID, SubmissionID: id}
}

// ClaimStale takes over at most one job that another worker has held longer
// than minIdle without acknowledging it (that worker died).
func (s *Store) ClaimStale(ctx context.Context, slugs []string, consumer string, minIdle time.Duration) (*Job, error) {
	for _, slug := range slugs {
		msgs, _, err := s.rdb.XAutoClaim(ctx, &redis.XAutoClaimArgs{
			Stream: queueKey(slug), Group: JudgeGroup, Consumer: consumer, MinIdle: minIdle, Start: "0", Count: 1,
		}).Result()
		if err != nil {
			return nil, fmt.Errorf("reclaim stale jobs on queue %q: %w", slug, err)
		}
		for _, msg := range msgs {
			return jobFromMessage(slug, msg), nil
		}
	}
	return nil, nil
}

// Ack removes a finished job from the pending list.
func (s *Store) Ack(ctx context.Context, job *Job) error {
	if err := s.rdb.XAck(ctx, queueKey(job.Challenge), JudgeGroup, job.StreamID).Err(); err != nil {
		return fmt.Errorf("acknowledge job %s: %w", job.SubmissionID, err)
	}
	return nil
}

// QueuePosition is how many queued entries up to and including streamID are
// not yet handed to a worker: 1 means next. Zero when already delivered.
func (s *Store) QueuePosition(ctx context.Context, slug, streamID string) (int, error) {
	start := "-"
	groups, err := s.rdb.XInfoGroups(ctx, queueKey(slug)).Result()
	if err != nil && !isNoSuchKey(err) {
		return 0, fmt.Errorf("queue info %q: %w", slug, err)
	}
	for _, g := range groups {
		if g.Name == JudgeGroup {
			start = "(" + g.LastDeliveredID
		}
	}
	if start != "-" && CompareStreamIDs(start[1:], streamID) >= 0 {
		return 0, nil
	}
	msgs, err := s.rdb.XRangeN(ctx, queueKey(slug), start, streamID, 100000).Result()
	if err != nil {
		return 0, fmt.Errorf("queue range %q: %w", slug, err)
	}
	return len(msgs), nil
}

// CompareStreamIDs orders two Redis stream ids ("<ms>-<seq>"): -1, 0 or
// +1. It runs for every event and every live client, so it parses by hand.
func CompareStreamIDs(a, b string) int {
	ams, aseq := splitStreamID(a)
	bms, bseq := splitStreamID(b)
	if c := cmp.Compare(ams, bms); c != 0 {
		return c
	}
	return cmp.Compare(aseq, bseq)
}

func splitStreamID(id string) (ms, seq uint64) {
	m, q, _ := strings.Cut(id, "-")
	ms, _ = strconv.ParseUint(m, 10, 64)
	seq, _ = strconv.ParseUint(q, 10, 64)
	return ms, seq
}

// Heartbeat records that a judge worker is alive, for readiness checks.
func (s *Store) Heartbeat(ctx context.Context, consumer string, ttl time.Duration) error {
	return s.rdb.Set(ctx, aliveKey(consumer), time.Now().UTC().Format(time.RFC3339), ttl).Err()
}

// JudgesAlive counts workers whose heartbeat has not expired.
func (s *Store) JudgesAlive(ctx context.Context) (int, error) {
	keys, err := s.rdb.Keys(ctx, aliveKey("*")).Result()
	if err != nil {
		return 0, fmt.Errorf("count judges: %w", err)
	}
	return len(keys), nil
}

// isNoSuchKey: XINFO on a stream nobody has written to yet.
func isNoSuchKey(err error) bool { return strings.Contains(err.Error(), "no such key") }
