package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hackarena/hackarena/platform/redisproc"
	"github.com/hackarena/hackarena/sdk/build"
	"github.com/hackarena/hackarena/sdk/client"
)

// These tests run the real binaries: the hackarena server with its managed
// redis-server and the bubblewrap sandbox, and hackctl, all over HTTP.

const repoRoot = "../../.."

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

// binaries builds hackarena and hackctl once per test run.
func binaries(t testing.TB) (server, hackctl string) {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "hackarena-e2e-bin-")
		if binErr != nil {
			return
		}
		for pkg, name := range map[string]string{".": "hackarena", repoRoot + "/sdk/cmd/hackctl": "hackctl"} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(binDir, name), pkg)
			if name == "hackctl" {
				// Static, as make build builds it: hackctl pack copies it.
				cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			}
			out, err := cmd.CombinedOutput()
			if err != nil {
				binErr = fmt.Errorf("build %s: %v\n%s", name, err, out)
				return
			}
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return filepath.Join(binDir, "hackarena"), filepath.Join(binDir, "hackctl")
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

type server struct {
	t    testing.TB
	cmd  *exec.Cmd
	url  string
	logs *syncWriter
	done chan struct{}
}

// launch runs the hackarena binary with args and env and stops it when the
// test ends, printing its log if the test failed.
func launch(t testing.TB, args []string, env ...string) *server {
	t.Helper()
	bin, _ := binaries(t)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(append(os.Environ(), "HACKARENA_SANDBOX=bwrap", "REDIS_URL="), env...)
	// One writer (one lock) for both streams: exec copies each in its own
	// goroutine.
	s := &server{t: t, cmd: cmd, logs: &syncWriter{w: &bytes.Buffer{}}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = s.logs, s.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		s.stop(syscall.SIGTERM)
		if t.Failed() {
			t.Logf("hackarena %s log:\n%s", strings.Join(args, " "), s.logs.String())
		}
	})
	return s
}

// startServer runs `hackarena serve` on dataDir with a free port and waits
// until it answers path (/healthz, or /readyz to wait for a judge too).
func startServer(t testing.TB, dataDir string, env ...string) *server {
	t.Helper()
	port, err := redisproc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	s := launch(t, []string{"serve"}, append([]string{"HACKARENA_ADDR=" + addr, "HACKARENA_DATA_DIR=" + dataDir}, env...)...)
	s.url = "http://" + addr
	s.waitFor("/healthz")
	return s
}

func (s *server) waitFor(path string) {
	s.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		resp, err := http.Get(s.url + path)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		select {
		case <-s.done:
			s.t.Fatalf("server exited during start:\n%s", s.logs.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s%s did not answer 200 within 90s:\n%s", s.url, path, s.logs.String())
		}
	}
}

func (s *server) stop(sig syscall.Signal) {
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Signal(sig)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
		s.t.Errorf("server did not stop within 30s of %s", sig)
	}
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

// String is everything written so far.
func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.String()
}

func buildPlugin(t *testing.T, name string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), filepath.Base(name))
	if err := build.Plugin(context.Background(), filepath.Join(repoRoot, "plugins", name), out); err != nil {
		t.Fatal(err)
	}
	return out
}

// register creates a team (password: name + "-password") and returns a
// client holding its token.
func register(t *testing.T, url, name string) *client.Client {
	t.Helper()
	_, token, err := client.New(url, "").Register(context.Background(), name, name+"-password")
	if err != nil {
		t.Fatalf("register %s: %v", name, err)
	}
	return client.New(url, token)
}

func waitFinal(t *testing.T, c *client.Client, id string, within time.Duration) client.Submission {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	sub, err := c.Wait(ctx, id, 200*time.Millisecond, nil)
	if err != nil {
		t.Fatalf("wait for submission %s (last status %q): %v", id, sub.Status, err)
	}
	return sub
}

// hackctlFor runs the built hackctl against srv with its own config file;
// run may be called from any goroutine, hack only from the test's.
type hackctlFor struct {
	t       *testing.T
	bin     string
	url     string
	cfgPath string
	// dir is the working directory of the commands (default: the test's).
	dir string
}

func newHackctl(t *testing.T, srv *server) *hackctlFor {
	_, bin := binaries(t)
	return &hackctlFor{t: t, bin: bin, url: srv.url, cfgPath: filepath.Join(t.TempDir(), "hackctl", "config.json")}
}

