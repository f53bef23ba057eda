package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hackarena/hackarena/challenges"
	"github.com/hackarena/hackarena/internal/redistest"
	"github.com/hackarena/hackarena/platform/store"
	"github.com/hackarena/hackarena/sdk/client"
)

// putSpec sends challenges/<slug>/challenge.json, changed by edit, as the
// organizers' new spec.
func putSpec(t *testing.T, url, token, slug string, edit func(map[string]any)) {
	t.Helper()
	putSpecAs(t, url, token, slug, slug, edit)
}

// putSpecAs sends challenges/<from>/challenge.json, changed by edit, as the
// organizers' spec of slug (a new challenge when from is another).
func putSpecAs(t *testing.T, url, token, from, slug string, edit func(map[string]any)) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repoRoot, "challenges", from, "challenge.json"))
	if err != nil {
		t.Fatal(err)
	}
	var spec map[string]any
	if err := json.Unmarshal(raw, &spec); err != nil {
		t.Fatal(err)
	}
	delete(spec, "description_file")
	spec["description"] = "soak"
	edit(spec)
	body, _ := json.Marshal(spec)
	req, _ := http.NewRequest(http.MethodPut, url+"/api/v1/challenges/"+slug, strings.NewReader(string(body)))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT %s: %d %s", slug, resp.StatusCode, answer)
	}
}

// holdingRun waits until the judge named worker holds a running job and
// signals it with sig while it does (a run that ended in between is
// retried), returning the submission it held.
func holdingRun(t *testing.T, st *store.Store, j *server, worker string, sig syscall.Signal) string {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		held := func() string {
			view, err := st.Queue(ctx, "mnist")
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range view.Running {
				if e.Worker == worker && e.Status == store.StatusRunning {
					return e.SubmissionID
				}
			}
			return ""
		}
		id := held()
		if id == "" {
			time.Sleep(5 * time.Millisecond)
			continue
		}
		if err := j.cmd.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
		if sig == syscall.SIGKILL {
			<-j.done
		} else {
			// kill returns once the signal is queued; the judge may run on
			// (and finish its run) until it is really stopped.
			waitStopped(t, j.cmd.Process.Pid)
		}
		// The judge is frozen or dead now: what it holds stays as it is.
		if held() == id {
			return id
		}
		if sig == syscall.SIGSTOP {
			_ = j.cmd.Process.Signal(syscall.SIGCONT)
		} else {
			t.Fatalf("%s was killed after its run %s ended; the fault missed", worker, id)
		}
	}
	t.Fatalf("%s never held a running job", worker)
	return ""
}

// waitStopped waits until process pid is in the stopped state.
func waitStopped(t *testing.T, pid int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			t.Fatal(err)
		}
		// The state follows the command name, which is in parentheses.
		if i := bytes.LastIndexByte(stat, ')'); i > 0 && i+2 < len(stat) && (stat[i+2] == 'T' || stat[i+2] == 't') {
			return
		}
	}
	t.Fatalf("process %d did not stop within 10 s of SIGSTOP", pid)
}

