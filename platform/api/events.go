package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
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
	// backlogSize is how many recent submissions a new page is shown.
	backlogSize = 30
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
	slug := c.Query("challenge")
	if slug != "" {
		if _, ok := s.Challenges.Get(slug); !ok {
			return apiError(fiber.StatusNotFound, "challenge_not_found", "no challenge %q: list them with GET /api/v1/challenges", slug)
		}
	}
	last := c.Get("Last-Event-ID", c.Query("last_event_id"))
	if last != "" && !store.ValidEventID(last) {
		return apiError(fiber.StatusBadRequest, "invalid_last_event_id", "Last-Event-ID %.40q is not an event id (like 1700000000000-0): reconnect without it", last)
	}
	// Subscribe before reading the stream, so an event written while the
	// replay is read is queued rather than missed.
	sub := s.Events.Subscribe(slug)
	c.Set(fiber.HeaderContentType, "text/event-stream; charset=utf-8")
	c.Set(fiber.HeaderCacheControl, "no-store")
	c.Set("X-Accel-Buffering", "no")
	fctx := c.Context()
	heartbeat := s.Heartbeat
	if heartbeat <= 0 {
		heartbeat = DefaultHeartbeat
	}
	fctx.SetBodyStreamWriter(func(w *bufio.Writer) {
		defer sub.Close()
		st := &eventStream{conn: fctx.Conn(), w: w, store: s.Store, challenge: slug}
		if err := st.serve(sub, last, heartbeat); err != nil {
			s.Log.Debug("event stream ended", "challenge", slug, "err", err)
		}
	})
	return nil
}

// eventStream writes one client's events.
type eventStream struct {
	conn      net.Conn
	w         *bufio.Writer
	store     *store.Store
	challenge string
	// sent is the id of the newest event this client has (or need not
	// have, being of another challenge).
	sent string
}

func (e *eventStream) flush() error {
	if e.conn != nil {
		if err := e.conn.SetWriteDeadline(time.Now().Add(eventWriteTimeout)); err != nil {
			return err
		}
	}
	return e.w.Flush()
}

// send writes an event; its data is one line of JSON.
func (e *eventStream) send(id, typ string, data []byte) error {
	fmt.Fprintf(e.w, "id: %s\nevent: %s\ndata: %s\n\n", id, typ, data)
	return e.flush()
}

func (e *eventStream) mine(ev store.Event) bool {
	return e.challenge == "" || ev.Challenge == e.challenge
}

func (e *eventStream) serve(sub *events.Subscription, last string, heartbeat time.Duration) error {
	fmt.Fprintf(e.w, "retry: %d\n\n", reconnectDelayMS)
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
					fmt.Fprint(e.w, ": too far behind; reconnect to catch up\n\n")
					_ = e.flush()
				}
				return nil
			}
			if store.CompareEventIDs(ev.ID, e.sent) <= 0 || !e.mine(ev) {
				continue
			}
			if err := e.send(ev.ID, ev.Type, ev.Data); err != nil {
				return err
			}
			e.sent = ev.ID
		case <-tick.C:
			fmt.Fprint(e.w, ": ping\n\n")
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
	for {
		evs, err := e.store.EventsAfter(ctx, e.sent, 500)
		if err != nil {
			return false, err
		}
		for _, ev := range evs {
			if e.mine(ev) {
				if err := e.send(ev.ID, ev.Type, ev.Data); err != nil {
					return false, err
				}
			}
			e.sent = ev.ID
		}
		if len(evs) < 500 {
			return true, nil
		}
	}
}

// hello starts a fresh stream: the latest submissions (for the feed), then
// the hello event carrying the id to resume from.
func (e *eventStream) hello(reset bool) error {
	ctx, cancel := storeContext()
	defer cancel()
	recent, err := e.store.RecentEvents(ctx, 20*backlogSize)
	if err != nil {
		return err
	}
	e.sent = "0-0"
	if n := len(recent); n > 0 {
		e.sent = recent[n-1].ID
	}
	var backlog []store.Event
	for _, ev := range recent {
		if ev.Type == store.EventSubmission && e.mine(ev) {
			backlog = append(backlog, ev)
		}
	}
	if len(backlog) > backlogSize {
		backlog = backlog[len(backlog)-backlogSize:]
	}
	for _, ev := range backlog {
		// Without an id: a backlog entry must not move the browser's
		// resume point backwards.
		fmt.Fprintf(e.w, "event: backlog\ndata: %s\n\n", ev.Data)
	}
	data, err := json.Marshal(helloEvent{LastEventID: e.sent, Reset: reset})
	if err != nil {
		return err
	}
	return e.send(e.sent, "hello", data)
}
