package api

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hackarena/hackarena/platform/store"
)

// person registers a user with no team and returns their token.
func (h *harness) person(name string) string {
	h.t.Helper()
	a := h.json(http.MethodPost, "/api/v1/users", "", map[string]string{"name": name, "password": "correct horse"})
	if a.status != http.StatusCreated {
		h.t.Fatalf("register %s: %d %s", name, a.status, a.raw)
	}
	return a.body["token"].(string)
}

// finish scores a queued submission as a judge does.
func (h *harness) finish(id string, public, private float64) {
	h.t.Helper()
	ctx := context.Background()
	sub, err := h.st.Submission(ctx, id)
	if err != nil {
		h.t.Fatal(err)
	}
	if sub, _, err = h.st.Start(ctx, sub.ID, "w"); err != nil {
		h.t.Fatal(err)
	}
	ch, _ := h.srv.Challenges.Get(sub.Challenge)
	if _, err := h.st.FinishRun(ctx, sub, store.Result{Status: store.StatusScored,
		Metrics: &store.Metrics{Public: map[string]float64{"accuracy": public}, Private: map[string]float64{"accuracy": private}},
		Ranking: &store.Ranking{Rules: store.RulesOf(ch), Revision: ch.Revision}}); err != nil {
		h.t.Fatal(err)
	}
}

func boardTeams(t *testing.T, a answer) []string {
	t.Helper()
	if a.status != 200 {
		t.Fatalf("board: %d %s", a.status, a.raw)
	}
	var teams []string
	for _, e := range a.body["entries"].([]any) {
		teams = append(teams, e.(map[string]any)["team"].(string))
	}
	return teams
}

