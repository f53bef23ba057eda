// Package store keeps Hackarena's state in Redis: teams, submissions, the
// per-challenge judge queues (Redis Streams) and the leaderboards.
package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/redis/go-redis/v9"
)

// Errors callers branch on.
var (
	ErrNotFound  = errors.New("not found")
	ErrNameTaken = errors.New("name taken")
)

// Unavailable reports whether err says Redis could not be reached or cannot
// answer yet (refused, cut or timed-out connections, a server still
// loading its data): the same call may succeed a moment later.
func Unavailable(err error) bool {
	var netErr net.Error
	switch {
	case err == nil:
		return false
	case errors.As(err, &netErr), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, redis.ErrPoolTimeout):
		return true
	}
	var reply redis.Error
	if errors.As(err, &reply) {
		msg := reply.Error()
		return strings.HasPrefix(msg, "LOADING") || strings.HasPrefix(msg, "BUSY ") || strings.HasPrefix(msg, "MASTERDOWN") || strings.HasPrefix(msg, "TRYAGAIN")
	}
	return false
}

// Store is the Redis-backed state of the platform. It is safe for concurrent
// use.
type Store struct {
	rdb *redis.Client
	// readTurn rotates which queue ReadJobs tries first.
	readTurn atomic.Uint64
}

// New wraps a Redis client.
func New(rdb *redis.Client) *Store { return &Store{rdb: rdb} }

// Redis exposes the client for health checks.
func (s *Store) Redis() *redis.Client { return s.rdb }

// Connect parses a redis URL ("redis://host:port/db" or "unix:///path") and
// checks that the server answers.
func Connect(ctx context.Context, url string) (*redis.Client, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("parse REDIS_URL %q: %w", url, err)
	}
	rdb := redis.NewClient(opt)
	if err := rdb.Ping(ctx).Err(); err != nil {
		_ = rdb.Close()
		return nil, fmt.Errorf("connect to redis at %q: %w", url, err)
	}
	return rdb, nil
}

const prefix = "ha:"

func teamKey(id string) string       { return prefix + "team:" + id }
func teamNameKey(name string) string { return prefix + "teamname:" + strings.ToLower(name) }
func teamSubsKey(id string) string   { return prefix + "team:" + id + ":subs" }
func submissionKey(id string) string { return prefix + "sub:" + id }
func queueKey(slug string) string    { return prefix + "queue:" + slug }
func boardKey(slug, board string) string {
	return prefix + "lb:" + slug + ":" + board
}
func boardEntriesKey(slug, board string) string { return boardKey(slug, board) + ":entries" }
func countsKey(slug string) string              { return prefix + "lb:" + slug + ":counts" }
func boardMetaKey(slug string) string           { return prefix + "lb:" + slug + ":meta" }

// boardVersionKey counts the public board's changes ("version") and holds
// the newest version published as an event ("published").
func boardVersionKey(slug string) string { return prefix + "lb:" + slug + ":public:version" }
func scoredKey(slug string) string       { return prefix + "chal:" + slug + ":scored" }
func aliveKey(consumer string) string    { return prefix + "judge:alive:" + consumer }
