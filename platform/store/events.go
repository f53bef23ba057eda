package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// The platform's events (submission status changes, board changes,
// reveals) go to one Redis Stream, so a client that lost its connection can
// replay what it missed, and are announced on one pub/sub channel, so each
// server process needs a single subscription to follow them live.
const (
	eventsKey = prefix + "events"
	// EventsChannel is the pub/sub channel every event is announced on,
	// framed as "<id>\n<type>\n<challenge>\n<data>".
	EventsChannel = prefix + "events:live"
	// EventsKept is about how many events the stream keeps (trimmed
	// approximately); a client further behind reloads instead of
	// replaying.
	EventsKept = 10000
)

// Event types.
const (
	EventSubmission  = "submission"
	EventLeaderboard = "leaderboard"
	EventReveal      = "reveal"
)

// Event is one entry of the event stream. Data is JSON and never holds
// anything a spectator may not see (no private score before a reveal, no
// logs).
type Event struct {
	ID        string
	Type      string
	Challenge string
	Data      []byte
}

// SubmissionEvent is the public view of a submission's status change.
type SubmissionEvent struct {
	ID         string             `json:"id"`
	Challenge  string             `json:"challenge"`
	Team       string             `json:"team"`
	Status     string             `json:"status"`
	Reason     string             `json:"reason,omitempty"`
	Public     map[string]float64 `json:"public,omitempty"`
	QueuedAt   time.Time          `json:"queued_at"`
	FinishedAt *time.Time         `json:"finished_at,omitempty"`
}

// ProgressEvent is how far a running submission's judging has got.
type ProgressEvent struct {
	ID        string `json:"id"`
	Challenge string `json:"challenge"`
	Team      string `json:"team"`
	Done      int    `json:"done"`
	Total     int    `json:"total"`
}

// BoardEvent is a whole public board after it changed.
type BoardEvent struct {
	Challenge      string       `json:"challenge"`
	Board          string       `json:"board"`
	Metric         string       `json:"metric"`
	HigherIsBetter bool         `json:"higher_is_better"`
	Entries        []BoardEntry `json:"entries"`
}

// RevealEvent says the private board of a challenge is now public.
type RevealEvent struct {
	Challenge string    `json:"challenge"`
	At        time.Time `json:"at"`
}

// emitLua is prepended to every script that writes an event, so the event
// is written in the same atomic step as the change it reports: a crash
// never leaves a change without its event or the reverse.
//
// A submission event is also kept in its challenge's short feed list, so a
// new page gets the latest submissions without reading the stream.
var emitLua = fmt.Sprintf(`
local function emit(stream, typ, challenge, data)
  local id = redis.call('XADD', stream, 'MAXLEN', '~', %d, '*', 'type', typ, 'challenge', challenge, 'data', data)
  redis.call('PUBLISH', %q, id .. '\n' .. typ .. '\n' .. challenge .. '\n' .. data)
  if typ == 'submission' then
    local feed = %q .. challenge
    redis.call('LPUSH', feed, data)
    redis.call('LTRIM', feed, 0, %d)
  end
  return id
end
`, EventsKept, EventsChannel, feedPrefix, FeedKept-1)

// feedPrefix names a challenge's list of its latest submission events.
const feedPrefix = prefix + "feed:"

// FeedKept is how many submission events a challenge's feed keeps.
const FeedKept = 30

// RecentSubmissions returns the data of a challenge's latest submission
// events (at most FeedKept), oldest first.
func (s *Store) RecentSubmissions(ctx context.Context, slug string) ([][]byte, error) {
	items, err := s.rdb.LRange(ctx, feedPrefix+slug, 0, FeedKept-1).Result()
	if err != nil {
		return nil, fmt.Errorf("read the submission feed of %q: %w", slug, err)
	}
	out := make([][]byte, len(items))
	for i, item := range items {
		out[len(items)-1-i] = []byte(item)
	}
	return out, nil
}

func submissionEvent(sub Submission, status, reason string, public map[string]float64, finished time.Time) (string, error) {
	ev := SubmissionEvent{ID: sub.ID, Challenge: sub.Challenge, Team: sub.TeamName, Status: status, Reason: reason, Public: public, QueuedAt: sub.QueuedAt}
	if !finished.IsZero() {
		ev.FinishedAt = &finished
	}
	raw, err := json.Marshal(ev)
	if err != nil {
		return "", fmt.Errorf("encode submission event: %w", err)
	}
	return string(raw), nil
}

