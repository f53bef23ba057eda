package events

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/hackarena/hackarena/internal/redistest"
	"github.com/hackarena/hackarena/platform/store"
)

func startHub(t *testing.T, buffer int) (*Hub, *store.Store) {
	t.Helper()
	rdb, _ := redistest.Start(t)
	st := store.New(rdb)
	hub := NewHub(st, buffer, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = hub.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-hub.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("hub did not subscribe within 10s")
	}
	return hub, st
}

// publish writes n board events for slug, as a judge does.
func publish(t *testing.T, st *store.Store, slug string, n int) {
	t.Helper()
	for range n {
		if err := st.PublishBoard(context.Background(), slug, "accuracy", true); err != nil {
			t.Fatal(err)
		}
	}
}

func receive(t *testing.T, sub *Subscription, n int) []*store.Event {
	t.Helper()
	var got []*store.Event
	deadline := time.After(10 * time.Second)
	for len(got) < n {
		select {
		case ev, ok := <-sub.C:
			if !ok {
				t.Fatalf("subscription closed after %d of %d events", len(got), n)
			}
			got = append(got, ev)
		case <-deadline:
			t.Fatalf("got %d of %d events within 10s", len(got), n)
		}
	}
	return got
}

// TestSlowSubscriberIsDroppedNotWaitedFor: a subscriber that stops reading
// is cut off once its queue is full, and the others still get every event
// in order.
func TestSlowSubscriberIsDroppedNotWaitedFor(t *testing.T) {
	hub, st := startHub(t, 4)
	slow := hub.Subscribe("mnist")
	fast := hub.Subscribe("mnist")
	other := hub.Subscribe("imdb")

	// In step with the reader, so only the subscriber that does not
	// read falls behind.
	const n = 20
	var got []*store.Event
	for range n {
		publish(t, st, "mnist", 1)
		got = append(got, receive(t, fast, 1)...)
	}
	for i := 1; i < len(got); i++ {
		if store.CompareStreamIDs(got[i-1].ID, got[i].ID) >= 0 {
			t.Fatalf("events out of order: %s then %s", got[i-1].ID, got[i].ID)
		}
	}
	kept := 0
	for range slow.C {
		kept++
	}
	if !slow.Dropped() || kept != 4 {
		t.Fatalf("slow subscriber: dropped=%v after %d queued events, want dropped after 4", slow.Dropped(), kept)
	}
	if fast.Dropped() {
		t.Fatal("the reading subscriber was dropped")
	}
	select {
	case ev := <-other.C:
		t.Fatalf("a subscriber of imdb got an event of %s", ev.Challenge)
	default:
	}
	if n := hub.Subscribers(); n != 2 {
		t.Fatalf("%d subscribers left, want 2 (fast, other)", n)
	}
}

// TestHubCatchesUpAfterLosingRedis: pub/sub forgets what it published while
// the hub's connection was down; the hub reads it from the stream after
// subscribing again.
func TestHubCatchesUpAfterLosingRedis(t *testing.T) {
	hub, st := startHub(t, 0)
	sub := hub.Subscribe("")
	publish(t, st, "mnist", 1)
	first := receive(t, sub, 1)[0]

	ctx := context.Background()
	if err := st.Redis().Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	// Written while the hub has no subscription (it reconnects within
	// ~200ms): only the stream has these.
	publish(t, st, "houses", 3)
	got := receive(t, sub, 3)
	last := first.ID
	for _, ev := range got {
		if ev.Challenge != "houses" || store.CompareStreamIDs(ev.ID, last) <= 0 {
			t.Fatalf("after reconnecting got %+v (previous id %s)", ev, last)
		}
		last = ev.ID
	}
	publish(t, st, "imdb", 1)
	if ev := receive(t, sub, 1)[0]; ev.Challenge != "imdb" {
		t.Fatalf("live after catching up: %+v", ev)
	}
}

// TestStoppedHubClosesSubscriptions: stopping the hub ends every stream,
// so that an HTTP server can shut down.
func TestStoppedHubClosesSubscriptions(t *testing.T) {
	rdb, _ := redistest.Start(t)
	hub := NewHub(store.New(rdb), 0, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- hub.Run(ctx) }()
	<-hub.Ready()
	sub := hub.Subscribe("")
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("hub did not stop within 10s of its context ending")
	}
	if _, ok := <-sub.C; ok || sub.Dropped() {
		t.Fatal("subscription not closed (or marked dropped) by a stopping hub")
	}
	if _, ok := <-hub.Subscribe("").C; ok {
		t.Fatal("subscribing to a stopped hub gave an open subscription")
	}
}
