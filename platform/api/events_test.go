package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hackarena/hackarena/platform/events"
	"github.com/hackarena/hackarena/platform/store"
)

// sseFrame is one message of an event stream: an event, or a comment.
type sseFrame struct {
	ID, Event, Data, Comment string
}

// sseClient reads an event stream over a real HTTP connection.
type sseClient struct {
	t      *testing.T
	resp   *http.Response
	frames chan sseFrame
	cancel context.CancelFunc
	// lastID is the id of the latest event read, what a browser sends
	// back as Last-Event-ID.
	lastID string
}

// startEvents runs an event hub for the harness' server.
func (h *harness) startEvents(heartbeat time.Duration) *events.Hub {
	h.t.Helper()
	hub := events.NewHub(h.st, 0, h.srv.Log)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = hub.Run(ctx) }()
	h.stopEvents = func() { cancel(); <-done }
	h.t.Cleanup(h.stopEvents)
	select {
	case <-hub.Ready():
	case <-time.After(10 * time.Second):
		h.t.Fatal("event hub did not subscribe within 10s")
	}
	h.srv.Events, h.srv.Heartbeat = hub, heartbeat
	return hub
}

func openEvents(t *testing.T, url, lastEventID string) *sseClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	resp, err := http.DefaultClient.Do(eventsRequest(t, url, lastEventID).WithContext(ctx))
	if err != nil {
		cancel()
		t.Fatalf("GET %s: %v", url, err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		cancel()
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	c := &sseClient{t: t, resp: resp, frames: make(chan sseFrame, 1024), cancel: cancel}
	go c.read()
	t.Cleanup(c.close)
	return c
}

func (c *sseClient) read() {
	defer close(c.frames)
	r := bufio.NewReader(c.resp.Body)
	var f sseFrame
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			if f != (sseFrame{}) {
				c.frames <- f
			}
			f = sseFrame{}
		case strings.HasPrefix(line, ":"):
			f.Comment = strings.TrimSpace(line[1:])
		default:
			k, v, _ := strings.Cut(line, ":")
			v = strings.TrimPrefix(v, " ")
			switch k {
			case "id":
				f.ID = v
			case "event":
				f.Event = v
			case "data":
				f.Data = v
			}
		}
	}
}

func (c *sseClient) close() {
	c.cancel()
	_ = c.resp.Body.Close()
}

// next returns the next frame that is not a heartbeat or reconnect hint.
func (c *sseClient) next(within time.Duration) sseFrame {
	c.t.Helper()
	deadline := time.After(within)
	for {
		select {
		case f, ok := <-c.frames:
			if !ok {
				c.t.Fatal("event stream ended")
			}
			if f.Event == "" && f.Data == "" {
				continue
			}
			if f.ID != "" {
				c.lastID = f.ID
			}
			return f
		case <-deadline:
			c.t.Fatalf("no event within %s", within)
		}
	}
}

// submitTo uploads bin to a challenge and returns the submission id.
func (h *harness) submitTo(slug, token string, bin []byte) string {
	h.t.Helper()
	a := h.uploadTo(slug, token, bin)
	if a.status != http.StatusAccepted {
		h.t.Fatalf("upload to %s: %d %s", slug, a.status, a.raw)
	}
	return a.body["submission"].(map[string]any)["id"].(string)
}

func submissionOf(t *testing.T, f sseFrame) store.SubmissionEvent {
	t.Helper()
	var ev store.SubmissionEvent
	if f.Event != store.EventSubmission {
		t.Fatalf("got %q event, want submission: %+v", f.Event, f)
	}
	if err := json.Unmarshal([]byte(f.Data), &ev); err != nil {
		t.Fatalf("decode %q: %v", f.Data, err)
	}
	return ev
}