// publishBoardScript writes a board snapshot as an event unless a newer
// one (a later version) was written already. The same version again is
// written again: a judge that recovers a job repeats it, harmlessly.
var publishBoardScript = redis.NewScript(emitLua + `
local v = tonumber(ARGV[3])
if v < tonumber(redis.call('HGET', KEYS[2], 'published') or '-1') then return 0 end
redis.call('HSET', KEYS[2], 'published', v)
emit(KEYS[1], 'leaderboard', ARGV[1], ARGV[2])
return 1
`)

// PublishBoard writes the current public board of a challenge as an event.
// Snapshots carry the board's version: one older than what was already
// published is dropped, so two judges that change the board at once can
// never publish their snapshots in the wrong order.
func (s *Store) PublishBoard(ctx context.Context, slug, metric string, higherIsBetter bool) error {
	entries, version, err := s.readBoard(ctx, slug, BoardPublic)
	if err != nil {
		return err
	}
	raw, err := json.Marshal(BoardEvent{Challenge: slug, Board: BoardPublic, Metric: metric, HigherIsBetter: higherIsBetter, Entries: entries})
	if err != nil {
		return fmt.Errorf("encode board event: %w", err)
	}
	if err := publishBoardScript.Run(ctx, s.rdb, []string{eventsKey, boardVersionKey(slug)}, slug, string(raw), version).Err(); err != nil {
		return fmt.Errorf("publish board of %q: %w", slug, err)
	}
	return nil
}

// ParseEventMessage decodes an event announced on EventsChannel.
func ParseEventMessage(payload string) (Event, error) {
	parts := strings.SplitN(payload, "\n", 4)
	if len(parts) != 4 || parts[0] == "" || parts[1] == "" {
		return Event{}, fmt.Errorf("malformed event message %.60q", payload)
	}
	return Event{ID: parts[0], Type: parts[1], Challenge: parts[2], Data: []byte(parts[3])}, nil
}

func eventFromMessage(msg redis.XMessage) Event {
	str := func(k string) string { v, _ := msg.Values[k].(string); return v }
	return Event{ID: msg.ID, Type: str("type"), Challenge: str("challenge"), Data: []byte(str("data"))}
}

// EventsAfter returns up to limit events written after the event id, oldest
// first.
func (s *Store) EventsAfter(ctx context.Context, id string, limit int64) ([]Event, error) {
	msgs, err := s.rdb.XRangeN(ctx, eventsKey, "("+id, "+", limit).Result()
	if err != nil {
		return nil, fmt.Errorf("read events after %s: %w", id, err)
	}
	out := make([]Event, len(msgs))
	for i, m := range msgs {
		out[i] = eventFromMessage(m)
	}
	return out, nil
}

// EachEventAfter calls fn with every event written after id, oldest
// first, reading the stream a page at a time; it stops at fn's first
// error and returns it.
func (s *Store) EachEventAfter(ctx context.Context, id string, fn func(*Event) error) error {
	const page = 500
	for {
		evs, err := s.EventsAfter(ctx, id, page)
		if err != nil {
			return err
		}
		for i := range evs {
			if err := fn(&evs[i]); err != nil {
				return err
			}
			id = evs[i].ID
		}
		if len(evs) < page {
			return nil
		}
	}
}

// LastEventID is the id of the latest event, or "0-0" before the first.
func (s *Store) LastEventID(ctx context.Context) (string, error) {
	msgs, err := s.rdb.XRevRangeN(ctx, eventsKey, "+", "-", 1).Result()
	if err != nil {
		return "", fmt.Errorf("read last event id: %w", err)
	}
	if len(msgs) == 0 {
		return "0-0", nil
	}
	return msgs[0].ID, nil
}

// EventsLostAfter reports whether events written after id were trimmed from
// the stream, so that replaying from id would miss some.
func (s *Store) EventsLostAfter(ctx context.Context, id string) (bool, error) {
	info, err := s.rdb.XInfoStream(ctx, eventsKey).Result()
	if err != nil {
		if isNoSuchKey(err) || errors.Is(err, redis.Nil) {
			return false, nil
		}
		return false, fmt.Errorf("inspect event stream: %w", err)
	}
	// Trimming removes the oldest entries: if any were removed and the
	// oldest kept is after id, the client missed some (this stream is
	// never XDEL'd, so nothing is missing in the middle).
	trimmed := info.EntriesAdded > info.Length
	return trimmed && info.FirstEntry.ID != "" && CompareStreamIDs(info.FirstEntry.ID, id) > 0, nil
}

// ValidEventID reports whether s has the shape of a stream id ("ms-seq").
func ValidEventID(s string) bool {
	ms, seq, ok := strings.Cut(s, "-")
	return ok && digits(ms) && digits(seq)
}

func digits(s string) bool {
	if s == "" || len(s) > 20 {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}
