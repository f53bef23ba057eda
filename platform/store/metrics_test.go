package store

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/hackarena/hackarena/platform/redisproc"
)

// TestQueueStatsCountWaitingAndRunningJobs: three queued, one taken by a
// judge: two wait, the oldest of them since the second upload, one runs.
func TestQueueStatsCountWaitingAndRunningJobs(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	if st, err := s.QueueStats(ctx, "ch"); err != nil || st.Waiting != 0 || st.Running != 0 || !st.OldestWaiting.IsZero() {
		t.Fatalf("a queue never written: %+v %v", st, err)
	}
	team, _ := s.CreateTeam(ctx, "t", "h", RoleParticipant)
	var queued []time.Time
	for range 3 {
		queued = append(queued, time.Now())
		if _, err := s.Enqueue(ctx, "ch", team, "sha", 1); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Before any judge made the group.
	if st, err := s.QueueStats(ctx, "ch"); err != nil || st.Waiting != 3 || st.Running != 0 {
		t.Fatalf("three queued, no group: %+v %v", st, err)
	}
	if err := s.EnsureGroups(ctx, []string{"ch"}); err != nil {
		t.Fatal(err)
	}
	if job, err := one(s.ReadJobs(ctx, []string{"ch"}, "a", false, time.Second)); err != nil || job == nil {
		t.Fatal(job, err)
	}
	st, err := s.QueueStats(ctx, "ch")
	if err != nil || st.Waiting != 2 || st.Running != 1 {
		t.Fatalf("three queued, one taken: %+v %v", st, err)
	}
	if st.OldestWaiting.Before(queued[1].Truncate(time.Millisecond)) || st.OldestWaiting.After(queued[2]) {
		t.Fatalf("oldest waiting %s, want the second upload's time (%s)", st.OldestWaiting, queued[1])
	}

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewQueueCollector(s, func() []string { return []string{"ch"} }, nil))
	if n, err := testutil.GatherAndCount(reg, "hackarena_queue_waiting", "hackarena_queue_running", "hackarena_queue_oldest_waiting_seconds"); err != nil || n != 3 {
		t.Fatalf("queue collector: %d series, %v", n, err)
	}
}

// TestRedisErrorsAreCounted: a refused connection and an error reply
// count, by command; a missing key, an existing group and a call its
// caller cancelled do not.
func TestRedisErrorsAreCounted(t *testing.T) {
	ctx := context.Background()
	srv, err := redisproc.Start(ctx, redisproc.Options{Dir: t.TempDir(), AppendFsync: "everysec"})
	if err != nil {
		t.Fatal(err)
	}
	opt, _ := redis.ParseURL(srv.URL())
	opt.MaxRetries = -1
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	reg := prometheus.NewPedanticRegistry()
	if err := CountRedisErrors(rdb, reg); err != nil {
		t.Fatal(err)
	}
	count := func(command string) float64 {
		t.Helper()
		families, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range families {
			for _, m := range f.GetMetric() {
				if m.GetLabel()[0].GetValue() == command {
					return m.GetCounter().GetValue()
				}
			}
		}
		return 0
	}
	s := New(rdb)
	if err := rdb.Get(ctx, "missing").Err(); err != redis.Nil {
		t.Fatal(err)
	}
	if err := s.EnsureGroups(ctx, []string{"ch"}); err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureGroups(ctx, []string{"ch"}); err != nil {
		t.Fatal(err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	_ = rdb.Get(cancelled, "k").Err()
	for _, command := range []string{"get", "xgroup", "dial"} {
		if n := count(command); n != 0 {
			t.Errorf("%s: %v errors counted for answers", command, n)
		}
	}
	// An error reply: INCR of a value that is not a number.
	rdb.Set(ctx, "word", "not a number", 0)
	if err := rdb.Incr(ctx, "word").Err(); err == nil {
		t.Fatal("INCR of a word succeeded")
	}
	if n := count("incr"); n != 1 {
		t.Errorf("incr: %v errors counted, want 1", n)
	}
	// Redis goes away: connecting is refused.
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	// The first ping finds its pooled connection cut, the second dials.
	for range 2 {
		if err := rdb.Ping(ctx).Err(); err == nil {
			t.Fatal("ping of a stopped redis-server answered")
		}
	}
	if count("dial") < 1 || count("ping") != 2 {
		t.Errorf("after a refused connection: dial %v, ping %v errors", count("dial"), count("ping"))
	}
}
