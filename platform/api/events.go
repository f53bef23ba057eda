package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/hackarena/hackarena/platform/events"
	"github.com/hackarena/hackarena/platform/store"
)

// Defaults of the event stream.
const (
	// DefaultHeartbeat keeps proxies from closing a quiet stream and lets
	// the server notice a vanished client.
	DefaultHeartbeat = 15 * time.Second
	// eventWriteTimeout bounds one write to a client: one that does not
	// read for this long is cut off.
	eventWriteTimeout = 10 * time.Second
	// reconnectDelayMS is what browsers wait before reconnecting.
	reconnectDelayMS = 2000
)

// helloEvent opens a fresh stream: from its id on, every event reaches the
// client, so state loaded after it is never older than the stream.
type helloEvent struct {
	LastEventID string `json:"last_event_id"`
	// Reset: the client asked to resume from an event that is no longer
	// kept; it must reload its state.
	Reset bool `json:"reset,omitempty"`
}

// events serves Server-Sent Events: on a fresh connection the recent
// submissions and a hello, on a reconnection (Last-Event-ID) every event
// missed since, then live events and heartbeat comments.
func (s *Server) events(c *fiber.Ctx) error {
	if s.Events == nil {
		return apiError(fiber.StatusServiceUnavailable, "events_unavailable", "this server does not stream events; reload the page to see new results")
	}
	// Both outlive the handler (the hijacked stream and the hub keep
	// them): copies, not views into fasthttp's reused request buffer.
	slug := strings.Clone(c.Query("challenge"))
	if slug != "" {
		if _, ok := s.Challenges.Get(slug); !ok {
			return apiError(fiber.StatusNotFound, "challenge_not_found", "no challenge %q: list them with GET /api/v1/challenges", slug)
		}
	}
	last := strings.Clone(c.Get("Last-Event-ID", c.Query("last_event_id")))
	if last != "" && !store.ValidEventID(last) {
		return apiError(fiber.StatusBadRequest, "invalid_last_event_id", "Last-Event-ID %.40q is not an event id (like 1700000000000-0): reconnect without it", last)
	}
	// Subscribe before reading the stream, so an event written while the
	// replay is read is queued rather than missed.
	sub := s.Events.Subscribe(slug)
	heartbeat := s.Heartbeat
	if heartbeat <= 0 {
		heartbeat = DefaultHeartbeat
	}
	// The stream takes over the connection, so fasthttp's worker goroutine
	// and response writer are free again; a body stream writer would hold a
	// pipe, a second goroutine and their buffers for as long as the page
	// is open. The body ends when the connection closes.
	fctx := c.Context()
	fctx.HijackSetNoResponse(true)
	fctx.Hijack(func(conn net.Conn) {
		s.Observe.streamOpened()
		defer s.Observe.streamClosed()
		defer sub.Close()
		// Write to the socket itself (fasthttp closes it after this
		// returns), so that net.Buffers becomes one writev.
		if raw, ok := conn.(interface{ UnsafeConn() net.Conn }); ok {
			conn = raw.UnsafeConn()
		}
		st := &eventStream{conn: conn, store: s.Store, challenge: slug}
		st.buf.WriteString("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n" +
			"Cache-Control: no-store\r\nX-Accel-Buffering: no\r\nConnection: close\r\n\r\n")
		if err := st.serve(sub, last, heartbeat); err != nil {
			s.Log.Debug("event stream ended", "challenge", slug, "err", err)
		}
	})
	return nil
}

// eventStream writes one client's events.
type eventStream struct {
	conn      net.Conn
	store     *store.Store
	challenge string
	// buf collects small pieces (headers, comments, the backlog) for the
	// next write; it is emptied after.
	buf bytes.Buffer
	// sent is the id of the newest event this client has (or need not
	// have, being of another challenge).
	sent string
}

var frameEnd = []byte("\n\n")

// flush sends what is buffered.
func (e *eventStream) flush() error { return e.write(e.buf.Bytes()) }

