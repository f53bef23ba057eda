package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hackarena/hackarena/challenges"
	"github.com/hackarena/hackarena/judge"
	"github.com/hackarena/hackarena/sdk/client"
)

// cuttingProxy forwards to target, cutting the first answer for a path
// ending in cutSuffix after cutAfter bytes, as a dropped connection does.
func cuttingProxy(t *testing.T, target, cutSuffix string, cutAfter int64) *httptest.Server {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	proxy := httputil.NewSingleHostReverseProxy(u)
	proxy.ModifyResponse = func(resp *http.Response) error {
		if strings.HasSuffix(resp.Request.URL.Path, cutSuffix) {
			once.Do(func() { resp.Body = &cutBody{r: resp.Body, left: cutAfter} })
		}
		return nil
	}
	srv := httptest.NewServer(proxy)
	t.Cleanup(srv.Close)
	return srv
}

type cutBody struct {
	r    io.ReadCloser
	left int64
}

func (b *cutBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, errors.New("connection cut by the test")
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *cutBody) Close() error { return b.r.Close() }

// TestEndToEndDownloadShowsProgressResumesAndSkips: `hackctl download
// mnist`, in a folder outside the repository, through a connection cut
// part-way: it shows progress, resumes where it was cut, checks sha256 and
// writes the challenge's description beside the files; run again, it
// downloads nothing.
func TestEndToEndDownloadShowsProgressResumesAndSkips(t *testing.T) {
	srv := startServer(t, t.TempDir())
	proxy := cuttingProxy(t, srv.url, "train-images-idx3-ubyte.gz", 3<<20)
	h := newHackctl(t, &server{url: proxy.URL})
	h.dir = t.TempDir()
	first := h.hack("download", "mnist")
	for _, want := range []string{"train-images-idx3-ubyte.gz  resuming after 3.0 MiB", "100%", "sha256 ok", "train-labels-idx1-ubyte.gz", "2 downloaded, 0 already there"} {
		if !strings.Contains(first, want) {
			t.Errorf("first download: no %q in:\n%s", want, first)
		}
	}
	dir := filepath.Join(h.dir, "data", "mnist")
	for name, sha := range map[string]string{
		"train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
		"train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
	} {
		if got := fileSHA(t, filepath.Join(dir, name)); got != sha {
			t.Errorf("%s: sha256 %s, want %s", name, got, sha)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "challenge.json")); err != nil {
		t.Errorf("the challenge's description was not kept: %v", err)
	}
	if parts, _ := filepath.Glob(filepath.Join(dir, "*.part")); len(parts) != 0 {
		t.Errorf("partial files left: %v", parts)
	}
	again := h.hack("download", "mnist")
	if !strings.Contains(again, "0 downloaded, 2 already there") || strings.Contains(again, "%") {
		t.Errorf("second download fetched again:\n%s", again)
	}
	if out, err := h.run("download", "no-such-challenge"); err == nil || !strings.Contains(out, "no-such-challenge") {
		t.Errorf("unknown challenge: %v\n%s", err, out)
	}
}

func fileSHA(t *testing.T, path string) string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:])
}

// evalResult is what `hackctl eval --json` prints.
type evalResult struct {
	Status  string             `json:"status"`
	Reason  string             `json:"reason"`
	Message string             `json:"message"`
	Public  map[string]float64 `json:"public"`
	Private map[string]float64 `json:"private"`
	Rows    int                `json:"validation_rows"`
	Log     string             `json:"log"`
}

