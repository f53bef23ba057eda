package api

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/hackarena/hackarena/challenges"
	"github.com/hackarena/hackarena/platform/store"
)

func (h *harness) organizer() string {
	h.t.Helper()
	if err := EnsureOrganizer(context.Background(), h.st, "organizer-secret"); err != nil {
		h.t.Fatal(err)
	}
	a := h.json(http.MethodPost, "/api/v1/auth/token", "", map[string]string{"name": "organizer", "password": "organizer-secret"})
	if a.status != 200 {
		h.t.Fatalf("organizer login: %d %s", a.status, a.raw)
	}
	return a.body["token"].(string)
}

// builtinSpec is a builtin challenge's spec as an organizer would PUT it.
// putSpec has the organizer replace a challenge's spec, which must take.
func (h *harness) putSpec(org, slug string, spec map[string]any) {
	h.t.Helper()
	if a := h.json(http.MethodPut, "/api/v1/challenges/"+slug, org, spec); a.status != 200 {
		h.t.Fatalf("put the spec of %s: %d %s", slug, a.status, a.raw)
	}
}

func builtinSpec(t *testing.T, slug string) map[string]any {
	t.Helper()
	raw, err := fs.ReadFile(challenges.Builtin, slug+"/challenge.json")
	if err != nil {
		t.Fatal(err)
	}
	var spec map[string]any
	if err := json.Unmarshal(raw, &spec); err != nil {
		t.Fatal(err)
	}
	delete(spec, "description_file")
	spec["description"] = "# " + slug
	return spec
}

func TestOrganizerCallsAreOrganizerOnly(t *testing.T) {
	h := newHarness(t, 64<<20)
	participant := h.register("participant")
	calls := []struct{ method, path string }{
		{http.MethodPut, "/api/v1/challenges/mnist"},
		{http.MethodPost, "/api/v1/challenges/mnist/reveal"},
		{http.MethodPost, "/api/v1/challenges/mnist/rejudge"},
		{http.MethodGet, "/api/v1/queue"},
	}
	for _, c := range calls {
		if a := h.json(c.method, c.path, participant, builtinSpec(t, "mnist")); a.status != 403 || a.errorCode() != "organizer_only" {
			t.Errorf("participant %s %s: %d %s", c.method, c.path, a.status, a.raw)
		}
		if a := h.json(c.method, c.path, "", nil); a.status != 401 {
			t.Errorf("anonymous %s %s: %d %s", c.method, c.path, a.status, a.raw)
		}
	}
	org := h.organizer()
	q := h.json(http.MethodGet, "/api/v1/queue", org, nil)
	if q.status != 200 || len(q.body["queues"].([]any)) != 3 {
		t.Fatalf("queue: %d %s", q.status, q.raw)
	}
}

// scoredSubmission records a judged submission the way a judge does.
func (h *harness) scoredSubmission(slug, teamName string, pub, priv map[string]float64) store.Submission {
	h.t.Helper()
	ctx := context.Background()
	team, err := h.st.TeamByName(ctx, teamName)
	if err != nil {
		team, err = h.st.CreateTeam(ctx, teamName, "x", store.RoleParticipant)
		if err != nil {
			h.t.Fatal(err)
		}
	}
	sub, err := h.st.Enqueue(ctx, slug, team, "abc", 1)
	if err != nil {
		h.t.Fatal(err)
	}
	if sub, _, err = h.st.Start(ctx, sub.ID, "w"); err != nil {
		h.t.Fatal(err)
	}
	ch, _ := h.srv.Challenges.Get(slug)
	// Scored and ranked in one step, as a judge does.
	if _, err := h.st.FinishRun(ctx, sub, store.Result{Status: store.StatusScored, Metrics: &store.Metrics{Public: pub, Private: priv},
		Ranking: &store.Ranking{Rules: store.RulesOf(ch), Revision: ch.Revision}}); err != nil {
		h.t.Fatal(err)
	}
	return sub
}