func TestThreePeopleOneTeamWithinItsSize(t *testing.T) {
	h := newHarness(t, 64<<20)
	org := h.organizer()
	spec := builtinSpec(t, "mnist")
	spec["team_size"] = 2
	spec["limits"].(map[string]any)["submissions_per_day"] = 3
	h.putSpec(org, "mnist", spec)

	// Names that are paths under /api/v1/teams/ are no one's.
	for _, name := range []string{"me", "join", "Organizer"} {
		if a := h.json(http.MethodPost, "/api/v1/users", "", map[string]string{"name": name, "password": "correct horse"}); a.status != 409 || a.errorCode() != "name_taken" {
			t.Fatalf("a person named %q: %d %s", name, a.status, a.raw)
		}
	}
	ann := h.person("ann")
	// In no team yet: nothing to submit for.
	if a := h.uploadTo("mnist", ann, staticBinary(t)); a.status != 403 || a.errorCode() != "no_team" || !strings.Contains(string(a.raw), "team join") {
		t.Fatalf("a teamless upload: %d %s", a.status, a.raw)
	}
	created := h.json(http.MethodPost, "/api/v1/teams", ann, map[string]string{"name": "Crew"})
	if created.status != 201 {
		t.Fatalf("create team: %d %s", created.status, created.raw)
	}
	// The token of no team stopped working; the answer's works.
	if a := h.json(http.MethodGet, "/api/v1/teams/me", ann, nil); a.status != 401 || a.errorCode() != "token_revoked" {
		t.Fatalf("old token after creating a team: %d %s", a.status, a.raw)
	}
	ann = created.body["token"].(string)
	inv := h.json(http.MethodPost, "/api/v1/teams/Crew/invites", ann, map[string]any{"max_uses": 2, "expires_in": "1h"})
	if inv.status != 201 {
		t.Fatalf("invite: %d %s", inv.status, inv.raw)
	}
	code := inv.body["invite"].(map[string]any)["code"].(string)

	bob := h.person("bob")
	// Only the captain invites, and only to their own team.
	if a := h.json(http.MethodPost, "/api/v1/teams/Crew/invites", bob, nil); a.status != 403 || a.errorCode() != "no_team" {
		t.Fatalf("a stranger invites: %d %s", a.status, a.raw)
	}
	joined := h.json(http.MethodPost, "/api/v1/teams/join", bob, map[string]string{"code": code})
	if joined.status != 200 || joined.body["team"].(map[string]any)["name"] != "Crew" {
		t.Fatalf("bob joins: %d %s", joined.status, joined.raw)
	}
	bob = joined.body["token"].(string)
	if a := h.json(http.MethodPost, "/api/v1/teams/Crew/invites", bob, nil); a.status != 403 || a.errorCode() != "not_captain" {
		t.Fatalf("a member who is not captain invites: %d %s", a.status, a.raw)
	}

	cat := h.person("cat")
	full := h.json(http.MethodPost, "/api/v1/teams/join", cat, map[string]string{"code": code})
	if full.status != 409 || full.errorCode() != "team_full" || !strings.Contains(string(full.raw), "team_size") {
		t.Fatalf("a third joins a team of 2: %d %s", full.status, full.raw)
	}
	if a := h.json(http.MethodPost, "/api/v1/teams/join", cat, map[string]string{"code": "nonsense"}); a.status != 404 || a.errorCode() != "invalid_invite" {
		t.Fatalf("a wrong code: %d %s", a.status, a.raw)
	}

	// Both members submit; one team entry; one quota of 3 between them.
	first := h.uploadTo("mnist", ann, staticBinary(t))
	second := h.uploadTo("mnist", bob, staticBinary(t))
	if first.status != 202 || second.status != 202 {
		t.Fatalf("uploads: %d %s / %d %s", first.status, first.raw, second.status, second.raw)
	}
	annSub := first.body["submission"].(map[string]any)
	bobSub := second.body["submission"].(map[string]any)
	if annSub["member"] != "ann" || bobSub["member"] != "bob" || annSub["team"] != "Crew" || bobSub["team"] != "Crew" {
		t.Fatalf("submissions record their member: %v / %v", annSub, bobSub)
	}
	h.finish(annSub["id"].(string), 0.81, 0.80)
	h.finish(bobSub["id"].(string), 0.85, 0.84)
	if teams := boardTeams(t, h.json(http.MethodGet, "/api/v1/challenges/mnist/leaderboard", "", nil)); len(teams) != 1 || teams[0] != "Crew" {
		t.Fatalf("the board shows %v, want one entry of Crew", teams)
	}
	if a := h.uploadTo("mnist", bob, staticBinary(t)); a.status != 202 {
		t.Fatalf("third upload: %d %s", a.status, a.raw)
	}
	if a := h.uploadTo("mnist", ann, staticBinary(t)); a.status != 429 || a.errorCode() != "quota_exceeded" {
		t.Fatalf("the fourth upload of the team's 3: %d %s", a.status, a.raw)
	}
	// Each member sees the team's submissions.
	if a := h.json(http.MethodGet, "/api/v1/submissions/"+annSub["id"].(string), bob, nil); a.status != 200 {
		t.Fatalf("bob reads ann's submission: %d %s", a.status, a.raw)
	}

	members := h.json(http.MethodGet, "/api/v1/teams/Crew", "", nil)
	view := members.body["team"].(map[string]any)
	if members.status != 200 || view["captain"] != "ann" || len(view["members"].([]any)) != 2 {
		t.Fatalf("members: %d %s", members.status, members.raw)
	}

	// The captain cannot leave a team with members; bob cannot remove ann.
	if a := h.json(http.MethodPost, "/api/v1/teams/me/leave", ann, nil); a.status != 409 || a.errorCode() != "captain_must_hand_over" {
		t.Fatalf("the captain leaves: %d %s", a.status, a.raw)
	}
	if a := h.json(http.MethodDelete, "/api/v1/teams/me/members/ann", bob, nil); a.status != 403 || a.errorCode() != "not_captain" {
		t.Fatalf("bob removes ann: %d %s", a.status, a.raw)
	}
	// A removed member's token stops working at once.
	if a := h.json(http.MethodDelete, "/api/v1/teams/me/members/bob", ann, nil); a.status != 200 {
		t.Fatalf("ann removes bob: %d %s", a.status, a.raw)
	}
	for _, path := range []string{"/api/v1/teams/me", "/api/v1/teams/me/submissions"} {
		if a := h.json(http.MethodGet, path, bob, nil); a.status != 401 || a.errorCode() != "token_revoked" || !strings.Contains(string(a.raw), "Crew") {
			t.Fatalf("bob's old token at %s: %d %s", path, a.status, a.raw)
		}
	}
	if a := h.uploadTo("mnist", bob, staticBinary(t)); a.status != 401 {
		t.Fatalf("bob's old token uploads: %d %s", a.status, a.raw)
	}
	// He logs in again, to no team; the submissions he sent stay Crew's.
	again := h.login("bob", "correct horse")
	if again.status != 200 || again.body["team"] != nil {
		t.Fatalf("bob logs in: %d %s", again.status, again.raw)
	}
	if a := h.json(http.MethodGet, "/api/v1/submissions/"+bobSub["id"].(string), again.body["token"].(string), nil); a.status != 404 {
		t.Fatalf("bob reads Crew's submission after leaving: %d %s", a.status, a.raw)
	}
	if a := h.json(http.MethodGet, "/api/v1/submissions/"+bobSub["id"].(string), ann, nil); a.status != 200 || a.body["submission"].(map[string]any)["member"] != "bob" {
		t.Fatalf("ann reads bob's submission: %d %s", a.status, a.raw)
	}
	// The freed place is cat's, with the invite's use it did not spend.
	if a := h.json(http.MethodPost, "/api/v1/teams/join", cat, map[string]string{"code": code}); a.status != 200 {
		t.Fatalf("cat joins after bob left: %d %s", a.status, a.raw)
	}
	// Used up now.
	dan := h.person("dan")
	if a := h.json(http.MethodPost, "/api/v1/teams/join", dan, map[string]string{"code": code}); a.status != 404 || a.errorCode() != "invalid_invite" {
		t.Fatalf("a used-up invite: %d %s", a.status, a.raw)
	}
	// Handing over lets the old captain leave.
	if a := h.json(http.MethodPost, "/api/v1/teams/me/captain", ann, map[string]string{"user": "cat"}); a.status != 200 {
		t.Fatalf("hand over: %d %s", a.status, a.raw)
	}
	left := h.json(http.MethodPost, "/api/v1/teams/me/leave", ann, nil)
	if left.status != 200 {
		t.Fatalf("ann leaves: %d %s", left.status, left.raw)
	}
	if a := h.json(http.MethodGet, "/api/v1/teams/me", left.body["token"].(string), nil); a.status != 200 || a.body["team"] != nil || a.body["user"].(map[string]any)["name"] != "ann" {
		t.Fatalf("ann after leaving: %d %s", a.status, a.raw)
	}
}

