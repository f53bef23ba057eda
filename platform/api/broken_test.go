package api

import (
	"context"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hackarena/hackarena/challenges"
)

// TestBrokenChallengeIsListedUnavailableAndRefusesSubmissions: a spec with
// a typo takes only its own challenge down, visibly, with the reason.
func TestBrokenChallengeIsListedUnavailableAndRefusesSubmissions(t *testing.T) {
	h := newHarness(t, 64<<20)
	dir := t.TempDir()
	err := fs.WalkDir(challenges.Builtin, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, _ := fs.ReadFile(challenges.Builtin, p)
		if p == "imdb/challenge.json" {
			data = []byte(strings.Replace(string(data), `"metrics"`, `"metric"`, 1))
		}
		_ = os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755)
		return os.WriteFile(filepath.Join(dir, p), data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := challenges.LoadAll(context.Background(), os.DirFS(dir), dir, h.srv.Env)
	if err != nil {
		t.Fatal(err)
	}
	h.srv.Challenges = reg
	h.app = h.srv.App()
	list := h.json(http.MethodGet, "/api/v1/challenges", "", nil)
	status := map[string]string{}
	for _, c := range list.body["challenges"].([]any) {
		c := c.(map[string]any)
		status[c["slug"].(string)] = c["status"].(string)
		if c["slug"] == "imdb" && !strings.Contains(c["status_reason"].(string), `imdb/challenge.json: unknown key "metric"`) {
			t.Fatalf("imdb reason: %v", c["status_reason"])
		}
	}
	if status["imdb"] != "unavailable" || status["mnist"] != "open" || status["houses"] != "open" {
		t.Fatalf("statuses %v", status)
	}
	token := h.register("hopeful")
	if a := h.uploadTo("imdb", token, staticBinary(t)); a.status != 409 || a.errorCode() != "challenge_unavailable" || !strings.Contains(string(a.raw), "unknown key") {
		t.Fatalf("submit to the broken challenge: %d %s", a.status, a.raw)
	}
	if a := h.uploadTo("houses", token, staticBinary(t)); a.status != 202 {
		t.Fatalf("submit to a working challenge: %d %s", a.status, a.raw)
	}
}