// send writes an event; its data is one line of JSON. The data is shared
// by every client and written from where it is, not copied per client.
func (e *eventStream) send(id, typ string, data []byte) error {
	fmt.Fprintf(&e.buf, "id: %s\nevent: %s\ndata: ", id, typ)
	return e.write(e.buf.Bytes(), data, frameEnd)
}

// write sends parts in one system call, giving up on a client that does
// not read.
func (e *eventStream) write(parts ...[]byte) error {
	defer func() {
		e.buf.Reset()
		if e.buf.Cap() > 4<<10 {
			e.buf = bytes.Buffer{} // a backlog's buffer is not kept while idle
		}
	}()
	if err := e.conn.SetWriteDeadline(time.Now().Add(eventWriteTimeout)); err != nil {
		return err
	}
	bufs := net.Buffers(parts)
	_, err := bufs.WriteTo(e.conn)
	return err
}

func (e *eventStream) mine(ev *store.Event) bool {
	return e.challenge == "" || ev.Challenge == e.challenge
}

func (e *eventStream) serve(sub *events.Subscription, last string, heartbeat time.Duration) error {
	fmt.Fprintf(&e.buf, "retry: %d\n\n", reconnectDelayMS)
	if err := e.flush(); err != nil {
		return err
	}
	resumed := false
	if last != "" {
		var err error
		if resumed, err = e.replay(last); err != nil {
			return err
		}
	}
	if !resumed {
		if err := e.hello(last != ""); err != nil {
			return err
		}
	}
	tick := time.NewTicker(heartbeat)
	defer tick.Stop()
	for {
		select {
		case ev, ok := <-sub.C:
			if !ok {
				if sub.Dropped() {
					// The browser reconnects with Last-Event-ID and replays
					// what it missed.
					e.buf.WriteString(": too far behind; reconnect to catch up\n\n")
					_ = e.flush()
				}
				return nil
			}
			if store.CompareStreamIDs(ev.ID, e.sent) <= 0 || !e.mine(ev) {
				continue
			}
			if err := e.send(ev.ID, ev.Type, ev.Data); err != nil {
				return err
			}
			e.sent = ev.ID
		case <-tick.C:
			e.buf.WriteString(": ping\n\n")
			if err := e.flush(); err != nil {
				return err
			}
		}
	}
}

func storeContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 10*time.Second)
}

// replay sends every event after last; it returns false when some were no
// longer kept, and the client must start afresh.
func (e *eventStream) replay(last string) (bool, error) {
	ctx, cancel := storeContext()
	defer cancel()
	lost, err := e.store.EventsLostAfter(ctx, last)
	if err != nil || lost {
		return false, err
	}
	e.sent = last
	err = e.store.EachEventAfter(ctx, last, func(ev *store.Event) error {
		if e.mine(ev) {
			if err := e.send(ev.ID, ev.Type, ev.Data); err != nil {
				return err
			}
		}
		e.sent = ev.ID
		return nil
	})
	return err == nil, err
}

// hello starts a fresh stream: the latest submissions of the challenge
// (for the feed), then the hello event carrying the id to resume from.
func (e *eventStream) hello(reset bool) error {
	ctx, cancel := storeContext()
	defer cancel()
	// The id first: a submission written after it comes live as well as
	// in the backlog, and the page shows it once (by submission id).
	last, err := e.store.LastEventID(ctx)
	if err != nil {
		return err
	}
	e.sent = last
	if e.challenge != "" {
		backlog, err := e.store.RecentSubmissions(ctx, e.challenge)
		if err != nil {
			return err
		}
		for _, data := range backlog {
			// Without an id: a backlog entry must not move the browser's
			// resume point.
			fmt.Fprintf(&e.buf, "event: backlog\ndata: %s\n\n", data)
		}
	}
	data, err := json.Marshal(helloEvent{LastEventID: e.sent, Reset: reset})
	if err != nil {
		return err
	}
	return e.send(e.sent, "hello", data)
}