func TestPrivateBoardIsHiddenUntilRevealed(t *testing.T) {
	h := newHarness(t, 64<<20)
	sub := h.scoredSubmission("mnist", "alpha", map[string]float64{"accuracy": 0.8}, map[string]float64{"accuracy": 0.7})
	participant := h.register("beta")
	const private = "/api/v1/challenges/mnist/leaderboard?board=private"
	for _, token := range []string{"", participant} {
		if a := h.json(http.MethodGet, private, token, nil); a.status != 403 || a.errorCode() != "private_board_hidden" {
			t.Fatalf("before reveal: %d %s", a.status, a.raw)
		}
	}
	org := h.organizer()
	if a := h.json(http.MethodGet, private, org, nil); a.status != 200 || !strings.Contains(string(a.raw), `"score":0.7`) {
		t.Fatalf("organizer before reveal: %d %s", a.status, a.raw)
	}
	rev := h.json(http.MethodPost, "/api/v1/challenges/mnist/reveal", org, nil)
	if rev.status != 200 || rev.body["private_revealed_at"] == nil {
		t.Fatalf("reveal: %d %s", rev.status, rev.raw)
	}
	a := h.json(http.MethodGet, private, participant, nil)
	if a.status != 200 || !strings.Contains(string(a.raw), sub.ID) || !strings.Contains(string(a.raw), `"score":0.7`) {
		t.Fatalf("after reveal: %d %s", a.status, a.raw)
	}
	if a := h.json(http.MethodGet, private, "", nil); a.status != 200 {
		t.Fatalf("spectator after reveal: %d %s", a.status, a.raw)
	}
}

func TestPutChallengeValidatesAndRebuildsBoards(t *testing.T) {
	h := newHarness(t, 64<<20)
	org := h.organizer()
	m := func(acc, f1 float64) map[string]float64 { return map[string]float64{"accuracy": acc, "macro_f1": f1} }
	a1 := h.scoredSubmission("mnist", "a", m(0.90, 0.60), m(0.90, 0.60))
	b1 := h.scoredSubmission("mnist", "b", m(0.85, 0.80), m(0.85, 0.80))

	typo := builtinSpec(t, "mnist")
	typo["metrcs"] = typo["metrics"]
	if a := h.json(http.MethodPut, "/api/v1/challenges/mnist", org, typo); a.status != 400 || !strings.Contains(string(a.raw), `unknown key \"metrcs\"`) {
		t.Fatalf("typo: %d %s", a.status, a.raw)
	}
	wrongSHA := builtinSpec(t, "houses")
	wrongSHA["dataset"].(map[string]any)["files"].([]any)[0].(map[string]any)["sha256"] = strings.Repeat("ab", 32)
	if a := h.json(http.MethodPut, "/api/v1/challenges/houses", org, wrongSHA); a.status != 422 || !strings.Contains(string(a.raw), "nothing was changed") || !strings.Contains(string(a.raw), "has sha256 490d17d6") {
		t.Fatalf("wrong sha256: %d %s", a.status, a.raw)
	}
	if c, _ := h.srv.Challenges.Get("houses"); c.Status != challenges.StatusOpen {
		t.Fatal("a refused update took the challenge down")
	}

	spec := builtinSpec(t, "mnist")
	spec["primary_metric"] = "macro_f1"
	a := h.json(http.MethodPut, "/api/v1/challenges/mnist", org, spec)
	if a.status != 200 || a.body["revision"].(float64) != 1 {
		t.Fatalf("put: %d %s", a.status, a.raw)
	}
	rebuild := a.body["rebuild"].(map[string]any)
	if rebuild["metric"] != "macro_f1" || len(rebuild["boards"].([]any)) != 2 {
		t.Fatalf("rebuild report %v", rebuild)
	}
	board := h.json(http.MethodGet, "/api/v1/challenges/mnist/leaderboard", "", nil)
	entries := board.body["entries"].([]any)
	if board.body["metric"] != "macro_f1" || len(entries) != 2 ||
		entries[0].(map[string]any)["submission_id"] != b1.ID || entries[1].(map[string]any)["submission_id"] != a1.ID {
		t.Fatalf("board after the metric change: %s", board.raw)
	}
	// Re-ranking again reports no change; the history follows the metric.
	again := h.json(http.MethodPost, "/api/v1/challenges/mnist/rejudge", org, map[string]string{"mode": "rerank"})
	for _, b := range again.body["rebuild"].(map[string]any)["boards"].([]any) {
		if n := len(b.(map[string]any)["changes"].([]any)); again.status != 200 || n != 0 {
			t.Fatalf("second rebuild: %d %s", again.status, again.raw)
		}
	}
	hist := h.json(http.MethodGet, "/api/v1/challenges/mnist/history", "", nil)
	points := hist.body["points"].([]any)
	if hist.body["metric"] != "macro_f1" || len(points) != 2 || points[0].(map[string]any)["score"] != 0.6 {
		t.Fatalf("history: %s", hist.raw)
	}

	// A new challenge from a spec: 201, listed, open.
	created := builtinSpec(t, "houses")
	created["title"] = "Houses, second round"
	if a := h.json(http.MethodPut, "/api/v1/challenges/houses-2", org, created); a.status != 201 {
		t.Fatalf("create: %d %s", a.status, a.raw)
	}
	if a := h.json(http.MethodGet, "/api/v1/challenges/houses-2", "", nil); a.status != 200 || !strings.Contains(string(a.raw), "second round") {
		t.Fatalf("created challenge: %d %s", a.status, a.raw)
	}
	// Another server (or judge) picks the change up from Redis.
	other, err := challenges.LoadAll(context.Background(), challenges.Builtin, "challenges", h.srv.Env)
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Sync(context.Background(), h.st, h.srv.Env); err != nil {
		t.Fatal(err)
	}
	if c, ok := other.Get("mnist"); !ok || c.PrimaryMetric != "macro_f1" || c.Revision != 1 {
		t.Fatalf("synced mnist: %+v", c)
	}
	if _, ok := other.Get("houses-2"); !ok {
		t.Fatal("synced registry lacks the new challenge")
	}
}

