package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hackarena/hackarena/platform/redisproc"
	"github.com/hackarena/hackarena/sdk/client"
	"github.com/redis/go-redis/v9"
)

// TestEndToEndTeamsOfPeopleAndModeration: three people through hackctl
// against a real server and judge. One creates a team and invites two;
// one joins, the third is refused at team_size; both members' plugins are
// judged into one team entry and one quota; a removed member's token stops
// working. Then an organizer disqualifies the team: it leaves both boards,
// stays off across a restart and a rebuild, and comes back with its best
// entry when reinstated, every step in the audit log.
func TestEndToEndTeamsOfPeopleAndModeration(t *testing.T) {
	dataDir := t.TempDir()
	env := []string{"HACKARENA_ORGANIZER_PASSWORD=organizer-teams"}
	srv := startServer(t, dataDir, env...)
	srv.waitFor("/readyz")
	org, _, err := client.New(srv.url, "").Login(context.Background(), "organizer", "organizer-teams")
	if err != nil {
		t.Fatal(err)
	}
	putSpec(t, srv.url, org, "mnist", func(spec map[string]any) {
		spec["team_size"] = 2
		spec["limits"].(map[string]any)["submissions_per_day"] = 2
	})
	plugin := buildPlugin(t, "mnist-centroid")

	ann, bob, cat := newHackctl(t, srv), newHackctl(t, srv), newHackctl(t, srv)
	ann.hack("signup", "--name", "ann")
	bob.hack("signup", "--name", "bob")
	cat.hack("signup", "--name", "cat")
	if out := ann.hack("team", "create", "Crew"); !strings.Contains(out, "captain") {
		t.Fatalf("team create: %s", out)
	}
	invite := ann.hack("team", "invite", "--uses", "2", "--expires", "1h")
	code := regexp.MustCompile(`hackctl team join (\S+)`).FindStringSubmatch(invite)
	if code == nil {
		t.Fatalf("no code in %q", invite)
	}
	if out := bob.hack("team", "join", code[1]); !strings.Contains(out, `joined team "Crew"`) {
		t.Fatalf("bob joins: %s", out)
	}
	if out, err := cat.run("team", "join", code[1]); err == nil || !strings.Contains(out, "team_size") {
		t.Fatalf("cat joins a full team: %v\n%s", err, out)
	}
	members := ann.hack("team", "members", "--json")
	var info client.TeamInfo
	if err := json.Unmarshal([]byte(members), &info); err != nil || len(info.Members) != 2 || info.Captain != "ann" {
		t.Fatalf("members: %v %s", err, members)
	}

	// Both submit; the judge scores both; the board has one Crew entry.
	for _, p := range []*hackctlFor{ann, bob} {
		if out := p.hack("submit", "mnist", plugin, "--wait"); !strings.Contains(out, "scored") {
			t.Fatalf("submit: %s", out)
		}
	}
	board := func() []client.Entry {
		t.Helper()
		lb, err := client.New(srv.url, org).Leaderboard(context.Background(), "mnist", "public")
		if err != nil {
			t.Fatal(err)
		}
		return lb.Entries
	}
	if entries := board(); len(entries) != 1 || entries[0].Team != "Crew" {
		t.Fatalf("board: %+v", entries)
	}
	var subs []client.Submission
	if err := json.Unmarshal([]byte(bob.hack("submissions", "--json")), &subs); err != nil || len(subs) != 2 {
		t.Fatalf("bob's view of the team's submissions: %v %+v", err, subs)
	}
	// The team's quota of 2 is spent by the two of them.
	if out, err := bob.run("submit", "mnist", plugin); err == nil || !strings.Contains(out, "2 submissions") {
		t.Fatalf("a third submission of the team: %v\n%s", err, out)
	}
	// A removed member's token stops working.
	ann.hack("team", "remove", "bob")
	if out, err := bob.run("whoami"); err == nil || !strings.Contains(out, "no longer") {
		t.Fatalf("bob after his removal: %v\n%s", err, out)
	}

	// The organizers disqualify Crew.
	boss := newHackctl(t, srv)
	boss.hack("login", "--name", "organizer", "--password", "organizer-teams")
	boss.hack("moderate", "disqualify", "mnist", "Crew", "--reason", "one person, two accounts")
	if entries := board(); len(entries) != 0 {
		t.Fatalf("board after the disqualification: %+v", entries)
	}
	if out := ann.hack("whoami"); !strings.Contains(out, "one person, two accounts") {
		t.Fatalf("the team is not told: %s", out)
	}
	// Across a restart, and the rebuild a restart does not need.
	srv.stop(syscall.SIGTERM)
	srv = startServer(t, dataDir, env...)
	boss.url, ann.url = srv.url, srv.url
	if entries := board(); len(entries) != 0 {
		t.Fatalf("board after a restart: %+v", entries)
	}
	if _, err := client.New(srv.url, org).Leaderboard(context.Background(), "mnist", "private"); err != nil {
		t.Fatal(err)
	}
	boss.hack("moderate", "reinstate", "mnist", "Crew", "--reason", "appeal upheld")
	entries := board()
	if len(entries) != 1 || entries[0].Team != "Crew" {
		t.Fatalf("board after reinstating: %+v", entries)
	}
	// Excluding the entry's submission ranks the team by its other one, and
	// the team sees why.
	best := entries[0].SubmissionID
	boss.hack("moderate", "exclude", best, "--reason", "sent after the deadline by mail")
	if entries := board(); len(entries) != 1 || entries[0].SubmissionID == best {
		t.Fatalf("board after excluding %s: %+v", best, entries)
	}
	if out := ann.hack("status", best); !strings.Contains(out, "excluded from ranking") || !strings.Contains(out, "sent after the deadline by mail") {
		t.Fatalf("the excluded submission's status: %s", out)
	}
	audit := boss.hack("audit")
	for _, want := range []string{"disqualify", "one person, two accounts", "reinstate", "appeal upheld", "exclude", "spec_change"} {
		if !strings.Contains(audit, want) {
			t.Fatalf("audit log lacks %q:\n%s", want, audit)
		}
	}
}

