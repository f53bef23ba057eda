package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hackarena/hackarena/platform/redisproc"
	"github.com/hackarena/hackarena/platform/store"
)

// BenchmarkEventFanOut holds many SSE clients on one `hackarena serve`
// process over loopback and measures, per board change, the time from the
// score being written to Redis until the last client has the event; and
// the server's resident memory per connected client. The same run measures
// one client as the baseline the fan-out is compared with.
//
//	make bench-events   (HACKARENA_BENCH_CLIENTS sets the count; default 2000)
func BenchmarkEventFanOut(b *testing.B) {
	clients := 2000
	if v := os.Getenv("HACKARENA_BENCH_CLIENTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			b.Fatalf("HACKARENA_BENCH_CLIENTS=%q is not a positive number", v)
		}
		clients = n
	}
	dataDir := b.TempDir()
	srv := startServer(b, dataDir, "HACKARENA_WORKERS=0", "HACKARENA_LOG_LEVEL=warn")
	redisURL, err := redisproc.RunningURL(filepath.Join(dataDir, "redis"))
	if err != nil {
		b.Fatal(err)
	}
	rdb, err := store.Connect(context.Background(), redisURL)
	if err != nil {
		b.Fatal(err)
	}
	defer rdb.Close()
	st := store.New(rdb)
	teams := seedBoard(b, st, 30)

	var score float64 = 0.9
	base := fanOut(b, srv, st, teams, &score, 1, 50)
	b.ResetTimer()
	wide := fanOut(b, srv, st, teams, &score, clients, b.N)
	b.StopTimer()

	b.ReportMetric(ms(base.p50), "1client-p50-ms")
	b.ReportMetric(ms(wide.p50), "p50-ms")
	b.ReportMetric(ms(wide.p99), "p99-ms")
	b.ReportMetric(ms(wide.p50)/ms(base.p50), "p50-vs-1client")
	b.ReportMetric(float64(wide.rssPerClient)/1024, "server-KiB/client")
	b.Logf("%d clients, %d-team board events (%d bytes): p50 %.2f ms, p99 %.2f ms (1 client: p50 %.2f ms); server RSS +%d KiB per client",
		clients, len(teams), wide.eventBytes, ms(wide.p50), ms(wide.p99), ms(base.p50), wide.rssPerClient/1024)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// seedBoard ranks n teams on mnist's public board, so each event carries a
// board of realistic size.
func seedBoard(b *testing.B, st *store.Store, n int) []store.Submission {
	ctx := context.Background()
	var subs []store.Submission
	for i := range n {
		team, err := st.CreateTeam(ctx, fmt.Sprintf("team-%03d", i), "x", store.RoleParticipant)
		if err != nil {
			b.Fatal(err)
		}
		sub, err := st.Enqueue(ctx, "mnist", team, "sha", 1)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := st.UpdateBoard(ctx, "mnist", store.Rules{Metric: "accuracy", HigherIsBetter: true}, sub, 0.5+float64(i)/1000); err != nil {
			b.Fatal(err)
		}
		subs = append(subs, sub)
	}
	return subs
}

type fanOutResult struct {
	p50, p99     time.Duration
	rssPerClient int64
	eventBytes   int
}

// sseConn is one spectator: a raw HTTP/1.1 connection reading events.
type sseConn struct {
	conn net.Conn
	r    *bufio.Reader
}

func dialEvents(srvURL string) (*sseConn, error) {
	u, err := url.Parse(srvURL)
	if err != nil {
		return nil, err
	}
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(conn, "GET /api/v1/events?challenge=mnist HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n\r\n", u.Host)
	c := &sseConn{conn: conn, r: bufio.NewReaderSize(conn, 16<<10)}
	// Read up to the hello event: from then on the client is subscribed.
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("read the stream's start: %w", err)
		}
		if strings.HasPrefix(line, "HTTP/1.1 ") && !strings.HasPrefix(line, "HTTP/1.1 200") {
			conn.Close()
			return nil, fmt.Errorf("events answered %s", strings.TrimSpace(line))
		}
		if strings.HasPrefix(line, "event: hello") {
			return c, nil
		}
	}
}

// fanOut connects n clients, then writes rounds board changes one at a
// time, each after every client got the previous one.
// Each round's score beats everything before it, so each is a change.
func fanOut(b *testing.B, srv *server, st *store.Store, teams []store.Submission, score *float64, n, rounds int) fanOutResult {
	rssBefore := residentBytes(b, srv.cmd.Process.Pid)
	conns := make([]*sseConn, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	var dialErr atomic.Value
	for i := range conns {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := dialEvents(srv.url)
			if err != nil {
				dialErr.Store(err)
				return
			}
			conns[i] = c
		}()
	}
	wg.Wait()
	if err, ok := dialErr.Load().(error); ok {
		b.Fatalf("connect %d clients: %v", n, err)
	}
	defer func() {
		for _, c := range conns {
			c.conn.Close()
		}
	}()
	// fasthttp keeps idle request workers for 10s: measure what stays.
	time.Sleep(12 * time.Second)
	rssAfter := residentBytes(b, srv.cmd.Process.Pid)

	// Each client reports when it sees a leaderboard event; the round
	// ends when the last one did.
	var received atomic.Int64
	var lastAt atomic.Int64
	roundDone := make(chan struct{}, 1)
	var eventBytes atomic.Int64
	for _, c := range conns {
		go func() {
			for {
				line, err := c.r.ReadString('\n')
				if err != nil {
					return
				}
				if strings.HasPrefix(line, "data: ") && strings.Contains(line, `"board":"public"`) {
					eventBytes.Store(int64(len(line)))
					now := time.Now().UnixNano()
					lastAt.Store(now)
					if received.Add(1) == int64(n) {
						roundDone <- struct{}{}
					}
				}
			}
		}()
	}
	ctx := context.Background()
	lat := make([]time.Duration, 0, rounds)
	for i := range rounds {
		received.Store(0)
		sub := teams[i%len(teams)]
		// A new best for one team: a real board change, written as the
		// judge writes it.
		start := time.Now()
		*score += 1e-6
		if _, err := st.UpdateBoard(ctx, "mnist", store.Rules{Metric: "accuracy", HigherIsBetter: true}, sub, *score); err != nil {
			b.Fatal(err)
		}
		select {
		case <-roundDone:
		case <-time.After(30 * time.Second):
			b.Fatalf("round %d: %d of %d clients got the event within 30s", i, received.Load(), n)
		}
		lat = append(lat, time.Duration(lastAt.Load()-start.UnixNano()))
	}
	slices.Sort(lat)
	pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	return fanOutResult{p50: pct(0.50), p99: pct(0.99), rssPerClient: (rssAfter - rssBefore) / int64(n), eventBytes: int(eventBytes.Load())}
}

// residentBytes reads a process's resident set size from /proc.
func residentBytes(b *testing.B, pid int) int64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				b.Fatalf("parse VmRSS %q: %v", v, err)
			}
			return kb << 10
		}
	}
	b.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}
