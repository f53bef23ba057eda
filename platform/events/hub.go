// Package events fans the platform's event stream out to live clients: one
// Redis subscription per process, a bounded queue per client, and slow
// clients dropped instead of waited for.
package events

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/hackarena/hackarena/platform/store"
	"github.com/redis/go-redis/v9"
)

// DefaultBuffer is how many events a client may fall behind before it is
// dropped. A dropped browser reconnects with Last-Event-ID and replays
// from the stream, so dropping loses nothing.
const DefaultBuffer = 256

// Hub follows the event channel and hands each event to the subscribers of
// its challenge. The zero value is not usable; use NewHub.
type Hub struct {
	st     *store.Store
	buffer int
	log    *slog.Logger

	mu      sync.Mutex
	subs    map[*Subscription]struct{}
	stopped bool
	// lastID is the newest event handed out, for catching up after the
	// subscription reconnects (pub/sub does not keep what it sent while
	// the connection was down).
	lastID string
	ready  chan struct{}
}

// NewHub builds a hub; Run starts it. buffer <= 0 means DefaultBuffer.
func NewHub(st *store.Store, buffer int, log *slog.Logger) *Hub {
	if buffer <= 0 {
		buffer = DefaultBuffer
	}
	return &Hub{st: st, buffer: buffer, log: log, subs: map[*Subscription]struct{}{}, ready: make(chan struct{})}
}

// Subscription is one client's view of the events. C is closed when the
// client was dropped (it fell behind) or the hub stopped; Dropped says
// which.
type Subscription struct {
	// C carries events shared with every other subscriber: read them,
	// never change them. Pointers keep an idle queue small.
	C         <-chan *store.Event
	c         chan *store.Event
	challenge string
	hub       *Hub
	dropped   bool
}

// Dropped reports whether the hub dropped this subscriber for falling
// behind. Read it after C is closed.
func (s *Subscription) Dropped() bool {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	return s.dropped
}

// Close ends the subscription; it is safe to call more than once.
func (s *Subscription) Close() {
	h := s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[s]; ok {
		delete(h.subs, s)
		close(s.c)
	}
}

// Subscribe follows the events of one challenge, or of all when challenge
// is "". Subscribing to a stopped hub gives a closed subscription.
func (h *Hub) Subscribe(challenge string) *Subscription {
	c := make(chan *store.Event, h.buffer)
	sub := &Subscription{C: c, c: c, challenge: challenge, hub: h}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped {
		close(c)
		return sub
	}
	h.subs[sub] = struct{}{}
	return sub
}

// Subscribers counts the live subscriptions.
func (h *Hub) Subscribers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}

// Ready is closed once the hub's first subscription to Redis is confirmed.
func (h *Hub) Ready() <-chan struct{} { return h.ready }

// Run follows the event channel until ctx ends, subscribing again whenever
// the connection to Redis is lost, then closes every subscription and
// returns nil.
func (h *Hub) Run(ctx context.Context) error {
	defer h.stop()
	// Start from the stream's end as it is before subscribing: the catch-up
	// after the subscription is confirmed covers what came in between.
	if last, err := h.st.LastEventID(ctx); err == nil {
		h.mu.Lock()
		h.lastID = last
		h.mu.Unlock()
	} else if ctx.Err() == nil {
		h.log.Warn("read the event stream's end; events written before the subscription may not reach live clients", "err", err)
	}
	ps := h.st.Redis().Subscribe(ctx, store.EventsChannel)
	defer ps.Close()
	// Receive does not return when ctx ends; closing the subscription
	// makes it.
	defer context.AfterFunc(ctx, func() { _ = ps.Close() })()
	first := true
	for {
		msg, err := ps.Receive(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			// go-redis reconnects and subscribes again on the next
			// Receive; wait a little so a Redis that is down is not
			// hammered.
			h.log.Warn("event subscription interrupted; reconnecting", "err", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(200 * time.Millisecond):
			}
			continue
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			// Subscribed, first or again after a lost connection: what was
			// published while not subscribed is only in the stream.
			if err := h.catchUp(ctx); err != nil && ctx.Err() == nil {
				h.log.Error("catch up on events after subscribing", "err", err)
			}
			if first {
				first = false
				close(h.ready)
			}
		case *redis.Message:
			ev, err := store.ParseEventMessage(m.Payload)
			if err != nil {
				h.log.Error("drop event", "err", err)
				continue
			}
			h.deliver(&ev)
		}
	}
}

func (h *Hub) catchUp(ctx context.Context) error {
	h.mu.Lock()
	last := h.lastID
	h.mu.Unlock()
	if last == "" {
		return nil
	}
	return h.st.EachEventAfter(ctx, last, func(ev *store.Event) error {
		h.deliver(ev)
		return nil
	})
}

// deliver hands ev to every subscriber of its challenge without ever
// waiting: a subscriber whose queue is full is dropped.
func (h *Hub) deliver(ev *store.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.lastID != "" && store.CompareStreamIDs(ev.ID, h.lastID) <= 0 {
		return // already handed out (a catch-up overlapping the channel)
	}
	h.lastID = ev.ID
	for sub := range h.subs {
		if sub.challenge != "" && sub.challenge != ev.Challenge {
			continue
		}
		select {
		case sub.c <- ev:
		default:
			sub.dropped = true
			delete(h.subs, sub)
			close(sub.c)
		}
	}
}

func (h *Hub) stop() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stopped = true
	for sub := range h.subs {
		delete(h.subs, sub)
		close(sub.c)
	}
}