// staticBinary builds a tiny static linux/amd64 executable to upload.
func staticBinary(t *testing.T) []byte {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\nfunc main() {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module tiny\ngo 1.22\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "build", "-o", "tiny", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	bin, err := os.ReadFile(filepath.Join(dir, "tiny"))
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// TestQuotaHoldsUnderConcurrentUploads: 20 uploads at once against a quota
// of 5: exactly 5 are queued, 15 get 429 with Retry-After.
func TestQuotaHoldsUnderConcurrentUploads(t *testing.T) {
	h := newHarness(t, 64<<20)
	org := h.organizer()
	spec := builtinSpec(t, "mnist")
	spec["limits"].(map[string]any)["submissions_per_day"] = 5
	h.putSpec(org, "mnist", spec)
	token := h.register("eager")
	bin := staticBinary(t)
	base := h.listen()
	var wg sync.WaitGroup
	statuses := make([]int, 20)
	retry := make([]string, 20)
	for i := range statuses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			form, contentType := pluginForm(bin)
			req, _ := http.NewRequest(http.MethodPost, base+"/api/v1/challenges/mnist/submissions", form)
			req.Header.Set("Content-Type", contentType)
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			_, _ = io.Copy(io.Discard, resp.Body)
			statuses[i], retry[i] = resp.StatusCode, resp.Header.Get("Retry-After")
		}()
	}
	wg.Wait()
	count := map[int]int{}
	for i, s := range statuses {
		count[s]++
		if s == 429 {
			if secs, err := strconv.Atoi(retry[i]); err != nil || secs <= 0 || secs > 86400 {
				t.Errorf("429 with Retry-After %q", retry[i])
			}
		}
	}
	if count[202] != 5 || count[429] != 15 {
		t.Fatalf("statuses %v, want 5×202 and 15×429", count)
	}
	mine := h.json(http.MethodGet, "/api/v1/teams/me/submissions", token, nil)
	if n := len(mine.body["submissions"].([]any)); n != 5 {
		t.Fatalf("%d submissions recorded, want 5", n)
	}
}