func (h *hackctlFor) run(args ...string) (string, error) {
	cmd := exec.Command(h.bin, append([]string{"--server", h.url}, args...)...)
	cmd.Dir = h.dir
	cmd.Env = append(os.Environ(), "HACKARENA_CONFIG="+h.cfgPath, "HACKARENA_PASSWORD=e2e-password")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("hackctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func (h *hackctlFor) hack(args ...string) string {
	h.t.Helper()
	out, err := h.run(args...)
	if err != nil {
		h.t.Fatal(err)
	}
	return out
}

func TestEndToEndHackctlSubmissionReachesLeaderboard(t *testing.T) {
	srv := startServer(t, t.TempDir())
	h := newHackctl(t, srv)
	hack, cfgPath := h.hack, h.cfgPath
	hack("register", "--name", "e2e team")
	if out := hack("login", "--name", "e2e team"); !strings.Contains(out, "logged in") {
		t.Fatalf("hackctl login:\n%s", out)
	}
	if fi, err := os.Stat(cfgPath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file %s: %v, mode %v; want 0600", cfgPath, err, fi.Mode().Perm())
	}
	if out := hack("challenges"); !strings.Contains(out, "mnist") || !strings.Contains(out, "open") {
		t.Fatalf("hackctl challenges:\n%s", out)
	}
	out := hack("submit", "mnist", filepath.Join(repoRoot, "plugins", "mnist-centroid"), "--wait")
	if !strings.Contains(out, "status scored") || !strings.Contains(out, "accuracy=0.8") {
		t.Fatalf("hackctl submit --wait:\n%s", out)
	}

	lb, err := client.New(srv.url, "").Leaderboard(context.Background(), "mnist", "public")
	if err != nil {
		t.Fatal(err)
	}
	if len(lb.Entries) != 1 || lb.Entries[0].Team != "e2e team" || lb.Entries[0].Rank != 1 {
		t.Fatalf("leaderboard: %+v", lb)
	}
	if score := lb.Entries[0].Score; score < 0.80 {
		t.Fatalf("public accuracy %.4f, want ≥ 0.80", score)
	}
	if out := hack("leaderboard", "mnist"); !strings.Contains(out, "e2e team") {
		t.Fatalf("hackctl leaderboard:\n%s", out)
	}

	// Finals: by default the best by public score; selected, then cleared.
	id := lb.Entries[0].SubmissionID
	if out := hack("final", "--list", "mnist"); !strings.Contains(out, "none selected: your best 2 by public score count") || !strings.Contains(out, id) {
		t.Fatalf("hackctl final --list:\n%s", out)
	}
	if out := hack("final", id); !strings.Contains(out, "selected by your team (at most 2)") || !strings.Contains(out, id) {
		t.Fatalf("hackctl final ID:\n%s", out)
	}
	if out := hack("submissions", "mnist"); !strings.Contains(out, "FINAL") || !strings.Contains(out, "selected") {
		t.Fatalf("hackctl submissions after selecting a final:\n%s", out)
	}
	if out := hack("final", "--clear", id); !strings.Contains(out, "none selected") {
		t.Fatalf("hackctl final --clear ID:\n%s", out)
	}
	hack("final", id)
	if out := hack("final", "--clear", "mnist"); !strings.Contains(out, "none selected") {
		t.Fatalf("hackctl final --clear CHALLENGE:\n%s", out)
	}
	if out, err := h.run("final", "no-such-id"); err == nil || !strings.Contains(out, "submission_not_found") && !strings.Contains(out, "no submission") {
		t.Fatalf("hackctl final of an unknown id: %v\n%s", err, out)
	}

	// A signed receipt: saved, checked online and offline, and refused
	// with a byte changed.
	dir := t.TempDir()
	saved := filepath.Join(dir, "receipt.json")
	if out := hack("receipt", id, "-o", saved); !strings.Contains(out, "saved "+saved) || !strings.Contains(out, "judged by") || !strings.Contains(out, "in bwrap") {
		t.Fatalf("hackctl receipt:\n%s", out)
	}
	resp, err := http.Get(srv.url + "/.well-known/hackarena-receipt-key")
	if err != nil {
		t.Fatal(err)
	}
	keyJSON, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	keyFile := filepath.Join(dir, "key.json")
	if err := os.WriteFile(keyFile, keyJSON, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"verify", saved}, {"verify", saved, "--key", keyFile}} {
		if out := hack(args...); !strings.Contains(out, "valid: signed by key") || !strings.Contains(out, "submission "+id) {
			t.Fatalf("hackctl %v:\n%s", args, out)
		}
	}
	var env map[string]any
	raw, _ := os.ReadFile(saved)
	_ = json.Unmarshal(raw, &env)
	payload, _ := base64.StdEncoding.DecodeString(env["payload"].(string))
	payload[len(payload)/2] ^= 1
	env["payload"] = base64.StdEncoding.EncodeToString(payload)
	raw, _ = json.Marshal(env)
	tampered := filepath.Join(dir, "tampered.json")
	if err := os.WriteFile(tampered, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := h.run("verify", tampered, "--key", keyFile); err == nil || !strings.Contains(out, "does not verify") {
		t.Fatalf("hackctl verify of a changed receipt: %v\n%s", err, out)
	}
}

// TestEndToEndEveryChallengeScoresOnBothBoards submits the reference
// plugin of each challenge and finds it on the public board (as a
// spectator) and the private board (as the organizer). It judges in the
// Docker sandbox; the other end-to-end tests use bubblewrap.
func TestEndToEndEveryChallengeScoresOnBothBoards(t *testing.T) {
	srv := startServer(t, t.TempDir(), "HACKARENA_ORGANIZER_PASSWORD=organizer-e2e", "HACKARENA_SANDBOX=docker")
	srv.waitFor("/readyz")
	if !strings.Contains(srv.logs.String(), "sandbox=docker") {
		t.Fatalf("the judge did not start with the docker sandbox:\n%s", srv.logs.String())
	}
	ctx := context.Background()
	team := register(t, srv.url, "reference")
	orgToken, _, err := client.New(srv.url, "").Login(ctx, "organizer", "organizer-e2e")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		slug, plugin, metric string
		min, max             float64
	}{
		{"mnist", "mnist-centroid", "accuracy", 0.80, 0.85},
		{"imdb", "imdb-wordlist", "accuracy", 0.65, 0.85},
		{"houses", "houses-linear", "rmsle", 0.10, 0.30},
	}
	ids := map[string]string{}
	for _, tc := range cases {
		sub, err := team.Submit(ctx, tc.slug, buildPlugin(t, tc.plugin))
		if err != nil {
			t.Fatalf("submit %s: %v", tc.slug, err)
		}
		ids[tc.slug] = sub.ID
	}
	for _, tc := range cases {
		sub := waitFinal(t, team, ids[tc.slug], 3*time.Minute)
		if sub.Status != "scored" {
			t.Fatalf("%s: %s %s: %s", tc.slug, sub.Status, sub.Reason, sub.Message)
		}
		if sub.Metrics.Private != nil {
			t.Fatalf("%s: the team sees its private scores before the reveal", tc.slug)
		}
		for board, token := range map[string]string{"public": "", "private": orgToken} {
			lb, err := client.New(srv.url, token).Leaderboard(ctx, tc.slug, board)
			if err != nil {
				t.Fatalf("%s %s board: %v", tc.slug, board, err)
			}
			if len(lb.Entries) != 1 || lb.Entries[0].SubmissionID != sub.ID || lb.Metric != tc.metric {
				t.Fatalf("%s %s board: %+v", tc.slug, board, lb)
			}
			if s := lb.Entries[0].Score; s < tc.min || s > tc.max {
				t.Errorf("%s %s %s = %.4f, want %.2f..%.2f", tc.slug, board, tc.metric, s, tc.min, tc.max)
			}
			// What the run used, Docker's cgroup peak included.
			if r := lb.Entries[0].Resources; r == nil || r.JudgingSeconds <= 0 || r.ExamplesPerSecond <= 0 || r.PeakMemoryBytes <= 0 || r.BinaryBytes <= 0 {
				t.Errorf("%s %s board entry's resources: %+v", tc.slug, board, r)
			}
			t.Logf("%s %s %s = %.4f", tc.slug, board, tc.metric, lb.Entries[0].Score)
		}
	}
	imdb := waitFinal(t, team, ids["imdb"], time.Second)
	for _, m := range []string{"accuracy", "precision", "recall", "f1", "roc_auc"} {
		if _, ok := imdb.Metrics.Public[m]; !ok {
			t.Errorf("imdb submission lacks %s: %v", m, imdb.Metrics.Public)
		}
	}
}

