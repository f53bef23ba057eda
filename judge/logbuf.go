package judge

import (
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/hackarena/hackarena/challenges"
)

// cappedLog keeps the first max bytes written to it and counts the rest, so
// a plugin flooding its output cannot grow the judge's memory.
type cappedLog struct {
	mu        sync.Mutex
	max       int
	buf       []byte
	dropped   int64
	lastWrite time.Time
}

func newCappedLog(max int) *cappedLog { return &cappedLog{max: max} }

func (l *cappedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lastWrite = time.Now()
	room := l.max - len(l.buf)
	if room > len(p) {
		room = len(p)
	}
	if room > 0 {
		l.buf = append(l.buf, p[:room]...)
	}
	l.dropped += int64(len(p) - room)
	return len(p), nil
}

// settle waits until nothing has been written for quiet (at least min,
// at most max): go-plugin forwards a plugin's output asynchronously, so
// what it printed during a call may arrive just after the call returns.
func (l *cappedLog) settle(min, quiet, max time.Duration) {
	start := time.Now()
	time.Sleep(min)
	for time.Since(start) < max {
		l.mu.Lock()
		idle := time.Since(l.lastWrite)
		l.mu.Unlock()
		if idle >= quiet {
			return
		}
		time.Sleep(quiet - idle)
	}
}

// String is the kept log, with a note when some of it was dropped.
func (l *cappedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.dropped > 0 {
		return string(l.buf) + fmt.Sprintf("\n[log truncated: %d more bytes were dropped]\n", l.dropped)
	}
	return string(l.buf)
}

// Tail is at most n trailing bytes of the kept log, for error messages.
func (l *cappedLog) Tail(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) <= n {
		return string(l.buf)
	}
	return string(l.buf[len(l.buf)-n:])
}

// firstBatchMarker is the line the judge writes into a run's log just
// before it sends the first hidden batch: what comes after it may quote
// hidden inputs. A plugin that prints it earlier only hides more of its
// own log from its team.
const firstBatchMarker = "[hackarena judge] the first hidden batch was sent here; what follows is shown to organizers only unless the challenge's log policy is \"full\"\n"

// TeamLog is the part of a run's log its team may read under the
// challenge's log policy: all of it with "full", otherwise what the
// plugin printed before it was sent hidden inputs (start-up, Describe),
// and a note saying where the rest is.
func TeamLog(policy, log string) string {
	if policy == challenges.LogsFull {
		return log
	}
	before, _, found := strings.Cut(log, firstBatchMarker)
	if !found {
		return log
	}
	return before + "[hackarena judge] the plugin's output after the first hidden batch is shown to the organizers only: this challenge keeps its hidden inputs private (limits.logs).\n"
}

// excerpt bounds plugin-controlled text quoted in a failure message.
func excerpt(s string, n int) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i] + " …"
	}
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// quotesHidden reports whether s repeats a run of at least 2×window-1
// bytes of any hidden text: every such run holds one of the windows taken
// every window/2 bytes of s, so a few searches cover it.
func quotesHidden(s string, texts []string) bool {
	const window = 24
	if len(s) < window {
		return false
	}
	for off := 0; off+window <= len(s); off += window / 2 {
		w := s[off : off+window]
		for _, t := range texts {
			if strings.Contains(t, w) {
				return true
			}
		}
	}
	return false
}

// hiddenRemoved stands for an excerpt that quoted hidden inputs.
const hiddenRemoved = "[the plugin's words quoted a hidden input: shown to the organizers only]"