// TestEndToEndDataOfTheSingleAccountVersionIsKept starts this version on
// Redis data the version before members wrote (testdata/v1-teams,
// recorded by its record.sh): single-account teams, their scored
// submissions, a final selection, a changed password and a revealed
// private board. Every team logs in with its old name and password as its
// one member, a token that version issued still works, the boards and
// submissions are as they were, and the old teams can grow.
func TestEndToEndDataOfTheSingleAccountVersionIsKept(t *testing.T) {
	dir := filepath.Join("testdata", "v1-teams")
	var expected struct {
		Teams map[string]struct {
			Password    string   `json:"password"`
			Submissions []string `json:"submissions"`
			Final       string   `json:"final"`
			Token       string   `json:"token"`
		} `json:"teams"`
		OrganizerPassword string         `json:"organizer_password"`
		Public            []client.Entry `json:"public"`
		Private           []client.Entry `json:"private"`
	}
	raw, err := os.ReadFile(filepath.Join(dir, "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &expected); err != nil {
		t.Fatal(err)
	}
	secret, err := os.ReadFile(filepath.Join(dir, "jwt.secret"))
	if err != nil {
		t.Fatal(err)
	}
	redisURL := redisFromSnapshot(t, filepath.Join(dir, "snapshot.rdb"))
	srv := startServer(t, t.TempDir(), "REDIS_URL="+redisURL, "HACKARENA_JWT_SECRET="+strings.TrimSpace(string(secret)),
		"HACKARENA_ORGANIZER_PASSWORD="+expected.OrganizerPassword)
	ctx := context.Background()

	// A token the old version issued works, as the team's one member.
	beta := expected.Teams["beta"]
	old := client.New(srv.url, beta.Token)
	id, err := old.WhoAmI(ctx)
	if err != nil || id.Name != "beta" || id.User.Name != "beta" || !id.Captain {
		t.Fatalf("the old token: %+v, %v", id, err)
	}
	mine, err := old.MySubmissions(ctx)
	if err != nil || len(mine) != 1 || mine[0].ID != beta.Submissions[0] || mine[0].Status != "scored" {
		t.Fatalf("the old token's submissions: %+v, %v", mine, err)
	}

	// Every team logs in by its old name and password, and keeps its
	// submissions and finals.
	for name, team := range expected.Teams {
		token, _, err := client.New(srv.url, "").Login(ctx, name, team.Password)
		if err != nil {
			t.Fatalf("log in as %q: %v", name, err)
		}
		c := client.New(srv.url, token)
		subs, err := c.MySubmissions(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, s := range subs {
			if s.Status != "scored" || s.Metrics == nil || s.Metrics.Public["accuracy"] == 0 {
				t.Fatalf("%s's submission %s lost its result: %+v", name, s.ID, s)
			}
			ids = append(ids, s.ID)
		}
		if !slices.Equal(ids, team.Submissions) {
			t.Fatalf("%s's submissions %v, want %v", name, ids, team.Submissions)
		}
		if team.Final != "" {
			finals, err := c.Finals(ctx, "mnist")
			if err != nil || !finals.Selected || len(finals.Submissions) != 1 || finals.Submissions[0].ID != team.Final {
				t.Fatalf("%s's finals: %+v, %v", name, finals, err)
			}
		}
		info, err := c.TeamInfo(ctx, "me")
		if err != nil || len(info.Members) != 1 || info.Members[0].Name != name || info.Captain != name {
			t.Fatalf("%s as a team of one: %+v, %v", name, info, err)
		}
	}
	// The old password of a team that changed it stays refused.
	if _, _, err := client.New(srv.url, "").Login(ctx, "Old Alpha", "alpha-password-1"); err == nil {
		t.Fatal("the password Old Alpha changed still logs in")
	}

	// The boards are as the old version left them, private included.
	orgToken, _, err := client.New(srv.url, "").Login(ctx, "organizer", expected.OrganizerPassword)
	if err != nil {
		t.Fatalf("the old organizer account: %v", err)
	}
	for board, want := range map[string][]client.Entry{"public": expected.Public, "private": expected.Private} {
		lb, err := client.New(srv.url, "").Leaderboard(ctx, "mnist", board)
		if err != nil {
			t.Fatalf("%s board: %v", board, err)
		}
		if len(lb.Entries) != len(want) {
			t.Fatalf("%s board has %d entries, want %d", board, len(lb.Entries), len(want))
		}
		for i, e := range lb.Entries {
			w := want[i]
			if e.Rank != w.Rank || e.Team != w.Team || e.Score != w.Score || e.SubmissionID != w.SubmissionID {
				t.Fatalf("%s board entry %d is %+v, want %+v", board, i, e, w)
			}
		}
	}
	// A rebuild from the old records gives the same boards.
	if err := rebuiltBoards(ctx, srv.url, orgToken, expected.Public); err != nil {
		t.Fatal(err)
	}

	// An old team grows: its captain invites, a new person joins.
	alphaToken, _, err := client.New(srv.url, "").Login(ctx, "Old Alpha", expected.Teams["Old Alpha"].Password)
	if err != nil {
		t.Fatal(err)
	}
	inv, err := client.New(srv.url, alphaToken).CreateInvite(ctx, 1, "")
	if err != nil {
		t.Fatalf("an old team's invite: %v", err)
	}
	newcomer, err := client.New(srv.url, "").RegisterUser(ctx, "newcomer", "newcomer-password")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := client.New(srv.url, newcomer).JoinTeam(ctx, inv.Code); err != nil {
		t.Fatalf("join an old team: %v", err)
	}
	// A password change through this version revokes the old token.
	if _, _, err := client.New(srv.url, beta.Token).ChangePassword(ctx, beta.Password, "beta-password-2"); err != nil {
		t.Fatal(err)
	}
	var apiErr *client.Error
	if _, err := old.WhoAmI(ctx); !errors.As(err, &apiErr) || apiErr.Code != "token_revoked" {
		t.Fatalf("the old token after a password change: %v", err)
	}
}

// rebuiltBoards reranks mnist's boards from the records and checks the
// public board equals want.
func rebuiltBoards(ctx context.Context, url, org string, want []client.Entry) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/api/v1/challenges/mnist/rejudge", strings.NewReader(`{"mode":"rerank"}`))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+org)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("rerank: %d %s", resp.StatusCode, body)
	}
	lb, err := client.New(url, "").Leaderboard(ctx, "mnist", "public")
	if err != nil {
		return err
	}
	for i, e := range lb.Entries {
		if i >= len(want) || e.Team != want[i].Team || e.SubmissionID != want[i].SubmissionID {
			return fmt.Errorf("after a rebuild the public board is %+v, want %+v", lb.Entries, want)
		}
	}
	return nil
}

// redisFromSnapshot runs a redis-server that loads a copy of an RDB file
// and returns its URL.
func redisFromSnapshot(t *testing.T, snapshot string) string {
	t.Helper()
	dir := t.TempDir()
	data, err := os.ReadFile(snapshot)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "dump.rdb"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	port, err := redisproc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
		"--dbfilename", "dump.rdb", "--appendonly", "no", "--save", "")
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server (make test installs it): %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	url := fmt.Sprintf("redis://127.0.0.1:%d/0", port)
	rdb := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port)})
	defer rdb.Close()
	for deadline := time.Now().Add(20 * time.Second); ; {
		n, err := rdb.DBSize(context.Background()).Result()
		if err == nil && n > 0 {
			return url
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server did not load %s: %d keys, %v", snapshot, n, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
