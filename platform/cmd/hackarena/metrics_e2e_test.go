package main

import (
	"bufio"
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/hackarena/hackarena/platform/redisproc"
)

// scrape reads url's Prometheus text exposition.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse %s: %v", url, err)
	}
	return families
}

// sample is the value of the series of family name whose labels include
// want (a counter's or gauge's value, a histogram's count); ok is false
// when there is none.
func sample(families map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	f, found := families[name]
	if !found {
		return 0, false
	}
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		match := true
		for k, v := range want {
			if labels[k] != v {
				match = false
			}
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

// TestEndToEndOperatorMetricsOfAnAPIAndAJudge: after a short run (one
// plugin scored, one crashed, one still queued), an API replica's
// /metrics has its requests by route and status, its open event streams,
// the queues and Redis errors; a judge-only process's has what it
// finished by status and reason and how long each phase of its runs took.
func TestEndToEndOperatorMetricsOfAnAPIAndAJudge(t *testing.T) {
	ctx := context.Background()
	dataDir := t.TempDir()
	api := startServer(t, dataDir, "HACKARENA_WORKERS=0")
	port, err := redisproc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	judgeMetrics := "http://127.0.0.1:" + strconv.Itoa(port) + "/metrics"
	launch(t, []string{"judge"}, "HACKARENA_DATA_DIR="+dataDir, "HACKARENA_WORKER_NAME=metrics",
		"HACKARENA_METRICS_ADDR=127.0.0.1:"+strconv.Itoa(port))
	api.waitFor("/readyz")

	c := register(t, api.url, "metrics")
	good, err := c.Submit(ctx, "mnist", buildPlugin(t, "mnist-centroid"))
	if err != nil {
		t.Fatal(err)
	}
	bad, err := c.Submit(ctx, "mnist", buildPlugin(t, "hostile/panic-at-start"))
	if err != nil {
		t.Fatal(err)
	}
	if sub := waitFinal(t, c, good.ID, 2*time.Minute); sub.Status != "scored" {
		t.Fatalf("%+v", sub)
	}
	if sub := waitFinal(t, c, bad.ID, 2*time.Minute); sub.Status != "failed" || sub.Reason != "crashed" {
		t.Fatalf("%+v", sub)
	}
	// One event stream open while the API is scraped.
	streamCtx, closeStream := context.WithCancel(ctx)
	defer closeStream()
	req, _ := http.NewRequestWithContext(streamCtx, http.MethodGet, api.url+"/api/v1/events", nil)
	stream, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Body.Close()
	if line, err := bufio.NewReader(stream.Body).ReadString('\n'); err != nil || !strings.HasPrefix(line, "retry:") {
		t.Fatalf("event stream: %q %v", line, err)
	}
	// A missing submission and an unknown path count by their route.
	if _, err := c.Submission(ctx, "no-such-submission"); err == nil {
		t.Fatal("a missing submission was found")
	}
	resp, err := http.Get(api.url + "/no/such/path/" + strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	apiSeries := scrape(t, api.url+"/metrics")
	for _, want := range []struct {
		name   string
		labels map[string]string
		min    float64
	}{
		{"hackarena_http_requests_total", map[string]string{"route": "/api/v1/challenges/:slug/submissions", "method": "POST", "status": "202"}, 2},
		{"hackarena_http_requests_total", map[string]string{"route": "/api/v1/submissions/:id", "method": "GET", "status": "200"}, 1},
		{"hackarena_http_requests_total", map[string]string{"route": "/api/v1/submissions/:id", "method": "GET", "status": "404"}, 1},
		{"hackarena_http_requests_total", map[string]string{"route": "/api/v1/teams", "method": "POST", "status": "201"}, 1},
		{"hackarena_http_requests_total", map[string]string{"route": "unmatched", "method": "GET", "status": "404"}, 1},
		{"hackarena_http_request_duration_seconds", map[string]string{"route": "/api/v1/challenges/:slug/submissions"}, 2},
		{"hackarena_event_streams_open", nil, 1},
		{"hackarena_queue_waiting", map[string]string{"challenge": "mnist"}, 0},
		{"hackarena_queue_oldest_waiting_seconds", map[string]string{"challenge": "mnist"}, 0},
		{"hackarena_redis_errors_total", map[string]string{"command": "dial"}, 0},
	} {
		v, ok := sample(apiSeries, want.name, want.labels)
		if !ok || v < want.min {
			t.Errorf("API /metrics: %s%v = %v (present %v), want at least %v", want.name, want.labels, v, ok, want.min)
		}
	}
	// No series names a raw path.
	for _, m := range apiSeries["hackarena_http_requests_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if strings.Contains(l.GetValue(), "no/such") || strings.Contains(l.GetValue(), "no-such-submission") {
				t.Errorf("a series is labelled with a raw path: %v", m.GetLabel())
			}
		}
	}
	if _, ok := apiSeries["hackarena_submissions_finished_total"]; ok {
		t.Error("the API replica, which judges nothing, reports finished submissions")
	}

	judgeSeries := scrape(t, judgeMetrics)
	for _, want := range []struct {
		name   string
		labels map[string]string
		value  float64
	}{
		{"hackarena_submissions_finished_total", map[string]string{"challenge": "mnist", "status": "scored", "reason": ""}, 1},
		{"hackarena_submissions_finished_total", map[string]string{"challenge": "mnist", "status": "failed", "reason": "crashed"}, 1},
		{"hackarena_judge_phase_seconds", map[string]string{"phase": "slot_wait"}, 2},
		{"hackarena_judge_phase_seconds", map[string]string{"phase": "judging"}, 1},
		{"hackarena_queue_waiting", map[string]string{"challenge": "mnist"}, 0},
		{"hackarena_queue_running", map[string]string{"challenge": "mnist"}, 0},
	} {
		if v, ok := sample(judgeSeries, want.name, want.labels); !ok || v != want.value {
			t.Errorf("judge /metrics: %s%v = %v (present %v), want %v", want.name, want.labels, v, ok, want.value)
		}
	}
	// The crashed plugin may or may not have finished its handshake.
	if v, _ := sample(judgeSeries, "hackarena_judge_phase_seconds", map[string]string{"phase": "start"}); v < 1 {
		t.Errorf("judge /metrics: %v start phases, want at least 1", v)
	}

	// A queued submission shows as waiting, with its age, on both.
	unjudged := startServer(t, t.TempDir(), "HACKARENA_WORKERS=0")
	lc := register(t, unjudged.url, "queued")
	if _, err := lc.Submit(ctx, "mnist", buildPlugin(t, "mnist-centroid")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	queued := scrape(t, unjudged.url+"/metrics")
	if v, _ := sample(queued, "hackarena_queue_waiting", map[string]string{"challenge": "mnist"}); v != 1 {
		t.Errorf("one queued submission: hackarena_queue_waiting = %v", v)
	}
	if v, _ := sample(queued, "hackarena_queue_oldest_waiting_seconds", map[string]string{"challenge": "mnist"}); v < 1 {
		t.Errorf("a submission queued for over a second: oldest waiting %v s", v)
	}
}
