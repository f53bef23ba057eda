package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Boards a challenge has.
const (
	BoardPublic  = "public"
	BoardPrivate = "private"
)

// BoardEntry is a team's best submission on a board.
type BoardEntry struct {
	Rank         int
	TeamID       string
	TeamName     string
	Score        float64
	SubmissionID string
	SubmittedAt  time.Time
	Submissions  int64
}

type boardRecord struct {
	TeamName     string    `json:"team_name"`
	Score        float64   `json:"score"`
	SubmissionID string    `json:"submission_id"`
	SubmittedAt  time.Time `json:"submitted_at"`
	Member       string    `json:"member"`
}

// updateBoardScript keeps one member per team in the board's sorted set:
// the sort key is the score oriented so that lower is better, and the member
// starts with the zero-padded submission time, so Redis' own tie order
// (lexicographic members) puts the earlier submission first. A submission
// replaces the team's entry only if it ranks strictly before it, which also
// makes a repeated update of the same submission a no-op.
var updateBoardScript = redis.NewScript(`
local old = redis.call('HGET', KEYS[2], ARGV[1])
if old then
  local oldm = cjson.decode(old)['member']
  local olds = tonumber(redis.call('ZSCORE', KEYS[1], oldm))
  local news = tonumber(ARGV[2])
  if olds < news or (olds == news and oldm <= ARGV[3]) then return 0 end
  redis.call('ZREM', KEYS[1], oldm)
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[4])
return 1
`)

// UpdateBoard offers a scored submission to a board; it returns whether the
// team's entry changed.
func (s *Store) UpdateBoard(ctx context.Context, slug, board string, higherIsBetter bool, sub Submission, score float64) (bool, error) {
	sortKey := score
	if higherIsBetter {
		sortKey = -score
	}
	member := fmt.Sprintf("%020d:%s", sub.QueuedAt.UnixNano(), sub.TeamID)
	rec, err := json.Marshal(boardRecord{TeamName: sub.TeamName, Score: score, SubmissionID: sub.ID, SubmittedAt: sub.QueuedAt, Member: member})
	if err != nil {
		return false, fmt.Errorf("encode board entry: %w", err)
	}
	changed, err := updateBoardScript.Run(ctx, s.rdb, []string{boardKey(slug, board), boardEntriesKey(slug, board)},
		sub.TeamID, strconv.FormatFloat(sortKey, 'g', -1, 64), member, string(rec)).Int()
	if err != nil {
		return false, fmt.Errorf("update %s board of %q: %w", board, slug, err)
	}
	return changed == 1, nil
}

// Board returns a board's entries, best first.
func (s *Store) Board(ctx context.Context, slug, board string) ([]BoardEntry, error) {
	members, err := s.rdb.ZRange(ctx, boardKey(slug, board), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("read %s board of %q: %w", board, slug, err)
	}
	records, err := s.rdb.HGetAll(ctx, boardEntriesKey(slug, board)).Result()
	if err != nil {
		return nil, fmt.Errorf("read %s board entries of %q: %w", board, slug, err)
	}
	counts, err := s.rdb.HGetAll(ctx, countsKey(slug)).Result()
	if err != nil {
		return nil, fmt.Errorf("read submission counts of %q: %w", slug, err)
	}
	entries := make([]BoardEntry, 0, len(members))
	for _, member := range members {
		// Members are "<zero-padded submission time>:<team id>".
		_, teamID, _ := strings.Cut(member, ":")
		var rec boardRecord
		if err := json.Unmarshal([]byte(records[teamID]), &rec); err != nil {
			return nil, fmt.Errorf("decode board entry of team %s: %w", teamID, err)
		}
		n, _ := strconv.ParseInt(counts[teamID], 10, 64)
		entries = append(entries, BoardEntry{
			Rank: len(entries) + 1, TeamID: teamID, TeamName: rec.TeamName, Score: rec.Score,
			SubmissionID: rec.SubmissionID, SubmittedAt: rec.SubmittedAt, Submissions: n,
		})
	}
	return entries, nil
}
