package judge

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/hackarena/hackarena/challenges"
	"github.com/hackarena/hackarena/sdk"
)

// cappedLog keeps the first max bytes written to it and counts the rest, so
// a plugin flooding its output cannot grow the judge's memory.
type cappedLog struct {
	mu        sync.Mutex
	max       int
	buf       []byte
	dropped   int64
	lastWrite time.Time
	// outputs are the plugin's outputs that pass sdk.OutputMarker.
	outputs []*markedOutput
}

func newCappedLog(max int) *cappedLog { return &cappedLog{max: max} }

func (l *cappedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.keep(p)
	return len(p), nil
}

// keep appends p as far as the cap allows. The caller holds l.mu.
func (l *cappedLog) keep(p []byte) {
	if len(p) == 0 {
		return
	}
	l.lastWrite = time.Now()
	room := min(l.max-len(l.buf), len(p))
	if room > 0 {
		l.buf = append(l.buf, p[:room]...)
	}
	l.dropped += int64(len(p) - room)
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

// markedOutput is one of a plugin's outputs into the log. It takes
// sdk.OutputMarker out of what passes and says when it has passed: what
// came before it on this output was printed before the plugin answered
// Describe. A tail that may be the start of a marker split across writes
// is held until the next write tells.
type markedOutput struct {
	log  *cappedLog
	held []byte
	once sync.Once
	seen chan struct{}
}

// output is a new output of the plugin's into the log.
func (l *cappedLog) output() *markedOutput {
	o := &markedOutput{log: l, seen: make(chan struct{})}
	l.mu.Lock()
	l.outputs = append(l.outputs, o)
	l.mu.Unlock()
	return o
}

func (o *markedOutput) Write(p []byte) (int, error) {
	l := o.log
	l.mu.Lock()
	defer l.mu.Unlock()
	data := p
	if len(o.held) > 0 {
		data = append(o.held, p...)
		o.held = nil
	}
	for {
		i := bytes.Index(data, markerBytes)
		if i < 0 {
			break
		}
		l.keep(data[:i])
		data = data[i+len(markerBytes):]
		o.once.Do(func() { close(o.seen) })
	}
	// The longest tail that could begin a marker waits for the next write.
	for n := min(len(data), len(markerBytes)-1); n > 0; n-- {
		if bytes.HasPrefix(markerBytes, data[len(data)-n:]) {
			o.held = append([]byte(nil), data[len(data)-n:]...)
			data = data[:len(data)-n]
			break
		}
	}
	l.keep(data)
	return len(p), nil
}

var markerBytes = []byte(sdk.OutputMarker)

// awaitMarkers waits until every output has passed its marker, at most
// max; it reports whether they all did.
func (l *cappedLog) awaitMarkers(max time.Duration) bool {
	l.mu.Lock()
	outputs := slices.Clone(l.outputs)
	l.mu.Unlock()
	timeout := time.NewTimer(max)
	defer timeout.Stop()
	for _, o := range outputs {
		select {
		case <-o.seen:
			continue
		default:
		}
		select {
		case <-o.seen:
		case <-timeout.C:
			return false
		}
	}
	return true
}

// String is the kept log, with a note when some of it was dropped.
func (l *cappedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	buf := l.buf
	for _, o := range l.outputs {
		// Whatever waits to be told from a marker is the plugin's words.
		buf = append(buf[:len(buf):len(buf)], o.held...)
	}
	if l.dropped > 0 {
		return string(buf) + fmt.Sprintf("\n[log truncated: %d more bytes were dropped]\n", l.dropped)
	}
	return string(buf)
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
