package judge

import (
	"fmt"
	"sync"
)

// cappedLog keeps the first max bytes written to it and counts the rest, so
// a plugin flooding its output cannot grow the judge's memory.
type cappedLog struct {
	mu      sync.Mutex
	max     int
	buf     []byte
	dropped int64
}

func newCappedLog(max int) *cappedLog { return &cappedLog{max: max} }

func (l *cappedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
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