// TestEndToEndEvalAgreesWithTheJudge: for every reference and hostile plugin,
// `hackctl eval` ends as the judge ends them (status and reason), and a
// reference plugin's metrics on the validation part are those the
// scoring package computes from its answers.
func TestEndToEndEvalAgreesWithTheJudge(t *testing.T) {
	// No run may end near its limit on one side only, so each challenge's
	// eval judges as many examples as its judge (validation rows = the
	// hidden set's), under the same limit, and that limit is far from what
	// any of its plugins needs. The reference mnist plugins, the slowest
	// being mnist-cnn (15 s), get two minutes. The hostile ones go to a
	// copy of mnist with 30 s: those that answer need at most 8 s (the
	// slow-answering ones 4 s; flood-output's gigabyte of logs 5 to 8 s
	// under load), and those that never answer time out on both sides.
	// Nothing in houses or imdb hangs; imdb-embed needs up to 7 s on a
	// loaded 2-core machine. eval takes the limits from the challenges the
	// organizer set, as a participant's eval does.
	limits := func(wall string, rows int) func(map[string]any) {
		return func(spec map[string]any) {
			spec["limits"].(map[string]any)["wall_time"] = wall
			spec["validation"] = map[string]any{"rows": rows}
		}
	}
	specs := []struct {
		slug, from string
		edit       func(map[string]any)
	}{
		{"mnist", "mnist", limits("2m", 10000)},
		{"mnist-hostile", "mnist", limits("30s", 10000)},
		{"houses", "houses", limits("30s", 0)},
		{"imdb", "imdb", limits("60s", 0)},
	}
	srv := startServer(t, t.TempDir(), "HACKARENA_ORGANIZER_PASSWORD=organizer-eval")
	srv.waitFor("/readyz")
	orgToken, _, err := client.New(srv.url, "").Login(context.Background(), "organizer", "organizer-eval")
	if err != nil {
		t.Fatal(err)
	}
	for _, spec := range specs {
		putSpecAs(t, srv.url, orgToken, spec.from, spec.slug, spec.edit)
	}
	h := newHackctl(t, srv)
	h.dir = t.TempDir()
	h.hack("register", "--name", "evaluators")
	for _, spec := range specs {
		h.hack("download", spec.slug)
	}
	c := client.New(srv.url, "")
	token, _, err := c.Login(context.Background(), "evaluators", "e2e-password")
	if err != nil {
		t.Fatal(err)
	}
	c.Token = token
	// Every plugin of the suite: the reference ones, and every hostile one.
	type evalCase struct {
		plugin, slug, bin, id string
	}
	var cases []evalCase
	for _, dir := range []string{"", "hostile"} {
		entries, err := os.ReadDir(filepath.Join(repoRoot, "plugins", dir))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if _, err := os.Stat(filepath.Join(repoRoot, "plugins", dir, e.Name(), "main.go")); err != nil {
				continue // not a plugin (hostile/, internal/)
			}
			slug := "mnist"
			switch {
			case strings.HasPrefix(e.Name(), "houses-") || strings.HasSuffix(e.Name(), "-price") || strings.HasSuffix(e.Name(), "-prices"):
				slug = "houses"
			case strings.HasPrefix(e.Name(), "imdb-"):
				slug = "imdb"
			case dir == "hostile":
				slug = "mnist-hostile"
			}
			cases = append(cases, evalCase{plugin: filepath.Join(dir, e.Name()), slug: slug})
		}
	}
	// All are queued first, so the judge works while eval does.
	for i := range cases {
		cases[i].bin = buildPlugin(t, cases[i].plugin)
		queued, err := c.Submit(context.Background(), cases[i].slug, cases[i].bin)
		if err != nil {
			t.Fatalf("submit %s: %v", cases[i].plugin, err)
		}
		cases[i].id = queued.ID
	}
	for _, tc := range cases {
		t.Run(strings.ReplaceAll(tc.plugin, "/", "-"), func(t *testing.T) {
			bin := tc.bin
			preds := filepath.Join(t.TempDir(), "predictions.json")
			out, _ := h.run("eval", tc.slug, bin, "--json", "--sandbox", "bwrap", "--save-predictions", preds)
			var got evalResult
			start := strings.Index(out, "{")
			if start < 0 {
				t.Fatalf("eval printed no JSON:\n%s", out)
			}
			if err := json.NewDecoder(strings.NewReader(out[start:])).Decode(&got); err != nil {
				t.Fatalf("eval output: %v\n%.2000s", err, out)
			}
			judged := waitFinal(t, c, tc.id, 5*time.Minute)
			// fork-bomb's ending depends on when its forks are refused; the
			// judge's own suite accepts a crash or a score (mayCrash).
			eitherWay := tc.plugin == filepath.Join("hostile", "fork-bomb") &&
				(got.Status == "scored" || got.Reason == "crashed") && (judged.Status == "scored" || judged.Reason == "crashed")
			if !eitherWay && (got.Status != judged.Status || got.Reason != judged.Reason) {
				t.Fatalf("eval says %s %s (%.300s); the judge %s %s (%.300s)", got.Status, got.Reason, got.Message, judged.Status, judged.Reason, judged.Message)
			}
			if got.Status != "scored" {
				return
			}
			raw, err := os.ReadFile(filepath.Join(h.dir, "data", tc.slug, "challenge.json"))
			if err != nil {
				t.Fatal(err)
			}
			var detail struct {
				Evaluation challenges.Evaluation `json:"evaluation"`
			}
			if err := json.Unmarshal(raw, &detail); err != nil {
				t.Fatal(err)
			}
			ch, err := challenges.ForEvaluation(tc.slug, detail.Evaluation, filepath.Join(h.dir, "data", tc.slug))
			if err != nil {
				t.Fatal(err)
			}
			hidden, err := ch.Hidden()
			if err != nil {
				t.Fatal(err)
			}
			var pred judge.Predictions
			if raw, err = os.ReadFile(preds); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(raw, &pred); err != nil {
				t.Fatal(err)
			}
			want, err := judge.Score(ch, hidden, &pred)
			if err != nil {
				t.Fatal(err)
			}
			if got.Rows != hidden.Count || !reflect.DeepEqual(got.Public, want.Public) || !reflect.DeepEqual(got.Private, want.Private) {
				t.Fatalf("eval reports %v / %v on %d rows; scoring its answers gives %v / %v on %d", got.Public, got.Private, got.Rows, want.Public, want.Private, hidden.Count)
			}
		})
	}
}

