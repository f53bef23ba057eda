package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

func quotaKey(slug, teamID string, day time.Time) string {
	return prefix + "quota:" + slug + ":" + teamID + ":" + day.Format("20060102")
}

// takeQuotaLua counts one submission against a day's quota (key), in the
// script that calls it, so two concurrent uploads cannot both take the
// last one; the counter outlives its day by one, for late refunds.
const takeQuotaLua = `
local function take_quota(key, per_day)
  local n = redis.call('INCR', key)
  if n == 1 then redis.call('EXPIRE', key, 172800) end
  if n > per_day then
    redis.call('DECR', key)
    return false
  end
  return true
end
`

var takeQuotaScript = redis.NewScript(takeQuotaLua + `
if take_quota(KEYS[1], tonumber(ARGV[1])) then return 1 end
return 0
`)

// TakeQuota uses one of the team's daily (UTC) submissions to a challenge.
// When none is left it returns how long until the quota resets.
func (s *Store) TakeQuota(ctx context.Context, slug, teamID string, perDay int, now time.Time) (time.Duration, error) {
	day := now.UTC().Truncate(24 * time.Hour)
	ok, err := takeQuotaScript.Run(ctx, s.rdb, []string{quotaKey(slug, teamID, day)}, perDay).Int()
	if err != nil {
		return 0, fmt.Errorf("take submission quota: %w", err)
	}
	if ok == 1 {
		return 0, nil
	}
	return day.Add(24 * time.Hour).Sub(now), nil
}

// ReturnQuota gives back a submission taken with TakeQuota, for an upload
// that was not queued after all.
func (s *Store) ReturnQuota(ctx context.Context, slug, teamID string, takenAt time.Time) error {
	key := quotaKey(slug, teamID, takenAt.UTC().Truncate(24*time.Hour))
	if err := s.rdb.Decr(ctx, key).Err(); err != nil {
		return fmt.Errorf("return submission quota: %w", err)
	}
	return nil
}

// QuotaUsed is how many of a team's daily submissions to a challenge the
// UTC day has counted (taken less refunded).
func (s *Store) QuotaUsed(ctx context.Context, slug, teamID string, day time.Time) (int, error) {
	n, err := s.rdb.Get(ctx, quotaKey(slug, teamID, day.UTC().Truncate(24*time.Hour))).Int()
	if err != nil && !errors.Is(err, redis.Nil) {
		return 0, fmt.Errorf("read submission quota: %w", err)
	}
	return n, nil
}

// QuotaMismatches checks subs, every submission of some teams to slug,
// against the quota counters: each team's day must count its submissions
// that took that day's quota less those refunded. It describes each day
// that does not (an audit after faults; nothing is changed).
func (s *Store) QuotaMismatches(ctx context.Context, slug string, subs []Submission) ([]string, error) {
	type teamDay struct {
		team string
		day  time.Time
	}
	taken, refunded := map[teamDay]int{}, map[teamDay]int{}
	for _, sub := range subs {
		if sub.QuotaDay.IsZero() {
			continue
		}
		k := teamDay{sub.TeamID, sub.QuotaDay}
		taken[k]++
		if sub.QuotaRefunded {
			refunded[k]++
		}
	}
	var out []string
	for k, n := range taken {
		used, err := s.QuotaUsed(ctx, slug, k.team, k.day)
		if err != nil {
			return out, err
		}
		if used != n-refunded[k] {
			out = append(out, fmt.Sprintf("team %s on %s: the quota counts %d for %d submissions and %d refunds", k.team, k.day.Format("2006-01-02"), used, n, refunded[k]))
		}
	}
	return out, nil
}
