package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hackarena/hackarena/platform/redisproc"
	"github.com/hackarena/hackarena/sdk/client"
)

// get fetches path with token (or none), which must answer 200, and
// returns the body.
func get(t *testing.T, url, path, token string) string {
	t.Helper()
	return fetch(t, url, path, token, 30*time.Second, false)
}

// stream reads an event stream at path for a second and returns what came.
func stream(t *testing.T, url, path string) string {
	t.Helper()
	return fetch(t, url, path, "", time.Second, true)
}

func fetch(t *testing.T, url, path, token string, within time.Duration, isStream bool) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil && !isStream {
		t.Fatalf("GET %s: reading the body: %v", path, err)
	}
	if resp.StatusCode != http.StatusOK || len(body) == 0 {
		t.Fatalf("GET %s: %d with %d bytes", path, resp.StatusCode, len(body))
	}
	return string(body)
}

// TestEndToEndHiddenInputsStayOutOfTheTeamsView: a plugin prints every
// hidden IMDB review it is sent. Under the default log policy no review
// reaches anything its team or a spectator can read; the organizers see
// the capped log; with limits.logs "full" the team sees it too.
func TestEndToEndHiddenInputsStayOutOfTheTeamsView(t *testing.T) {
	srv := startServer(t, t.TempDir(), "HACKARENA_ORGANIZER_PASSWORD=organizer-logs")
	ctx := context.Background()
	c := register(t, srv.url, "printers")
	token, _, err := client.New(srv.url, "").Login(ctx, "printers", "printers-password")
	if err != nil {
		t.Fatal(err)
	}
	orgToken, _, err := client.New(srv.url, "").Login(ctx, "organizer", "organizer-logs")
	if err != nil {
		t.Fatal(err)
	}
	plugin := buildPlugin(t, "hostile/print-inputs")
	sub, err := c.Submit(ctx, "imdb", plugin)
	if err != nil {
		t.Fatal(err)
	}
	if got := waitFinal(t, c, sub.ID, 3*time.Minute); got.Status != "scored" {
		t.Fatalf("print-inputs: %s %s %s", got.Status, got.Reason, got.Message)
	}

	// The organizers' view has the capped log, reviews included.
	var orgView struct {
		Submission struct{ Log string } `json:"submission"`
	}
	if err := json.Unmarshal([]byte(get(t, srv.url, "/api/v1/submissions/"+sub.ID, orgToken)), &orgView); err != nil {
		t.Fatal(err)
	}
	// A snippet of each review that reads the same in JSON, an event and
	// a terminal (no quotes, <, >, &, backslashes), so that looking for it
	// in any of them cannot miss it for its escaping.
	plain := regexp.MustCompile(`[A-Za-z0-9 ,.'!?;:()-]{40}`)
	var reviews []string
	for _, line := range strings.Split(orgView.Submission.Log, "\n") {
		if r, ok := strings.CutPrefix(line, "input: "); ok {
			if snippet := plain.FindString(r); snippet != "" {
				reviews = append(reviews, snippet)
			}
		}
	}
	if len(reviews) < 10 || len(orgView.Submission.Log) > 80<<10 || !strings.Contains(orgView.Submission.Log, "[log truncated:") {
		t.Fatalf("organizer log of %d bytes with %d reviews; want the capped log with the reviews", len(orgView.Submission.Log), len(reviews))
	}

	hctl := newHackctl(t, srv)
	hctl.hack("login", "--name", "printers", "--password", "printers-password")
	teamVisible := func() map[string]string {
		return map[string]string{
			"submission view": get(t, srv.url, "/api/v1/submissions/"+sub.ID, token),
			"own submissions": get(t, srv.url, "/api/v1/teams/me/submissions", token),
			"team page":       get(t, srv.url, "/api/v1/teams/printers/submissions", ""),
			"history":         get(t, srv.url, "/api/v1/challenges/imdb/history", ""),
			"leaderboard":     get(t, srv.url, "/api/v1/challenges/imdb/leaderboard", token),
			"events":          stream(t, srv.url, "/api/v1/events?challenge=imdb"),
			"hackctl status":  hctl.hack("status", sub.ID),
		}
	}
	for where, body := range teamVisible() {
		for _, r := range reviews {
			if strings.Contains(body, r) {
				t.Fatalf("a hidden review is readable in the %s: %q", where, r)
			}
		}
	}
	view := teamVisible()["submission view"]
	if !strings.Contains(view, "print-inputs: starting up") || !strings.Contains(view, "shown to the organizers only") {
		t.Errorf("the team's log should keep what the plugin printed before the first batch and say where the rest is: %s", view)
	}

	// A practice challenge shows the whole log.
	putSpec(t, srv.url, orgToken, "imdb", func(spec map[string]any) {
		spec["description"] = "practice"
		spec["limits"].(map[string]any)["logs"] = "full"
	})
	if view := get(t, srv.url, "/api/v1/submissions/"+sub.ID, token); !strings.Contains(view, reviews[0]) {
		t.Errorf("with limits.logs \"full\" the team should see its plugin's whole log; looked for %q in %.3000s", reviews[0], view)
	}
}