// TestEndToEndSoakTwoJudgesFaultsExactlyOnce: 100 submissions through two
// judge processes, one frozen (SIGSTOP) past its lease mid-run and resumed,
// the other killed (SIGKILL) mid-run and restarted, and the organizers
// changing the ranking metric half-way. Every submission ends exactly
// once: one record, one final event, board entries equal to a rebuild
// from the records under the new metric, quota counters equal to
// submissions less refunds, and the frozen judge's late result refused.
func TestEndToEndSoakTwoJudgesFaultsExactlyOnce(t *testing.T) {
	ctx := context.Background()
	rdb, redisURL := redistest.Start(t)
	st := store.New(rdb)
	dataDir := t.TempDir()
	api := startServer(t, dataDir, "REDIS_URL="+redisURL, "HACKARENA_WORKERS=0", "HACKARENA_ORGANIZER_PASSWORD=organizer-soak")
	orgToken, _, err := client.New(api.url, "").Login(ctx, "organizer", "organizer-soak")
	if err != nil {
		t.Fatal(err)
	}
	const lease = 3 * time.Second
	judge := func(name string) *server {
		return launch(t, []string{"judge"}, "HACKARENA_DATA_DIR="+dataDir, "REDIS_URL="+redisURL,
			"HACKARENA_WORKER_NAME="+name, "HACKARENA_JUDGE_LEASE="+lease.String(), "HACKARENA_ENGINE_SLOTS=1")
	}
	const teams, each = 5, 20
	plugin := buildPlugin(t, "mnist-centroid")
	var ids []string
	for i := range teams {
		c := register(t, api.url, fmt.Sprintf("soak-%d", i))
		for range each {
			sub, err := c.Submit(ctx, "mnist", plugin)
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, sub.ID)
		}
	}
	// The judges start once everything is queued, so the faults below
	// land while there is work left, however slow the uploads were.
	j1, j2 := judge("j1"), judge("j2")
	api.waitFor("/readyz")
	finals := func() int {
		n := 0
		for _, id := range ids {
			if sub, err := st.Submission(ctx, id); err == nil && sub.Final() {
				n++
			}
		}
		return n
	}
	waitFinals := func(n int, within time.Duration) {
		t.Helper()
		deadline := time.Now().Add(within)
		for finals() < n {
			if time.Now().After(deadline) {
				t.Fatalf("%d of %d submissions final after %s", finals(), len(ids), within)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	// j1 frozen mid-run past its lease: j2 takes the job over.
	waitFinals(5, 2*time.Minute)
	frozen := holdingRun(t, st, j1, "j1", syscall.SIGSTOP)
	deadline := time.Now().Add(time.Minute)
	for {
		sub, _ := st.Submission(ctx, frozen)
		if sub.Attempts >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the frozen judge's job %s was not taken over within a minute: %+v", frozen, sub)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(lease)
	if err := j1.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}

	// The ranking metric changes half-way, with runs in flight.
	waitFinals(len(ids)/2, 3*time.Minute)
	putSpec(t, api.url, orgToken, "mnist", func(spec map[string]any) { spec["primary_metric"] = "macro_f1" })

	// j2 killed mid-run, and started again under its name.
	killed := holdingRun(t, st, j2, "j2", syscall.SIGKILL)
	judge("j2")
	waitFinals(len(ids), 5*time.Minute)

	// One record per submission, all scored (no fault was the plugin's).
	scored, err := st.ScoredSubmissions(ctx, "mnist")
	if err != nil {
		t.Fatal(err)
	}
	if len(scored) != len(ids) {
		t.Fatalf("%d scored records for %d submissions", len(scored), len(ids))
	}
	var attempts int
	for _, id := range ids {
		sub, err := st.Submission(ctx, id)
		if err != nil || sub.Status != store.StatusScored {
			t.Fatalf("submission %s: %s %s %v", id, sub.Status, sub.Message, err)
		}
		attempts += sub.Attempts
	}
	t.Logf("%d submissions judged in %d attempts; frozen job %s, killed job %s", len(ids), attempts, frozen, killed)

	// One final event per submission.
	events, err := st.EventsAfter(ctx, "0", 100000)
	if err != nil {
		t.Fatal(err)
	}
	final := map[string]int{}
	for _, e := range events {
		if e.Type != "submission" {
			continue
		}
		var se store.SubmissionEvent
		if err := json.Unmarshal(e.Data, &se); err != nil {
			t.Fatal(err)
		}
		if se.Status == store.StatusScored || se.Status == store.StatusFailed {
			final[se.ID]++
		}
	}
	for _, id := range ids {
		if final[id] != 1 {
			t.Errorf("submission %s has %d final events", id, final[id])
		}
	}

	// The boards rank by the new metric and equal a rebuild from the
	// records.
	if metric, _, _ := st.BoardRules(ctx, "mnist"); metric != "macro_f1" {
		t.Errorf("the boards rank by %q after the change to macro_f1", metric)
	}
	rep, err := st.RebuildBoards(ctx, "mnist", store.Rules{Metric: "macro_f1", HigherIsBetter: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range rep.Boards {
		if len(b.Changes) != 0 || b.Entries != teams {
			t.Errorf("the %s board (%d entries) differs from a rebuild from the records: %+v", b.Board, b.Entries, b.Changes)
		}
	}
	if len(rep.MissingMetric) != 0 {
		t.Errorf("scored without the primary metric: %v", rep.MissingMetric)
	}

	// Quota counters: submissions less refunds, per team and UTC day.
	if mismatches, err := st.QuotaMismatches(ctx, "mnist", scored); err != nil || len(mismatches) > 0 {
		t.Errorf("quota counters: %v %v", mismatches, err)
	}

	// The frozen judge woke to find its run fenced off.
	if !strings.Contains(j1.logs.String(), "another judge's attempt is current") {
		t.Errorf("the frozen judge's late run was not refused; its log:\n%s", j1.logs.String())
	}
}

// TestEndToEndASpecChangeWhoseRebuildWasLostIsFinishedByARunningServer: an
// organizer's spec change written to Redis by a server that died before
// rebuilding the boards (written here with the store, as that server did)
// is finished by another running server within a few seconds, with no
// restart, PUT or judged submission to prompt it.
func TestEndToEndASpecChangeWhoseRebuildWasLostIsFinishedByARunningServer(t *testing.T) {
	ctx := context.Background()
	rdb, redisURL := redistest.Start(t)
	st := store.New(rdb)
	srv := startServer(t, t.TempDir(), "REDIS_URL="+redisURL)
	srv.waitFor("/readyz")
	c := register(t, srv.url, "lost-rebuild")
	queued, err := c.Submit(ctx, "mnist", buildPlugin(t, "mnist-centroid"))
	if err != nil {
		t.Fatal(err)
	}
	if sub := waitFinal(t, c, queued.ID, 2*time.Minute); sub.Status != "scored" {
		t.Fatalf("%+v", sub)
	}
	if metric, _, _ := st.BoardRules(ctx, "mnist"); metric != "accuracy" {
		t.Fatalf("the boards rank by %q before the change", metric)
	}
	raw, err := os.ReadFile(filepath.Join(repoRoot, "challenges", "mnist", "challenge.json"))
	if err != nil {
		t.Fatal(err)
	}
	spec, err := challenges.DecodeSpec("mnist", bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	spec.DescriptionFile, spec.Description, spec.PrimaryMetric = "", "changed", "macro_f1"
	if _, err := st.PutChallengeSpec(ctx, "mnist", spec); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		metric, _, _ := st.BoardRules(ctx, "mnist")
		if metric == "macro_f1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("30 s after the spec change the boards still rank by %q", metric)
		}
		time.Sleep(100 * time.Millisecond)
	}
	board, err := c.Leaderboard(ctx, "mnist", "public")
	if err != nil || len(board.Entries) != 1 {
		t.Fatalf("board after the repair: %+v %v", board, err)
	}
	sub, _ := st.Submission(ctx, queued.ID)
	if board.Entries[0].Score != sub.Metrics.Public["macro_f1"] {
		t.Fatalf("the repaired board scores %v, the record's macro_f1 is %v", board.Entries[0].Score, sub.Metrics.Public["macro_f1"])
	}
}