// TestEventsResumeAfterDisconnect is the reconnect promise: a spectator
// whose connection drops mid-hackathon, while two submissions arrive, gets
// both when it comes back with Last-Event-ID, and nothing twice.
func TestEventsResumeAfterDisconnect(t *testing.T) {
	h := newHarness(t, 64<<20)
	h.startEvents(time.Hour)
	base := h.listen()
	token := h.register("Resumers")
	bin := staticBinary(t)

	first := openEvents(t, base+"/api/v1/events?challenge=mnist", "")
	hello := first.next(10 * time.Second)
	if hello.Event != "hello" || hello.ID == "" {
		t.Fatalf("first frame %+v, want a hello with an id", hello)
	}
	h.submitTo("mnist", token, bin)
	if ev := submissionOf(t, first.next(10*time.Second)); ev.Status != store.StatusQueued {
		t.Fatalf("live event %+v, want queued", ev)
	}
	first.close()

	ids := []string{h.submitTo("mnist", token, bin), h.submitTo("mnist", token, bin)}
	// Another challenge's event in between must not be replayed to a
	// spectator of mnist.
	h.submitTo("houses", token, bin)

	again := openEvents(t, base+"/api/v1/events?challenge=mnist", first.lastID)
	for i, want := range ids {
		f := again.next(10 * time.Second)
		ev := submissionOf(t, f)
		if ev.ID != want || ev.Status != store.StatusQueued || ev.Team != "Resumers" || ev.Challenge != "mnist" {
			t.Fatalf("replayed event %d: %+v, want queued %s of Resumers", i, ev, want)
		}
	}
	// Nothing else is pending: the next frame is a new live event.
	id := h.submitTo("mnist", token, bin)
	if ev := submissionOf(t, again.next(10*time.Second)); ev.ID != id {
		t.Fatalf("after the replay got %+v, want the new submission %v", ev, id)
	}
}

// TestEventStreamBasics: heartbeats on a quiet stream, clear errors for a
// bad Last-Event-ID or challenge, and a resume from an event no longer kept
// tells the client to reload instead of silently skipping.
func TestEventStreamBasics(t *testing.T) {
	h := newHarness(t, 64<<20)
	h.startEvents(50 * time.Millisecond)
	base := h.listen()

	quiet := openEvents(t, base+"/api/v1/events", "")
	if f := quiet.next(5 * time.Second); f.Event != "hello" || f.ID != "0-0" {
		t.Fatalf("hello on an empty stream: %+v", f)
	}
	select {
	case f := <-quiet.frames:
		if f.Comment != "ping" {
			t.Fatalf("quiet stream sent %+v, want a ping comment", f)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no heartbeat within 5s at a 50ms heartbeat")
	}

	for _, tc := range []struct {
		name, query, lastID string
		status              int
		code                string
	}{
		{"unknown challenge", "?challenge=chess", "", http.StatusNotFound, "challenge_not_found"},
		{"garbage Last-Event-ID", "", "yesterday", http.StatusBadRequest, "invalid_last_event_id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := eventsRequest(t, base+"/api/v1/events"+tc.query, tc.lastID)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body struct {
				Error struct{ Code, Message string }
			}
			_ = json.NewDecoder(resp.Body).Decode(&body)
			if resp.StatusCode != tc.status || body.Error.Code != tc.code || body.Error.Message == "" {
				t.Fatalf("got %d %+v, want %d %s", resp.StatusCode, body, tc.status, tc.code)
			}
		})
	}

	// Trim the stream past the first event, as MAXLEN does once
	// store.EventsKept newer events were written.
	ctx := context.Background()
	if err := h.st.PublishBoard(ctx, "mnist", "accuracy", true); err != nil {
		t.Fatal(err)
	}
	oldest := quiet.next(5 * time.Second).ID
	for range 3 {
		if err := h.st.PublishBoard(ctx, "imdb", "accuracy", true); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.st.Redis().XTrimMaxLen(ctx, "ha:events", 2).Err(); err != nil {
		t.Fatal(err)
	}
	late := openEvents(t, base+"/api/v1/events?challenge=mnist", oldest)
	f := late.next(5 * time.Second)
	var hello helloEvent
	if err := json.Unmarshal([]byte(f.Data), &hello); err != nil || f.Event != "hello" || !hello.Reset {
		t.Fatalf("resuming from a trimmed event gave %+v, want a hello with reset", f)
	}
}

