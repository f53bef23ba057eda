package store

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// BinaryRef is what the storage retention reads of one submission: which
// binary it names, where it stands, and how much log it keeps.
type BinaryRef struct {
	ID, Challenge, TeamID, Status, SHA256 string
	Size                                  int64
	QueuedAt, ReleasedAt                  time.Time
	LogBytes                              int64
}

// binaryRefFields are the record fields a BinaryRef is read from.
var binaryRefFields = []string{"id", "challenge", "team_id", "status", "sha256", "size", "queued_at", "binary_released_at"}

// BinaryRefs lists every submission's binary reference. It walks the
// records with SCAN, so a large store is read in pages without blocking
// Redis.
func (s *Store) BinaryRefs(ctx context.Context) ([]BinaryRef, error) {
	var refs []BinaryRef
	var cursor uint64
	for {
		keys, next, err := s.rdb.Scan(ctx, cursor, submissionKey("*"), 500).Result()
		if err != nil {
			return nil, fmt.Errorf("list submissions: %w", err)
		}
		if len(keys) > 0 {
			pipe := s.rdb.Pipeline()
			fields := make([]*redis.SliceCmd, len(keys))
			logs := make([]*redis.IntCmd, len(keys))
			for i, k := range keys {
				fields[i] = pipe.HMGet(ctx, k, binaryRefFields...)
				logs[i] = pipe.HStrLen(ctx, k, "log")
			}
			if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
				return nil, fmt.Errorf("read submissions: %w", err)
			}
			for i := range keys {
				v := fields[i].Val()
				str := func(j int) string {
					if j < len(v) {
						if s, ok := v[j].(string); ok {
							return s
						}
					}
					return ""
				}
				if str(0) == "" {
					continue
				}
				ref := BinaryRef{ID: str(0), Challenge: str(1), TeamID: str(2), Status: str(3), SHA256: str(4),
					QueuedAt: parseTime(str(6)), ReleasedAt: parseTime(str(7)), LogBytes: logs[i].Val()}
				ref.Size, _ = strconv.ParseInt(str(5), 10, 64)
				refs = append(refs, ref)
			}
		}
		if cursor = next; cursor == 0 {
			return refs, nil
		}
	}
}

// releaseScript records that a final submission's binary was released;
// one not final (a rejudge may have queued it again meanwhile) or already
// marked is left alone. It returns 1 when it marked.
var releaseScript = redis.NewScript(`
local st = redis.call('HGET', KEYS[1], 'status')
if st ~= 'scored' and st ~= 'failed' then return 0 end
if redis.call('HEXISTS', KEYS[1], 'binary_released_at') == 1 then return 0 end
redis.call('HSET', KEYS[1], 'binary_released_at', ARGV[1])
return 1
`)

// MarkBinaryReleased records that the retention removed id's binary. It
// reports false when the submission is not final (it must keep it) or was
// marked already.
func (s *Store) MarkBinaryReleased(ctx context.Context, id string, at time.Time) (bool, error) {
	n, err := releaseScript.Run(ctx, s.rdb, []string{submissionKey(id)}, at.UTC().Format(time.RFC3339Nano)).Int()
	if err != nil {
		return false, fmt.Errorf("mark the binary of %s released: %w", id, err)
	}
	return n == 1, nil
}

// IsOutOfDisk reports whether err is Redis refusing a write because it
// cannot persist it ("MISCONF ... unable to persist to disk"): its disk is
// full, and the write will succeed once there is room again.
func IsOutOfDisk(err error) bool {
	return err != nil && strings.Contains(err.Error(), "MISCONF")
}
