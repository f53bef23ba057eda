package api

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hackarena/hackarena/platform/store"
)

// TestDescriptionsAreSanitized: an organizer's markdown is rendered, and
// script, event handlers and javascript: links do not survive.
func TestDescriptionsAreSanitized(t *testing.T) {
	for _, tc := range []struct{ name, src, want string }{
		{"markdown", "# Digits\n\nScore **accuracy**.\n\n| a | b |\n|---|---|\n| 1 | 2 |", "<strong>accuracy</strong>"},
		{"raw script", "hi <script>alert(1)</script>", "hi"},
		{"event handler", `<img src="x" onerror="alert(1)">`, ""},
		{"javascript link", "[click](javascript:alert(1))", "click"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			html, err := renderMarkdown(tc.src)
			if err != nil {
				t.Fatal(err)
			}
			lower := strings.ToLower(html)
			for _, bad := range []string{"<script", "onerror", "javascript:"} {
				if strings.Contains(lower, bad) {
					t.Fatalf("%q rendered to %q, which keeps %q", tc.src, html, bad)
				}
			}
			if !strings.Contains(html, tc.want) {
				t.Fatalf("%q rendered to %q, want it to contain %q", tc.src, html, tc.want)
			}
		})
	}
	if strings.Contains(mustRender(t, "| a | b |\n|---|---|\n| 1 | 2 |"), "<table>") == false {
		t.Fatal("tables are not rendered")
	}
}

func mustRender(t *testing.T, src string) string {
	t.Helper()
	html, err := renderMarkdown(src)
	if err != nil {
		t.Fatal(err)
	}
	return html
}

// TestTeamPageHidesPrivateScoresUntilReveal: anyone can see a team's
// history, without logs or messages, and its private scores only after the
// reveal.
func TestTeamPageHidesPrivateScoresUntilReveal(t *testing.T) {
	h := newHarness(t, 64<<20)
	token := h.register("Open Book")
	id := h.submitTo("mnist", token, staticBinary(t))
	ctx := context.Background()
	sub, _, err := h.st.Start(ctx, id, "w")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.st.Finish(ctx, sub, store.Result{Status: store.StatusScored, Log: "secret log line",
		Metrics: &store.Metrics{Public: map[string]float64{"accuracy": 0.5}, Private: map[string]float64{"accuracy": 0.4242}}}); err != nil {
		t.Fatal(err)
	}
	page := h.json(http.MethodGet, "/api/v1/teams/Open%20Book/submissions", "", nil)
	if page.status != 200 || !strings.Contains(string(page.raw), `"accuracy":0.5`) {
		t.Fatalf("team page: %d %s", page.status, page.raw)
	}
	for _, secret := range []string{"0.4242", "secret log line", sub.SHA256} {
		if strings.Contains(string(page.raw), secret) {
			t.Fatalf("team page before the reveal shows %q: %s", secret, page.raw)
		}
	}
	if _, err := h.st.Reveal(ctx, "mnist", time.Now()); err != nil {
		t.Fatal(err)
	}
	if page := h.json(http.MethodGet, "/api/v1/teams/open%20book/submissions", "", nil); !strings.Contains(string(page.raw), "0.4242") {
		t.Fatalf("team page after the reveal lacks the private score: %s", page.raw)
	}
	if page := h.json(http.MethodGet, "/api/v1/teams/nobody/submissions", "", nil); page.status != 404 || page.errorCode() != "team_not_found" {
		t.Fatalf("unknown team: %d %s", page.status, page.raw)
	}
	h.organizer()
	if page := h.json(http.MethodGet, "/api/v1/teams/organizer/submissions", "", nil); page.status != 404 {
		t.Fatalf("the organizer account has a public page: %d %s", page.status, page.raw)
	}
}
