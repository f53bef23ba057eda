package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// QueueStats is what an operator watches of one challenge's queue.
type QueueStats struct {
	// Waiting counts jobs no judge has taken yet; Running, jobs a judge
	// holds and has not acknowledged.
	Waiting, Running int64
	// OldestWaiting is when the oldest waiting job was queued (zero when
	// none waits).
	OldestWaiting time.Time
}

// QueueStats reads slug's queue depth and its oldest waiting job in two
// or three calls, whatever the queue's length.
func (s *Store) QueueStats(ctx context.Context, slug string) (QueueStats, error) {
	var st QueueStats
	groups, err := s.rdb.XInfoGroups(ctx, queueKey(slug)).Result()
	if err != nil && !isNoSuchKey(err) {
		return st, fmt.Errorf("queue info %q: %w", slug, err)
	}
	start := "-"
	st.Waiting = -1
	for _, g := range groups {
		if g.Name == JudgeGroup {
			start, st.Running, st.Waiting = "("+g.LastDeliveredID, g.Pending, g.Lag
		}
	}
	oldest, err := s.rdb.XRangeN(ctx, queueKey(slug), start, "+", 1).Result()
	if err != nil {
		return st, fmt.Errorf("queue range %q: %w", slug, err)
	}
	if len(oldest) == 0 {
		st.Waiting = 0
		return st, nil
	}
	// A stream id starts with the millisecond it was added at.
	ms, _ := splitStreamID(oldest[0].ID)
	st.OldestWaiting = time.UnixMilli(int64(ms))
	if st.Waiting < 0 {
		// No group yet, or Redis cannot tell the group's lag: count (a
		// queue this long is reported as at least this long).
		rest, err := s.rdb.XRangeN(ctx, queueKey(slug), start, "+", 10000).Result()
		if err != nil {
			return st, fmt.Errorf("queue range %q: %w", slug, err)
		}
		st.Waiting = int64(len(rest))
	}
	return st, nil
}

// QueueCollector exports every challenge's queue depth and oldest waiting
// age, read from Redis when scraped (so every process reports the same
// figures, judges' and API replicas' alike).
type QueueCollector struct {
	store   *Store
	slugs   func() []string
	log     *slog.Logger
	waiting *prometheus.Desc
	running *prometheus.Desc
	oldest  *prometheus.Desc
}

// NewQueueCollector reads the queues of the challenges slugs names.
func NewQueueCollector(s *Store, slugs func() []string, log *slog.Logger) *QueueCollector {
	if log == nil {
		log = slog.Default()
	}
	return &QueueCollector{
		store: s, slugs: slugs, log: log,
		waiting: prometheus.NewDesc("hackarena_queue_waiting", "Submissions queued and not yet taken by a judge.", []string{"challenge"}, nil),
		running: prometheus.NewDesc("hackarena_queue_running", "Submissions a judge holds and has not finished.", []string{"challenge"}, nil),
		oldest:  prometheus.NewDesc("hackarena_queue_oldest_waiting_seconds", "How long the oldest waiting submission has waited (0 when none waits).", []string{"challenge"}, nil),
	}
}

var _ prometheus.Collector = (*QueueCollector)(nil)

// Describe implements prometheus.Collector.
func (c *QueueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.waiting
	ch <- c.running
	ch <- c.oldest
}

// Collect implements prometheus.Collector. A challenge whose queue cannot
// be read is left out of the scrape (and counted as a Redis error).
func (c *QueueCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	now := time.Now()
	for _, slug := range c.slugs() {
		st, err := c.store.QueueStats(ctx, slug)
		if err != nil {
			c.log.Warn("metrics: read queue", "challenge", slug, "err", err)
			continue
		}
		age := 0.0
		if !st.OldestWaiting.IsZero() {
			age = max(0, now.Sub(st.OldestWaiting).Seconds())
		}
		ch <- prometheus.MustNewConstMetric(c.waiting, prometheus.GaugeValue, float64(st.Waiting), slug)
		ch <- prometheus.MustNewConstMetric(c.running, prometheus.GaugeValue, float64(st.Running), slug)
		ch <- prometheus.MustNewConstMetric(c.oldest, prometheus.GaugeValue, age, slug)
	}
}

// CountRedisErrors counts, in hackarena_redis_errors_total{command}, every
// call of rdb that failed for a reason of Redis or the way to it: a
// refused or cut connection, a timeout, an error reply. A missing key,
// a group that already exists, and calls abandoned by their own caller
// (cancelled) are answers, not errors.
func CountRedisErrors(rdb *redis.Client, reg prometheus.Registerer) error {
	errs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hackarena_redis_errors_total",
		Help: "Redis calls that failed (connection refused or cut, timeout, error reply), by command.",
	}, []string{"command"})
	if err := reg.Register(errs); err != nil {
		return fmt.Errorf("register redis error counter: %w", err)
	}
	// The series exists before the first failure, for rates and alerts.
	errs.WithLabelValues("dial")
	rdb.AddHook(redisErrorHook{errs})
	return nil
}

type redisErrorHook struct{ errs *prometheus.CounterVec }

var _ redis.Hook = redisErrorHook{}

func (h redisErrorHook) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := next(ctx, network, addr)
		if countsAsRedisError(ctx, err) {
			h.errs.WithLabelValues("dial").Inc()
		}
		return conn, err
	}
}

func (h redisErrorHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if countsAsRedisError(ctx, err) {
			h.errs.WithLabelValues(cmd.Name()).Inc()
		}
		return err
	}
}

func (h redisErrorHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		for _, cmd := range cmds {
			if countsAsRedisError(ctx, cmd.Err()) {
				h.errs.WithLabelValues(cmd.Name()).Inc()
			}
		}
		return err
	}
}

func countsAsRedisError(ctx context.Context, err error) bool {
	switch {
	case err == nil, errors.Is(err, redis.Nil):
		return false
	case errors.Is(err, context.Canceled) && ctx.Err() != nil:
		return false
	case strings.HasPrefix(err.Error(), "BUSYGROUP"):
		return false
	}
	return true
}