// TestNoPublicResponseLeaksHiddenAnswers fetches everything a participant
// or spectator can (listings, details, every download, boards, history)
// and searches it for the hidden sets' answers.
func TestNoPublicResponseLeaksHiddenAnswers(t *testing.T) {
	h := newHarness(t, 64<<20)
	token := h.register("curious")
	var corpus bytes.Buffer
	get := func(path string) answer {
		a := h.json(http.MethodGet, path, token, nil)
		if a.status != 200 {
			t.Fatalf("GET %s: %d %s", path, a.status, a.raw)
		}
		corpus.Write(a.raw)
		return a
	}
	list := get("/api/v1/challenges")
	var downloads int
	for _, c := range list.body["challenges"].([]any) {
		slug := c.(map[string]any)["slug"].(string)
		detail := get("/api/v1/challenges/" + slug)
		for _, f := range detail.body["challenge"].(map[string]any)["data"].([]any) {
			a := get(f.(map[string]any)["url"].(string))
			downloads++
			if zr, err := gzip.NewReader(bytes.NewReader(a.raw)); err == nil {
				plain, err := io.ReadAll(zr)
				if err != nil {
					t.Fatal(err)
				}
				corpus.Write(plain)
			}
		}
		get("/api/v1/challenges/" + slug + "/leaderboard")
		get("/api/v1/challenges/" + slug + "/history")
	}
	// The mirror's IMDB metadata (star ratings give the label away) and the
	// hidden files are not downloadable under any name.
	for _, path := range []string{"/api/v1/challenges/imdb/data/meta.tsv.gz", "/api/v1/challenges/imdb/data/test.jsonl.gz",
		"/api/v1/challenges/houses/data/AmesHousing.csv", "/api/v1/challenges/mnist/data/t10k-labels-idx1-ubyte.gz"} {
		if a := h.json(http.MethodGet, path, token, nil); a.status != 404 {
			t.Errorf("GET %s: %d", path, a.status)
		}
	}
	if downloads != 4 {
		t.Fatalf("%d downloads, want MNIST's two, IMDB's one and houses' one", downloads)
	}
	text := corpus.String()
	for _, slug := range []string{"imdb", "houses", "mnist"} {
		ch, _ := h.srv.Challenges.Get(slug)
		hidden, err := ch.Hidden()
		if err != nil {
			t.Fatal(err)
		}
		switch slug {
		case "imdb":
			// A hidden review must not appear anywhere public, unless the
			// same text is also a training review (123 are, per the
			// dataset's README).
			train := map[string]bool{}
			for _, line := range strings.Split(text, "\n") {
				var row struct{ Text string }
				if strings.HasPrefix(line, `{"text":`) && json.Unmarshal([]byte(line), &row) == nil {
					train[row.Text] = true
				}
			}
			if len(train) < 24000 {
				t.Fatalf("found %d training reviews in the download", len(train))
			}
			for i := 0; i < hidden.Count; i += 50 {
				if r := hidden.Texts[i]; !train[r] && strings.Contains(text, r[:min(len(r), 200)]) {
					t.Fatalf("hidden review %d appears in a public response: %.80q", i, r)
				}
			}
		case "houses":
			// No hidden house, all its features and its price, may be in a
			// public response (two Ames duplexes differ only in PID, so
			// every cell is compared).
			byPrice := map[string][]string{}
			for _, line := range strings.Split(text, "\n") {
				if k := strings.LastIndexByte(line, ','); k >= 0 {
					byPrice[line[k+1:]] = append(byPrice[line[k+1:]], line)
				}
			}
			for i := range hidden.Count {
				for _, line := range byPrice[strconv.FormatFloat(hidden.Targets[i], 'f', -1, 64)] {
					if matchesHiddenRow(line, hidden, i) {
						t.Fatalf("hidden house %d is in a public response: %s", i, line)
					}
				}
			}
		case "mnist":
			// The test label file's payload (its first 200 labels) must
			// not appear.
			dir, err := challenges.LocateMNIST(context.Background(), h.srv.Env.MNISTDir)
			if err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(filepath.Join(dir, "t10k-labels-idx1-ubyte.gz"))
			if err != nil {
				t.Fatal(err)
			}
			zr, err := gzip.NewReader(f)
			if err != nil {
				t.Fatal(err)
			}
			labels, _ := io.ReadAll(zr)
			f.Close()
			if len(labels) != 10008 || hidden.Count != 10000 {
				t.Fatalf("test labels: %d bytes", len(labels))
			}
			if bytes.Contains(corpus.Bytes(), labels[8:208]) {
				t.Fatal("MNIST test labels appear in a public response")
			}
		}
	}
}

