package store

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Throttle counts events (failed logins, registrations) per key in Redis,
// so every API process behind a balancer shares the count, and locks a
// key once it reaches its limit. A lock decays: it ends one window after
// the last event that reached the limit.
type Throttle struct {
	// Kind names what is counted, e.g. "login:team"; keys are per kind.
	Kind   string
	Limit  int
	Window time.Duration
}

func (s *Store) throttleKey(th Throttle, key string) string {
	return "throttle:" + th.Kind + ":" + strings.ToLower(key)
}

// Locked reports how long key stays locked (0: it is not).
func (s *Store) Locked(ctx context.Context, th Throttle, key string) (time.Duration, error) {
	k := s.throttleKey(th, key)
	res, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Get(ctx, k)
		p.PTTL(ctx, k)
		return nil
	})
	if err != nil && err != redis.Nil {
		return 0, fmt.Errorf("read throttle %s: %w", th.Kind, err)
	}
	n, _ := res[0].(*redis.StringCmd).Int()
	ttl := res[1].(*redis.DurationCmd).Val()
	if n < th.Limit || ttl <= 0 {
		return 0, nil
	}
	return ttl, nil
}

// throttleHitScript counts one event; the window starts at the first, and
// each event at or past the limit restarts it, so a lock lasts a window
// from the last attempt that counted.
var throttleHitScript = redis.NewScript(`
local n = redis.call('INCR', KEYS[1])
if n == 1 or n >= tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return {n, redis.call('PTTL', KEYS[1])}
`)

// Hit counts one event for key and reports how long key is now locked (0:
// it is not).
func (s *Store) Hit(ctx context.Context, th Throttle, key string) (time.Duration, error) {
	res, err := throttleHitScript.Run(ctx, s.rdb, []string{s.throttleKey(th, key)}, th.Limit, th.Window.Milliseconds()).Int64Slice()
	if err != nil {
		return 0, fmt.Errorf("count throttle %s: %w", th.Kind, err)
	}
	if res[0] < int64(th.Limit) {
		return 0, nil
	}
	return time.Duration(res[1]) * time.Millisecond, nil
}

// ResetThrottle forgets key's events (a successful login clears its team
// name's failures).
func (s *Store) ResetThrottle(ctx context.Context, th Throttle, key string) error {
	if err := s.rdb.Del(ctx, s.throttleKey(th, key)).Err(); err != nil {
		return fmt.Errorf("reset throttle %s: %w", th.Kind, err)
	}
	return nil
}