func TestModerationIsVisibleAndAudited(t *testing.T) {
	h := newHarness(t, 64<<20)
	org := h.organizer()
	if a := h.json(http.MethodPut, "/api/v1/challenges/mnist?reason=typo", org, builtinSpec(t, "mnist")); a.status != 200 {
		t.Fatalf("put spec: %d %s", a.status, a.raw)
	}
	alpha, beta := h.register("alpha"), h.register("beta")
	up := func(token string) string {
		a := h.uploadTo("mnist", token, staticBinary(t))
		if a.status != 202 {
			t.Fatalf("upload: %d %s", a.status, a.raw)
		}
		return a.body["submission"].(map[string]any)["id"].(string)
	}
	a1, a2, b1 := up(alpha), up(alpha), up(beta)
	h.finish(a1, 0.95, 0.90)
	h.finish(a2, 0.85, 0.95)
	h.finish(b1, 0.90, 0.85)
	if a := h.json(http.MethodPost, "/api/v1/challenges/mnist/reveal?reason=the+end", org, nil); a.status != 200 {
		t.Fatalf("reveal: %d %s", a.status, a.raw)
	}
	boards := func() (public, private []string) {
		return boardTeams(t, h.json(http.MethodGet, "/api/v1/challenges/mnist/leaderboard?board=public", "", nil)),
			boardTeams(t, h.json(http.MethodGet, "/api/v1/challenges/mnist/leaderboard?board=private", "", nil))
	}
	if pub, priv := boards(); strings.Join(pub, ",") != "alpha,beta" || strings.Join(priv, ",") != "alpha,beta" {
		t.Fatalf("boards before: %v %v", pub, priv)
	}

	// Participants cannot moderate; a reason is required.
	if a := h.json(http.MethodPost, "/api/v1/challenges/mnist/disqualifications", beta, map[string]string{"team": "alpha", "reason": "x"}); a.status != 403 {
		t.Fatalf("a participant disqualifies: %d %s", a.status, a.raw)
	}
	if a := h.json(http.MethodPost, "/api/v1/challenges/mnist/disqualifications", org, map[string]string{"team": "alpha"}); a.status != 400 || a.errorCode() != "reason_required" {
		t.Fatalf("no reason: %d %s", a.status, a.raw)
	}
	events, err := h.st.EventsAfter(context.Background(), "0", 10_000)
	if err != nil {
		t.Fatal(err)
	}
	dq := h.json(http.MethodPost, "/api/v1/challenges/mnist/disqualifications", org, map[string]string{"team": "alpha", "reason": "shared accounts"})
	if dq.status != 200 {
		t.Fatalf("disqualify: %d %s", dq.status, dq.raw)
	}
	if pub, priv := boards(); strings.Join(pub, ",") != "beta" || strings.Join(priv, ",") != "beta" {
		t.Fatalf("boards after disqualifying alpha: %v %v", pub, priv)
	}
	after, err := h.st.EventsAfter(context.Background(), events[len(events)-1].ID, 100)
	if err != nil {
		t.Fatal(err)
	}
	if !containsEvent(after, "leaderboard", `"beta"`) || containsEvent(after, "leaderboard", `"alpha"`) {
		t.Fatalf("no board event without alpha after the disqualification: %v", after)
	}
	// The team sees why, on its page and when it submits; a result judged
	// now reaches no board; a rebuild keeps it off.
	page := h.json(http.MethodGet, "/api/v1/teams/alpha", "", nil)
	if d := page.body["team"].(map[string]any)["disqualified"].([]any); len(d) != 1 || d[0].(map[string]any)["reason"] != "shared accounts" {
		t.Fatalf("the team page: %s", page.raw)
	}
	if a := h.uploadTo("mnist", alpha, staticBinary(t)); a.status != 403 || a.errorCode() != "disqualified" || !strings.Contains(string(a.raw), "shared accounts") {
		t.Fatalf("a disqualified team uploads: %d %s", a.status, a.raw)
	}
	late, err := h.st.Enqueue(context.Background(), "mnist", mustTeam(t, h, "alpha"), "abc", 1)
	if err != nil {
		t.Fatal(err)
	}
	h.finish(late.ID, 0.99, 0.99)
	if a := h.json(http.MethodPost, "/api/v1/challenges/mnist/rejudge", org, map[string]string{"mode": "rerank"}); a.status != 200 {
		t.Fatalf("rerank: %d %s", a.status, a.raw)
	}
	if pub, priv := boards(); strings.Join(pub, ",") != "beta" || strings.Join(priv, ",") != "beta" {
		t.Fatalf("boards after a result and a rebuild: %v %v", pub, priv)
	}
	board := h.json(http.MethodGet, "/api/v1/challenges/mnist/leaderboard", "", nil)
	if d := board.body["disqualified"].([]any); len(d) != 1 || d[0].(map[string]any)["team"] != "alpha" {
		t.Fatalf("the board lists whom it leaves out: %s", board.raw)
	}

	// Reinstated, alpha is back with its best (the late 0.99 too).
	if a := h.json(http.MethodDelete, "/api/v1/challenges/mnist/disqualifications/alpha?reason=appeal+upheld", org, nil); a.status != 200 {
		t.Fatalf("reinstate: %d %s", a.status, a.raw)
	}
	lb := h.json(http.MethodGet, "/api/v1/challenges/mnist/leaderboard", "", nil)
	top := lb.body["entries"].([]any)[0].(map[string]any)
	if top["team"] != "alpha" || top["submission_id"] != late.ID {
		t.Fatalf("after reinstating: %s", lb.raw)
	}

	// Excluding the late result ranks alpha by a1 again; its view says why.
	if a := h.json(http.MethodPost, "/api/v1/submissions/"+late.ID+"/exclusion", org, map[string]string{"reason": "judged while disqualified"}); a.status != 200 {
		t.Fatalf("exclude: %d %s", a.status, a.raw)
	}
	lb = h.json(http.MethodGet, "/api/v1/challenges/mnist/leaderboard", "", nil)
	if top := lb.body["entries"].([]any)[0].(map[string]any); top["submission_id"] != a1 {
		t.Fatalf("after excluding: %s", lb.raw)
	}
	view := h.json(http.MethodGet, "/api/v1/submissions/"+late.ID, alpha, nil)
	if ex, _ := view.body["submission"].(map[string]any)["excluded"].(map[string]any); ex["reason"] != "judged while disqualified" {
		t.Fatalf("the excluded submission's view: %s", view.raw)
	}
	if a := h.json(http.MethodDelete, "/api/v1/submissions/"+late.ID+"/exclusion", org, nil); a.status != 200 {
		t.Fatalf("include: %d %s", a.status, a.raw)
	}

	// A locked login: the token and the password stop working, with the reason.
	if a := h.json(http.MethodPost, "/api/v1/users/beta/lock", org, map[string]string{"reason": "abusive messages"}); a.status != 200 {
		t.Fatalf("lock: %d %s", a.status, a.raw)
	}
	if a := h.json(http.MethodGet, "/api/v1/teams/me", beta, nil); a.status != 403 || a.errorCode() != "account_locked" || !strings.Contains(string(a.raw), "abusive messages") {
		t.Fatalf("a locked user's token: %d %s", a.status, a.raw)
	}
	if a := h.login("beta", "correct horse"); a.status != 403 || a.errorCode() != "account_locked" {
		t.Fatalf("a locked user logs in: %d %s", a.status, a.raw)
	}
	if a := h.json(http.MethodPost, "/api/v1/auth/token", "", map[string]string{"name": "beta", "password": "wrong password"}); a.status != 401 {
		t.Fatalf("a wrong password for a locked user: %d %s", a.status, a.raw)
	}
	if a := h.json(http.MethodDelete, "/api/v1/users/beta/lock", org, nil); a.status != 200 {
		t.Fatalf("unlock: %d %s", a.status, a.raw)
	}
	if a := h.json(http.MethodGet, "/api/v1/teams/me", beta, nil); a.status != 200 {
		t.Fatalf("an unlocked user's token: %d %s", a.status, a.raw)
	}

	// Every step is in the audit log, newest first, with who and why.
	if a := h.json(http.MethodGet, "/api/v1/audit", beta, nil); a.status != 403 {
		t.Fatalf("a participant reads the audit log: %d %s", a.status, a.raw)
	}
	log := h.json(http.MethodGet, "/api/v1/audit", org, nil)
	var got []string
	for _, e := range log.body["entries"].([]any) {
		e := e.(map[string]any)
		if e["actor"] != "organizer" {
			t.Fatalf("entry by %v: %v", e["actor"], e)
		}
		text := func(k string) string { v, _ := e[k].(string); return v }
		got = append(got, text("action")+":"+text("target")+":"+text("reason"))
	}
	want := []string{"unlock:beta:", "lock:beta:abusive messages", "include:" + late.ID + ":", "exclude:" + late.ID + ":judged while disqualified",
		"reinstate:alpha:appeal upheld", "rejudge::", "disqualify:alpha:shared accounts", "reveal::the end", "spec_change::typo"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("audit log\n got %v\nwant %v", got, want)
	}
	only := h.json(http.MethodGet, "/api/v1/audit?action=disqualify&limit=5", org, nil)
	if entries := only.body["entries"].([]any); len(entries) != 1 || entries[0].(map[string]any)["challenge"] != "mnist" {
		t.Fatalf("filtered: %s", only.raw)
	}
}