// TestEndToEndANewParticipantsLoopOutsideTheRepository plays a new
// participant with the built hackctl in a home and work folder of their
// own: register, download (cut once and resumed; a second run fetches
// nothing), init, a plain go build of the new folder, eval, submit --wait,
// leaderboard; each step's output is checked.
func TestEndToEndANewParticipantsLoopOutsideTheRepository(t *testing.T) {
	srv := startServer(t, t.TempDir())
	srv.waitFor("/readyz")
	// The participant's connection drops once, part-way through the
	// largest file.
	proxy := cuttingProxy(t, srv.url, "train-images-idx3-ubyte.gz", 3<<20)
	h := newHackctl(t, &server{url: proxy.URL})
	h.dir = t.TempDir()
	step := func(want string, args ...string) string {
		t.Helper()
		out := h.hack(args...)
		if !strings.Contains(out, want) {
			t.Fatalf("hackctl %s: no %q in:\n%s", strings.Join(args, " "), want, out)
		}
		return out
	}
	step(`registered team "newcomer"`, "register", "--name", "newcomer")
	out := step("2 downloaded, 0 already there", "download", "mnist")
	for _, want := range []string{"resuming after 3.0 MiB", "100%", "sha256 ok"} {
		if !strings.Contains(out, want) {
			t.Errorf("download shows no %q:\n%s", want, out)
		}
	}
	step("0 downloaded, 2 already there", "download", "mnist")
	out = step("fetched the SDK and wrote go.sum", "init", "mnist")
	if !strings.Contains(out, "hackctl eval mnist mnist-plugin") {
		t.Errorf("init does not say what to run next:\n%s", out)
	}
	folder := filepath.Join(h.dir, "mnist-plugin")
	for _, f := range []string{"main.go", "go.mod", "go.sum", "README.md"} {
		if _, err := os.Stat(filepath.Join(folder, f)); err != nil {
			t.Errorf("init wrote no %s: %v", f, err)
		}
	}
	if out, err := h.run("init", "mnist"); err == nil || !strings.Contains(out, "already has files") {
		t.Errorf("init into a folder with files: %v\n%s", err, out)
	}
	build := exec.Command("go", "build", "-o", filepath.Join(t.TempDir(), "plugin"), ".")
	build.Dir = folder
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build of the folder init wrote: %v\n%s", err, msg)
	}
	out = step("status scored", "eval", "mnist", "mnist-plugin", "--sandbox", "bwrap")
	for _, want := range []string{"validation examples", "start ", "judge ", "public half:", "accuracy=", "--- plugin log"} {
		if !strings.Contains(out, want) {
			t.Errorf("eval: no %q in:\n%s", want, out)
		}
	}
	if !regexp.MustCompile(`peak memory [0-9.]+ MiB`).MatchString(out) {
		t.Errorf("eval in bubblewrap shows no peak memory:\n%s", out)
	}
	out = step("status scored", "submit", "mnist", "mnist-plugin", "--wait")
	if !strings.Contains(out, "accuracy=") {
		t.Errorf("submit --wait shows no scores:\n%s", out)
	}
	step("newcomer", "leaderboard", "mnist")

	// What else a CLI user reaches for, and --json for scripts.
	var subs []client.Submission
	if err := json.Unmarshal([]byte(h.hack("submissions", "mnist", "--json")), &subs); err != nil || len(subs) != 1 || subs[0].Status != "scored" {
		t.Fatalf("submissions --json: %+v %v", subs, err)
	}
	step(subs[0].ID, "submissions")
	if out := h.hack("submissions", "houses"); !strings.Contains(out, "no submissions yet") {
		t.Errorf("submissions of a challenge without any:\n%s", out)
	}
	step("plugin address", "logs", subs[0].ID)
	var lb client.Leaderboard
	if err := json.Unmarshal([]byte(h.hack("leaderboard", "mnist", "--json")), &lb); err != nil || len(lb.Entries) != 1 || lb.Entries[0].Team != "newcomer" {
		t.Fatalf("leaderboard --json: %+v %v", lb, err)
	}
	var status client.Submission
	if err := json.Unmarshal([]byte(h.hack("status", subs[0].ID, "--json")), &status); err != nil || status.ID != subs[0].ID {
		t.Fatalf("status --json: %+v %v", status, err)
	}
	step(`team "newcomer"`, "whoami")
	step("logged out", "logout")
	if out, err := h.run("whoami"); err == nil || !strings.Contains(out, "not logged in") {
		t.Errorf("whoami after logout: %v\n%s", err, out)
	}
}