func TestEndToEndHostileSubmissionsFailClearlyAndJudgeGoesOn(t *testing.T) {
	srv := startServer(t, t.TempDir(), "HACKARENA_RUN_TIMEOUT=5s")
	ctx := context.Background()
	anon := client.New(srv.url, "")
	c := register(t, srv.url, "hostile")

	notELF := filepath.Join(t.TempDir(), "model.py")
	if err := os.WriteFile(notELF, []byte("print('hello')\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := c.Submit(ctx, "mnist", notELF)
	var apiErr *client.Error
	if !errors.As(err, &apiErr) || apiErr.Status != 400 || !strings.Contains(apiErr.Message, "not an ELF executable") {
		t.Fatalf("non-ELF upload: %v", err)
	}

	cases := []struct {
		plugin, reason, message string
	}{
		{"hostile/panic-at-start", "crashed", "panic at start"},
		{"hostile/never-answers", "timeout", "wall-time limit"},
		{"hostile/wrong-count", "bad_output", "returned 999 class predictions"},
		{"hostile/nan-prices", "bad_output", "prediction for example 3 is NaN"},
		// Finite, but its square is not: it used to make the job loop for
		// ever, its result unstorable.
		{"hostile/huge-price", "bad_output", "example 3 (1e+200) makes"},
	}
	ids := make([]string, len(cases))
	for i, tc := range cases {
		slug := "mnist"
		if tc.plugin == "hostile/nan-prices" || tc.plugin == "hostile/huge-price" {
			slug = "houses"
		}
		sub, err := c.Submit(ctx, slug, buildPlugin(t, tc.plugin))
		if err != nil {
			t.Fatalf("submit %s: %v", tc.plugin, err)
		}
		ids[i] = sub.ID
	}
	good, err := c.Submit(ctx, "mnist", buildPlugin(t, "mnist-centroid"))
	if err != nil {
		t.Fatal(err)
	}
	for i, tc := range cases {
		sub := waitFinal(t, c, ids[i], 2*time.Minute)
		if sub.Status != "failed" || sub.Reason != tc.reason || !strings.Contains(sub.Message, tc.message) {
			t.Errorf("%s: %s %s %q; want failed %s mentioning %q", tc.plugin, sub.Status, sub.Reason, sub.Message, tc.reason, tc.message)
		}
	}
	sub := waitFinal(t, c, good.ID, 2*time.Minute)
	if sub.Status != "scored" || sub.Metrics == nil || sub.Metrics.Public["accuracy"] < 0.80 {
		t.Fatalf("good submission after hostile ones: %+v", sub)
	}
	if sub.Metrics.Private != nil {
		t.Fatal("private scores shown to a participant before the reveal")
	}
	lb, err := anon.Leaderboard(ctx, "mnist", "public")
	if err != nil || len(lb.Entries) != 1 || lb.Entries[0].SubmissionID != good.ID || lb.Entries[0].Submissions != 4 {
		t.Fatalf("leaderboard after hostile runs: %+v %v; want only the good submission ranked, 4 entries counted", lb, err)
	}
}

func TestEndToEndSIGKILLWhileQueuedLosesNothing(t *testing.T) {
	dataDir := t.TempDir()
	ctx := context.Background()
	// No judge workers: the submission stays queued while we kill the server.
	first := startServer(t, dataDir, "HACKARENA_WORKERS=0")
	c := register(t, first.url, "survivors")
	queued, err := c.Submit(ctx, "mnist", buildPlugin(t, "mnist-centroid"))
	if err != nil {
		t.Fatal(err)
	}
	if sub, _ := c.Submission(ctx, queued.ID); sub.Status != "queued" || sub.QueuePosition == nil || *sub.QueuePosition != 1 {
		t.Fatalf("before the kill: %+v", sub)
	}
	pidData, err := os.ReadFile(filepath.Join(dataDir, "redis", "redis.pid"))
	if err != nil {
		t.Fatal(err)
	}
	redisPID, _ := strconv.Atoi(strings.TrimSpace(string(pidData)))
	first.stop(syscall.SIGKILL)
	// The managed redis-server must not outlive its owner.
	for i := 0; syscall.Kill(redisPID, 0) == nil; i++ {
		if i > 100 {
			t.Fatalf("redis-server %d still running 10s after the server was killed", redisPID)
		}
		time.Sleep(100 * time.Millisecond)
	}

	second := startServer(t, dataDir)
	c2 := client.New(second.url, c.Token) // the old token still works
	sub := waitFinal(t, c2, queued.ID, 2*time.Minute)
	if sub.Status != "scored" || sub.Team != "survivors" {
		t.Fatalf("after restart: %+v", sub)
	}
	if _, _, err := c2.Login(ctx, "survivors", "survivors-password"); err != nil {
		t.Fatalf("team lost across the restart: %v", err)
	}
}

func TestEndToEndSeparateJudgeProcessScores(t *testing.T) {
	dataDir := t.TempDir()
	api := startServer(t, dataDir, "HACKARENA_WORKERS=0")
	if resp, err := http.Get(api.url + "/readyz"); err != nil || resp.StatusCode != 503 {
		t.Fatalf("readyz without any judge: %v %v; want 503", resp, err)
	}
	launch(t, []string{"judge"}, "HACKARENA_DATA_DIR="+dataDir, "HACKARENA_WORKER_NAME=separate")
	api.waitFor("/readyz")

	ctx := context.Background()
	c := register(t, api.url, "split")
	queued, err := c.Submit(ctx, "mnist", buildPlugin(t, "mnist-centroid"))
	if err != nil {
		t.Fatal(err)
	}
	if sub := waitFinal(t, c, queued.ID, 2*time.Minute); sub.Status != "scored" {
		t.Fatalf("judged by the separate worker: %+v", sub)
	}
}

func TestEndToEndSIGTERMDuringRunGivesTheJobBack(t *testing.T) {
	dataDir := t.TempDir()
	ctx := context.Background()
	first := startServer(t, dataDir, "HACKARENA_RUN_TIMEOUT=2m")
	c := register(t, first.url, "patient")
	hung, err := c.Submit(ctx, "mnist", buildPlugin(t, "hostile/never-answers"))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		sub, err := c.Submission(ctx, hung.ID)
		if err != nil {
			t.Fatal(err)
		}
		if sub.Status == "running" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never started running: %+v", sub)
		}
		time.Sleep(100 * time.Millisecond)
	}
	first.stop(syscall.SIGTERM)

	// Back up without workers: the interrupted run is queued again, with
	// a message, not failed.
	second := startServer(t, dataDir, "HACKARENA_WORKERS=0")
	sub, err := client.New(second.url, c.Token).Submission(ctx, hung.ID)
	if err != nil {
		t.Fatal(err)
	}
	if sub.Status != "queued" || !strings.Contains(sub.Message, "judge stopped") || sub.QueuePosition == nil {
		t.Fatalf("after a graceful stop mid-run: %+v", sub)
	}
}

