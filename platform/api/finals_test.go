package api

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/hackarena/hackarena/platform/store"
)

// TestATeamSelectsItsFinalsAndThePrivateBoardFollows: only a team's finals
// count on the private board: its best 2 by public score until it selects
// others; selections are its own, scored-only, at most 2, shown in its
// views and on its public page, and fixed once the challenge closes.
func TestATeamSelectsItsFinalsAndThePrivateBoardFollows(t *testing.T) {
	h := newHarness(t, 1<<20)
	ctx := context.Background()
	alpha, beta := h.register("alpha"), h.register("beta")
	acc := func(v float64) map[string]float64 { return map[string]float64{"accuracy": v} }
	a1 := h.scoredSubmission("mnist", "alpha", acc(0.90), acc(0.70))
	a2 := h.scoredSubmission("mnist", "alpha", acc(0.85), acc(0.72))
	a3 := h.scoredSubmission("mnist", "alpha", acc(0.60), acc(0.99))
	h.scoredSubmission("mnist", "beta", acc(0.80), acc(0.80))
	org := h.organizer()
	leader := func() (string, float64) {
		t.Helper()
		a := h.json(http.MethodGet, "/api/v1/challenges/mnist/leaderboard?board=private", org, nil)
		entries, _ := a.body["entries"].([]any)
		if a.status != 200 || len(entries) != 2 {
			t.Fatalf("private board: %d %s", a.status, a.raw)
		}
		top := entries[0].(map[string]any)
		return top["team"].(string), top["score"].(float64)
	}
	finalOf := func(id string) string {
		t.Helper()
		a := h.json(http.MethodGet, "/api/v1/submissions/"+id, alpha, nil)
		f, _ := a.body["submission"].(map[string]any)["final"].(string)
		return f
	}

	// By default alpha's finals are a1 and a2 (its best public): private
	// 0.72 at best, behind beta's 0.80.
	if team, score := leader(); team != "beta" || score != 0.80 {
		t.Fatalf("by default the private board is led by %s (%v), want beta", team, score)
	}
	list := h.json(http.MethodGet, "/api/v1/challenges/mnist/finals", alpha, nil)
	if subs, _ := list.body["submissions"].([]any); list.status != 200 || list.body["selected"] != false || len(subs) != 2 ||
		subs[0].(map[string]any)["id"] != a1.ID || subs[0].(map[string]any)["final"] != "default" {
		t.Fatalf("default finals: %d %s", list.status, list.raw)
	}
	if finalOf(a1.ID) != "default" || finalOf(a3.ID) != "" {
		t.Fatalf("views: a1 %q, a3 %q", finalOf(a1.ID), finalOf(a3.ID))
	}

	// Selecting a3 makes it alpha's only final: 0.99 leads.
	sel := h.json(http.MethodPost, "/api/v1/submissions/"+a3.ID+"/final", alpha, nil)
	if sel.status != 200 || sel.body["changed"] != true || sel.body["submission"].(map[string]any)["final"] != "selected" {
		t.Fatalf("select a3: %d %s", sel.status, sel.raw)
	}
	if team, score := leader(); team != "alpha" || score != 0.99 {
		t.Fatalf("after selecting a3 the private board is led by %s (%v)", team, score)
	}
	if finalOf(a1.ID) != "" || finalOf(a3.ID) != "selected" {
		t.Fatalf("views after the selection: a1 %q, a3 %q", finalOf(a1.ID), finalOf(a3.ID))
	}
	page := h.json(http.MethodGet, "/api/v1/teams/alpha/submissions", "", nil)
	marked := map[string]any{}
	for _, s := range page.body["submissions"].([]any) {
		marked[s.(map[string]any)["id"].(string)] = s.(map[string]any)["final"]
	}
	if marked[a3.ID] != "selected" || marked[a1.ID] != nil {
		t.Fatalf("the public team page marks %v", marked)
	}

	// At most 2; another team's submission is not found; a failed one is
	// not a final.
	if a := h.json(http.MethodPost, "/api/v1/submissions/"+a1.ID+"/final", alpha, nil); a.status != 200 {
		t.Fatalf("select a1: %d %s", a.status, a.raw)
	}
	if a := h.json(http.MethodPost, "/api/v1/submissions/"+a2.ID+"/final", alpha, nil); a.status != 409 || a.errorCode() != "too_many_finals" {
		t.Fatalf("a third final: %d %s", a.status, a.raw)
	}
	if a := h.json(http.MethodPost, "/api/v1/submissions/"+a2.ID+"/final", beta, nil); a.status != 404 {
		t.Fatalf("beta selecting alpha's submission: %d %s", a.status, a.raw)
	}
	team, _ := h.st.TeamByName(ctx, "alpha")
	failed, _ := h.st.Enqueue(ctx, "mnist", team, "abc", 1)
	failed, _, _ = h.st.Start(ctx, failed.ID, "w")
	if _, err := h.st.Finish(ctx, failed, store.Result{Status: store.StatusFailed, Reason: "crashed"}); err != nil {
		t.Fatal(err)
	}
	if a := h.json(http.MethodPost, "/api/v1/submissions/"+failed.ID+"/final", alpha, nil); a.status != 409 || a.errorCode() != "not_scored" {
		t.Fatalf("selecting a failed submission: %d %s", a.status, a.raw)
	}

	// Unselecting a3 leaves a1 (private 0.70).
	if a := h.json(http.MethodDelete, "/api/v1/submissions/"+a3.ID+"/final", alpha, nil); a.status != 200 || a.body["changed"] != true {
		t.Fatalf("unselect a3: %d %s", a.status, a.raw)
	}
	if team, _ := leader(); team != "beta" {
		t.Fatalf("after unselecting a3 the private board is led by %s", team)
	}

	// Once the challenge closes, the finals are fixed.
	ch, _ := h.srv.Challenges.Get("mnist")
	ch.ClosesAt = time.Now().Add(-time.Minute)
	if a := h.json(http.MethodDelete, "/api/v1/submissions/"+a1.ID+"/final", alpha, nil); a.status != 409 || a.errorCode() != "challenge_closed" {
		t.Fatalf("unselecting after the close: %d %s", a.status, a.raw)
	}
}