// eventsRequest is a GET of url with Last-Event-ID when lastID is set.
func eventsRequest(t *testing.T, url, lastID string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	return req
}

// TestFreshStreamStartsWithTheFeed: a page that connects mid-hackathon is
// shown the latest submissions of its challenge (and no other's) before
// the hello it resumes from.
func TestFreshStreamStartsWithTheFeed(t *testing.T) {
	h := newHarness(t, 64<<20)
	h.startEvents(time.Hour)
	base := h.listen()
	token := h.register("Feeders")
	bin := staticBinary(t)
	var ids []string
	for range 3 {
		ids = append(ids, h.submitTo("mnist", token, bin))
	}
	h.submitTo("houses", token, bin)
	page := openEvents(t, base+"/api/v1/events?challenge=mnist", "")
	for i, want := range ids {
		f := page.next(5 * time.Second)
		var ev store.SubmissionEvent
		if f.Event != "backlog" || f.ID != "" || json.Unmarshal([]byte(f.Data), &ev) != nil || ev.ID != want {
			t.Fatalf("frame %d: %+v, want a backlog entry (no id) for %s", i, f, want)
		}
	}
	if f := page.next(5 * time.Second); f.Event != "hello" || f.ID == "" {
		t.Fatalf("after the backlog: %+v, want hello with an id", f)
	}
}

// TestSpectatorThatStopsReadingIsDropped: a client whose socket is full
// (it stopped reading) is dropped by the hub, and a reading client gets
// every event meanwhile.
func TestSpectatorThatStopsReadingIsDropped(t *testing.T) {
	h := newHarness(t, 64<<20)
	hub := h.startEvents(time.Hour)
	base := h.listen()
	ctx := context.Background()
	// A board of 30 teams makes each event about 5 KB, so the stalled
	// client's socket buffers fill within a few thousand events.
	for i := range 30 {
		team, err := h.st.CreateTeam(ctx, "team-"+strconv.Itoa(i), "x", store.RoleParticipant)
		if err != nil {
			t.Fatal(err)
		}
		sub, err := h.st.Enqueue(ctx, "mnist", team, "sha", 1)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.st.UpdateBoard(ctx, "mnist", store.Rules{Metric: "accuracy", HigherIsBetter: true}, sub, float64(i)/100); err != nil {
			t.Fatal(err)
		}
	}

	stalled, err := net.DialTCP("tcp", nil, net.TCPAddrFromAddrPort(netip.MustParseAddrPort(strings.TrimPrefix(base, "http://"))))
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	// A small receive window: the server's socket fills sooner.
	if err := stalled.SetReadBuffer(4 << 10); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(stalled, "GET /api/v1/events?challenge=mnist HTTP/1.1\r\nHost: x\r\n\r\n")
	reading := openEvents(t, base+"/api/v1/events?challenge=mnist", "")
	for reading.next(5*time.Second).Event != "hello" {
	}
	deadline := time.Now().Add(10 * time.Second)
	for hub.Subscribers() < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}

	const n = 1500
	got := make(chan int)
	go func() {
		count := 0
		for count < n {
			f, ok := <-reading.frames
			if !ok {
				break
			}
			if f.Event == store.EventLeaderboard {
				count++
			}
		}
		got <- count
	}()
	for range n {
		if err := h.st.PublishBoard(ctx, "mnist", "accuracy", true); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case c := <-got:
		if c != n {
			t.Fatalf("the reading client got %d of %d events", c, n)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the reading client did not get every event within 60s")
	}
	if subs := hub.Subscribers(); subs != 1 {
		t.Fatalf("%d subscribers after %d events, want 1: the stalled client was not dropped", subs, n)
	}
}