// matchesHiddenRow compares a CSV line's cells with hidden row i, column
// by column.
func matchesHiddenRow(line string, hidden *challenges.HiddenSet, i int) bool {
	cells := strings.Split(line, ",")
	if len(cells) != len(hidden.Columns)+1 {
		return false
	}
	for k, c := range hidden.Columns {
		if c.Strings != nil {
			if cells[k] != c.Strings[i] {
				return false
			}
			continue
		}
		f, err := strconv.ParseFloat(cells[k], 64)
		if cells[k] == "" {
			f, err = math.NaN(), nil
		}
		if err != nil || fmt.Sprint(f) != fmt.Sprint(c.Numbers[i]) {
			return false
		}
	}
	return true
}

// TestUpdatedChallengeStaysFindableAfterLaterRequests: the slug of a PUT
// keys the registry after the request ends; later requests (which reuse
// the server's buffers) must not change it. It did: the challenge went
// missing, and with it its log policy, until the next refresh.
func TestUpdatedChallengeStaysFindableAfterLaterRequests(t *testing.T) {
	h := newHarness(t, 64<<20)
	org := h.organizer()
	url := h.listen()
	spec, _ := json.Marshal(builtinSpec(t, "houses"))
	req, _ := http.NewRequest(http.MethodPut, url+"/api/v1/challenges/houses", bytes.NewReader(spec))
	req.Header.Set("Authorization", "Bearer "+org)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT: %v %v", resp, err)
	}
	resp.Body.Close()
	// The same connection, so the same buffers, for the next requests.
	for i := 0; i < 20; i++ {
		resp, err := http.Get(url + "/api/v1/challenges/xxxxxx-" + strings.Repeat("z", i))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	ch, ok := h.srv.Challenges.Get("houses")
	if !ok || ch.Slug != "houses" || ch.Revision != 1 {
		t.Fatalf("after later requests: found=%v slug=%q, registry %v", ok, func() string {
			if ch == nil {
				return ""
			}
			return ch.Slug
		}(), h.srv.Challenges.Slugs())
	}
}

// TestARepeatedPutRepairsBoardsWhoseRebuildWasLost: the server crashed
// between writing a spec that changes the ranking metric and rebuilding
// the boards (this server's registry already has the new spec); the
// organizer's repeated PUT sees no change against the registry, but the
// boards still rank by the old metric, so it rebuilds them.
func TestARepeatedPutRepairsBoardsWhoseRebuildWasLost(t *testing.T) {
	h := newHarness(t, 64<<20)
	org := h.organizer()
	m := func(acc, f1 float64) map[string]float64 { return map[string]float64{"accuracy": acc, "macro_f1": f1} }
	a1 := h.scoredSubmission("mnist", "a", m(0.90, 0.60), m(0.90, 0.60))
	b1 := h.scoredSubmission("mnist", "b", m(0.85, 0.80), m(0.85, 0.80))
	spec := builtinSpec(t, "mnist")
	spec["primary_metric"] = "macro_f1"
	// The first PUT's spec write, and nothing after it.
	raw, _ := json.Marshal(spec)
	decoded, err := challenges.DecodeSpec("test", bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	rev, err := h.st.PutChallengeSpec(context.Background(), "mnist", decoded)
	if err != nil {
		t.Fatal(err)
	}
	ch := challenges.Build(context.Background(), "mnist", decoded, h.srv.Env)
	ch.Revision = rev
	h.srv.Challenges.Put(ch)
	if metric, _, _ := h.st.BoardRules(context.Background(), "mnist"); metric != "accuracy" {
		t.Fatalf("the boards rank by %q before the repair, want the old accuracy", metric)
	}
	if a := h.json(http.MethodPut, "/api/v1/challenges/mnist", org, spec); a.status != 200 || a.body["rebuild"] == nil {
		t.Fatalf("repeated put: %d %s", a.status, a.raw)
	}
	board := h.json(http.MethodGet, "/api/v1/challenges/mnist/leaderboard", "", nil)
	entries := board.body["entries"].([]any)
	if board.body["metric"] != "macro_f1" || len(entries) != 2 || entries[0].(map[string]any)["submission_id"] != b1.ID || entries[1].(map[string]any)["submission_id"] != a1.ID {
		t.Fatalf("board after the repeated put: %s", board.raw)
	}
	// Once repaired, another PUT of the same spec rebuilds nothing.
	if a := h.json(http.MethodPut, "/api/v1/challenges/mnist", org, spec); a.status != 200 || a.body["rebuild"] != nil {
		t.Fatalf("third put: %d %s", a.status, a.raw)
	}
}