func TestEndToEndSecondServerOnSameDataDirIsRefused(t *testing.T) {
	dataDir := t.TempDir()
	first := startServer(t, dataDir)
	bin, _ := binaries(t)
	second := exec.Command(bin, "serve")
	second.Env = append(os.Environ(), "HACKARENA_DATA_DIR="+dataDir, "HACKARENA_ADDR=127.0.0.1:0", "REDIS_URL=")
	out, err := second.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "another hackarena serve is running on data dir") {
		t.Fatalf("second server on the same data dir: %v\n%s", err, out)
	}
	first.waitFor("/readyz") // the first one, and its Redis, are untouched
}

// TestEndToEndEngineNetworksScoreThroughHackctl submits the reference
// networks that run on the judge's Engine with hackctl, as a participant
// would, at once to a server with two judges and one engine slot: both
// score at their targets, and /metrics shows two loans of the slot and
// none outstanding. (judge's TestOneSlotMakesTheSecondRunWait shows the
// wait itself, in an order it controls.)
func TestEndToEndEngineNetworksScoreThroughHackctl(t *testing.T) {
	srv := startServer(t, t.TempDir(), "HACKARENA_WORKERS=2", "HACKARENA_ENGINE_SLOTS=1", "HACKARENA_ENGINE_DEVICES=cpu")
	srv.waitFor("/readyz")
	h := newHackctl(t, srv)
	h.hack("register", "--name", "engine team")
	cases := []struct{ slug, plugin, want string }{
		{"mnist", "mnist-mlp", "accuracy=0.97"},
		{"houses", "houses-mlp", "rmsle=0.1"},
	}
	outs := make([]string, len(cases))
	errs := make([]error, len(cases))
	var wg sync.WaitGroup
	for i, c := range cases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i], errs[i] = h.run("submit", c.slug, filepath.Join(repoRoot, "plugins", c.plugin), "--wait")
		}()
	}
	wg.Wait()
	for i, c := range cases {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if !strings.Contains(outs[i], "status scored") || !strings.Contains(outs[i], c.want) {
			t.Errorf("hackctl submit %s %s:\n%s", c.slug, c.plugin, outs[i])
		}
	}
	resp, err := http.Get(srv.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	metrics, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{`hackarena_engine_slots_busy{device="cpu:0"} 0`, `hackarena_engine_slot_wait_seconds_count 2`,
		// The engine processes' own series: none killed, nothing refused.
		`hackarena_engine_deadline_kills_total 0`, `hackarena_engine_refusals_total{kind="compute"} 0`, `hackarena_engine_refusals_total{kind="memory"} 0`,
		`# TYPE hackarena_engine_process_restarts_total counter`} {
		if !strings.Contains(string(metrics), line) {
			t.Errorf("/metrics lacks %q", line)
		}
	}
	if !strings.Contains(srv.logs.String(), "engine device") || !strings.Contains(srv.logs.String(), "engine process started") {
		t.Errorf("the server did not log its engine device:\n%s", srv.logs.String())
	}
}