func mustTeam(t *testing.T, h *harness, name string) store.Team {
	t.Helper()
	team, err := h.st.TeamByName(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return team
}

func containsEvent(events []store.Event, typ, fragment string) bool {
	for _, e := range events {
		if e.Type == typ && strings.Contains(string(e.Data), fragment) {
			return true
		}
	}
	return false
}

func TestAnInviteSaysForHowManyAndHowLong(t *testing.T) {
	h := newHarness(t, 1<<20)
	captain := h.register("crew")
	at := time.Now().Add(2 * time.Hour).UTC().Truncate(time.Second)
	a := h.json(http.MethodPost, "/api/v1/teams/me/invites", captain, map[string]any{"uses": 3, "expires_at": at})
	inv, _ := a.body["invite"].(map[string]any)
	if a.status != 201 || inv["uses_left"] != float64(3) || inv["expires_at"] != at.Format(time.RFC3339) {
		t.Fatalf("invite with uses and expires_at: %d %s", a.status, a.raw)
	}
	for _, bad := range []map[string]any{
		{"expires_in": "1h", "expires_at": at},
		{"expires_in": "5s"},
		{"expires_in": "2400h"},
		{"max_uses": 51},
		{"expires_at": time.Now().Add(-time.Hour)},
	} {
		if a := h.json(http.MethodPost, "/api/v1/teams/me/invites", captain, bad); a.status != 400 || a.errorCode() != "invalid_invite" {
			t.Fatalf("invite %v: %d %s", bad, a.status, a.raw)
		}
	}
}