// TestEndToEndPasswordChangeRevokesTokensThroughHackctl: `hackctl
// password` changes the team's password; the token saved before stops
// working with a message saying to log in again, hackctl goes on with
// the new one, and the new password logs in.
func TestEndToEndPasswordChangeRevokesTokensThroughHackctl(t *testing.T) {
	srv := startServer(t, t.TempDir())
	h := newHackctl(t, srv)
	h.hack("register", "--name", "rotating")
	var before struct{ Token string }
	raw, err := os.ReadFile(h.cfgPath)
	if err != nil || json.Unmarshal(raw, &before) != nil || before.Token == "" {
		t.Fatalf("hackctl config: %s %v", raw, err)
	}
	if out := h.hack("password", "--new", "a brand new one"); !strings.Contains(out, "tokens issued before it no longer work") {
		t.Fatalf("hackctl password said: %s", out)
	}
	_, err = client.New(srv.url, before.Token).MySubmissions(context.Background())
	var apiErr *client.Error
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusUnauthorized || !strings.Contains(apiErr.Message, "log in again") {
		t.Fatalf("the token from before the change: %v", err)
	}
	if out, err := h.run("status", "no-such-submission"); err == nil || !strings.Contains(out, "no submission") {
		t.Fatalf("hackctl with its new token: %v %s", err, out)
	}
	if _, _, err := client.New(srv.url, "").Login(context.Background(), "rotating", "a brand new one"); err != nil {
		t.Fatalf("login with the new password: %v", err)
	}
}

// TestEndToEndMetricsOnTheirOwnAddress: with HACKARENA_METRICS_ADDR the
// participants' port has no /metrics, and the operator's address has it.
func TestEndToEndMetricsOnTheirOwnAddress(t *testing.T) {
	port, err := redisproc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	metricsAddr := "127.0.0.1:" + strconv.Itoa(port)
	srv := startServer(t, t.TempDir(), "HACKARENA_METRICS_ADDR="+metricsAddr)
	resp, err := http.Get(srv.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("/metrics on the API's address: %d, want 404", resp.StatusCode)
	}
	resp, err = http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "hackarena_engine_process_restarts_total") {
		t.Errorf("/metrics on %s: %d, %d bytes without the engine's series", metricsAddr, resp.StatusCode, len(body))
	}
}

// TestEndToEndTwoAPIProcessesShareTheLoginThrottle: two `hackarena serve`
// processes on one Redis count one team's failed logins together.
func TestEndToEndTwoAPIProcessesShareTheLoginThrottle(t *testing.T) {
	a := startServer(t, t.TempDir(), "HACKARENA_LOGIN_LIMIT=6")
	m := regexp.MustCompile(`msg="redis started" url=(\S+)`).FindStringSubmatch(a.logs.String())
	if m == nil {
		t.Fatalf("no redis URL in the first server's log:\n%s", a.logs.String())
	}
	b := startServer(t, t.TempDir(), "HACKARENA_LOGIN_LIMIT=6", "REDIS_URL="+m[1], "HACKARENA_WORKERS=0")
	register(t, a.url, "twice")
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		for _, s := range []*server{a, b} {
			_, _, err := client.New(s.url, "").Login(ctx, "twice", "wrong password")
			var apiErr *client.Error
			if !errors.As(err, &apiErr) || apiErr.Status != http.StatusUnauthorized {
				t.Fatalf("failure %d on %s: %v, want 401", i+1, s.url, err)
			}
		}
	}
	for _, s := range []*server{a, b} {
		_, _, err := client.New(s.url, "").Login(ctx, "twice", "twice-password")
		var apiErr *client.Error
		if !errors.As(err, &apiErr) || apiErr.Status != http.StatusTooManyRequests || !strings.Contains(apiErr.Message, "try again in") {
			t.Errorf("the right password on %s after 6 failures spread over both: %v, want 429", s.url, err)
		}
	}
}
