package api

import (
	"fmt"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are an API process's operator series. A nil *Metrics records
// nothing.
type Metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	streams  prometheus.Gauge
}

// NewMetrics registers the API's series with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hackarena_http_requests_total",
			Help: "HTTP requests answered, by route pattern, method and status.",
		}, []string{"route", "method", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "hackarena_http_request_duration_seconds",
			Help:    "How long requests took to answer, by route pattern (an event stream counts until its headers).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
		}, []string{"route"}),
		streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hackarena_event_streams_open",
			Help: "Server-Sent Event streams this process is serving now.",
		}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.streams} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register api metrics: %w", err)
		}
	}
	return m, nil
}

// observe counts each request by the route that matched it (a pattern such
// as /api/v1/submissions/:id, never the raw path, so a client cannot mint
// series) once its error, if any, has been turned into the answer.
func (m *Metrics) observe(c *fiber.Ctx) error {
	begin := time.Now()
	if err := c.Next(); err != nil {
		// The error handler would run after this middleware; the status
		// is only known once it has.
		if herr := c.App().ErrorHandler(c, err); herr != nil {
			_ = c.SendStatus(fiber.StatusInternalServerError)
		}
	}
	route := c.Route().Path
	if route == "/" && c.Path() != "/" {
		// It ended on a middleware mounted at the root: no route matched.
		route = "unmatched"
	}
	m.requests.WithLabelValues(route, methodLabel(c.Method()), strconv.Itoa(c.Response().StatusCode())).Inc()
	m.duration.WithLabelValues(route).Observe(time.Since(begin).Seconds())
	return nil
}

// methodLabel keeps the method label to the methods HTTP defines: any
// other token a client sends is "other". The label is the constant, never
// m, which is a view into fasthttp's reused request buffer.
func methodLabel(m string) string {
	if known, ok := httpMethods[m]; ok {
		return known
	}
	return "other"
}

var httpMethods = map[string]string{
	fiber.MethodGet: fiber.MethodGet, fiber.MethodHead: fiber.MethodHead, fiber.MethodPost: fiber.MethodPost,
	fiber.MethodPut: fiber.MethodPut, fiber.MethodDelete: fiber.MethodDelete, fiber.MethodPatch: fiber.MethodPatch,
	fiber.MethodOptions: fiber.MethodOptions, fiber.MethodConnect: fiber.MethodConnect, fiber.MethodTrace: fiber.MethodTrace,
}

func (m *Metrics) streamOpened() {
	if m != nil {
		m.streams.Inc()
	}
}

func (m *Metrics) streamClosed() {
	if m != nil {
		m.streams.Dec()
	}
}
