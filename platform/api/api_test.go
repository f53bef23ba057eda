package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/golang-jwt/jwt/v5"
	"github.com/hackarena/hackarena/challenges"
	"github.com/hackarena/hackarena/internal/redistest"
	"github.com/hackarena/hackarena/platform/auth"
	"github.com/hackarena/hackarena/platform/blob"
	"github.com/hackarena/hackarena/platform/store"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef")

type harness struct {
	t   testing.TB
	app *fiber.App
	st  *store.Store
	srv *Server
	// stopEvents ends the event hub, and with it every event stream, so
	// that the server can shut down.
	stopEvents func()
	// base is the address listen serves the app on, once it does.
	base string
}

func newHarness(t testing.TB, maxUpload int64) *harness {
	t.Helper()
	rdb, _ := redistest.Start(t)
	st := store.New(rdb)
	env := challenges.Env{Datasets: challenges.FindDatasets(), Cache: t.TempDir(), MNISTDir: os.Getenv("HACKARENA_MNIST_DIR")}
	reg, err := challenges.LoadAll(context.Background(), challenges.Builtin, "challenges", env)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range reg.All() {
		if c.Status != challenges.StatusOpen {
			t.Fatalf("challenge %s: %s (set HACKARENA_DATASETS to the data mirror)", c.Slug, c.StatusReason)
		}
	}
	tokens, err := auth.NewTokens(testSecret, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	srv := &Server{Store: st, Challenges: reg, Blobs: blob.New(t.TempDir()),
		Tokens: tokens, MaxUpload: maxUpload, Log: slog.New(slog.DiscardHandler), Env: env}
	return &harness{t: t, app: srv.App(), st: st, srv: srv}
}

type answer struct {
	status int
	header http.Header
	body   map[string]any
	raw    []byte
}

func (a answer) errorCode() string {
	e, _ := a.body["error"].(map[string]any)
	code, _ := e["code"].(string)
	return code
}

func (h *harness) do(req *http.Request) answer {
	h.t.Helper()
	resp, err := h.app.Test(req, 30_000)
	if err != nil {
		h.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	return answerOf(resp)
}

// answerOf reads a response whole and closes it.
func answerOf(resp *http.Response) answer {
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, header: resp.Header, raw: raw}
	_ = json.Unmarshal(raw, &a.body)
	return a
}

// listen serves the app on a loopback port, for requests app.Test cannot
// send (chunked bodies).
func (h *harness) listen() string {
	h.t.Helper()
	if h.base != "" {
		return h.base
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		h.t.Fatal(err)
	}
	go func() { _ = h.app.Listener(ln) }()
	h.t.Cleanup(func() {
		if h.stopEvents != nil {
			h.stopEvents()
		}
		// Keep-alive connections of the tests' clients would hold a plain
		// Shutdown until they time out.
		_ = h.app.ShutdownWithTimeout(5 * time.Second)
	})
	h.base = "http://" + ln.Addr().String()
	return h.base
}

func (h *harness) json(method, path, token string, body any) answer {
	h.t.Helper()
	var r io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		r = bytes.NewReader(raw)
	}
	req := httptest.NewRequest(method, path, r)
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return h.do(req)
}

func (h *harness) upload(token string, content []byte) answer {
	h.t.Helper()
	return h.uploadTo("mnist", token, content)
}

func (h *harness) uploadTo(slug, token string, content []byte) answer {
	h.t.Helper()
	form, contentType := pluginForm(content)
	req := httptest.NewRequest(http.MethodPost, "/api/v1/challenges/"+slug+"/submissions", form)
	req.Header.Set("Content-Type", contentType)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return h.do(req)
}

// pluginForm is the multipart form of an upload: content in the field
// "plugin", as curl -F and hackctl send it.
func pluginForm(content []byte) (*bytes.Buffer, string) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	part, _ := mw.CreateFormFile("plugin", "model")
	_, _ = part.Write(content)
	_ = mw.Close()
	return &buf, mw.FormDataContentType()
}

// chunkedUpload sends an upload to mnist without a Content-Length, as
// hackctl streams one, through a real listener.
func (h *harness) chunkedUpload(token string, content []byte) answer {
	h.t.Helper()
	form, contentType := pluginForm(content)
	req, _ := http.NewRequest(http.MethodPost, h.listen()+"/api/v1/challenges/mnist/submissions", io.MultiReader(form))
	if req.ContentLength != 0 {
		h.t.Fatal("the request has a known length; a chunked upload needs a body of unknown length")
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatalf("chunked upload: %v", err)
	}
	return answerOf(resp)
}

func (h *harness) register(name string) string {
	h.t.Helper()
	a := h.json(http.MethodPost, "/api/v1/teams", "", map[string]string{"name": name, "password": "correct horse"})
	if a.status != http.StatusCreated {
		h.t.Fatalf("register %s: %d %s", name, a.status, a.raw)
	}
	return a.body["token"].(string)
}

func TestRegisterAndLogin(t *testing.T) {
	h := newHarness(t, 64<<20)
	h.register("Team Rocket")
	cases := []struct {
		name   string
		path   string
		body   map[string]string
		status int
		code   string
	}{
		{"duplicate name in other case", "/api/v1/teams", map[string]string{"name": "team rocket", "password": "another pass"}, 409, "name_taken"},
		{"short password", "/api/v1/teams", map[string]string{"name": "b-team", "password": "short"}, 400, "invalid_password"},
		{"bad name", "/api/v1/teams", map[string]string{"name": "<script>", "password": "long enough"}, 400, "invalid_name"},
		{"reserved name", "/api/v1/teams", map[string]string{"name": "Organizer", "password": "long enough"}, 409, "name_taken"},
		{"wrong password", "/api/v1/auth/token", map[string]string{"name": "Team Rocket", "password": "wrong horse"}, 401, "invalid_credentials"},
		{"unknown team", "/api/v1/auth/token", map[string]string{"name": "nobody", "password": "whatever1"}, 401, "invalid_credentials"},
		{"login", "/api/v1/auth/token", map[string]string{"name": "Team Rocket", "password": "correct horse"}, 200, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := h.json(http.MethodPost, tc.path, "", tc.body)
			if a.status != tc.status || a.errorCode() != tc.code {
				t.Fatalf("got %d %q, want %d %q: %s", a.status, a.errorCode(), tc.status, tc.code, a.raw)
			}
			if tc.status == 200 && (a.body["token"] == "" || a.body["expires_at"] == nil) {
				t.Fatalf("login answer lacks token or expiry: %s", a.raw)
			}
			if tc.status >= 400 {
				if msg, _ := a.body["error"].(map[string]any)["message"].(string); msg == "" {
					t.Fatal("error without a message")
				}
			}
		})
	}
}

func forge(t *testing.T, method jwt.SigningMethod, key any, mutate func(*jwt.RegisteredClaims)) string {
	t.Helper()
	claims := jwt.RegisteredClaims{Issuer: auth.Issuer, Audience: jwt.ClaimStrings{auth.Audience}, Subject: "team-1",
		ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))}
	mutate(&claims)
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestTokensAreVerified(t *testing.T) {
	h := newHarness(t, 64<<20)
	good := h.register("verified")
	cases := map[string]string{
		"alg none":       forge(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, func(*jwt.RegisteredClaims) {}),
		"wrong secret":   forge(t, jwt.SigningMethodHS256, []byte("another secret of thirty-two bytes!"), func(*jwt.RegisteredClaims) {}),
		"expired":        forge(t, jwt.SigningMethodHS256, testSecret, func(c *jwt.RegisteredClaims) { c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-time.Hour)) }),
		"wrong audience": forge(t, jwt.SigningMethodHS256, testSecret, func(c *jwt.RegisteredClaims) { c.Audience = jwt.ClaimStrings{"other"} }),
		"wrong issuer":   forge(t, jwt.SigningMethodHS256, testSecret, func(c *jwt.RegisteredClaims) { c.Issuer = "other" }),
		"no expiry":      forge(t, jwt.SigningMethodHS256, testSecret, func(c *jwt.RegisteredClaims) { c.ExpiresAt = nil }),
		"garbage":        "not-a-token",
		"none":           "",
	}
	for name, token := range cases {
		t.Run(name, func(t *testing.T) {
			a := h.json(http.MethodGet, "/api/v1/teams/me/submissions", token, nil)
			if a.status != 401 || a.errorCode() != "unauthorized" {
				t.Fatalf("got %d %s", a.status, a.raw)
			}
		})
	}
	if a := h.json(http.MethodGet, "/api/v1/teams/me/submissions", good, nil); a.status != 200 {
		t.Fatalf("valid token refused: %d %s", a.status, a.raw)
	}
}

func TestUploadIsCheckedBeforeQueueing(t *testing.T) {
	h := newHarness(t, 1<<20)
	token := h.register("uploader")
	dynamic, err := os.ReadFile("/bin/true") // dynamically linked on Debian
	if err != nil {
		t.Fatal(err)
	}
	static, err := os.ReadFile(os.Args[0]) // this test binary: linux/amd64, but large
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		content []byte
		token   string
		status  int
		code    string
		message string
	}{
		{"no token", []byte("x"), "", 401, "unauthorized", "token"},
		{"not ELF", []byte("#!/bin/sh\necho hi\n"), token, 400, "invalid_binary", "not an ELF executable"},
		{"dynamically linked", dynamic, token, 400, "invalid_binary", "CGO_ENABLED=0"},
		{"too large", static, token, 413, "too_large", "1 MiB limit"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := h.upload(tc.token, tc.content)
			if a.status != tc.status || a.errorCode() != tc.code {
				t.Fatalf("got %d %s, want %d %s", a.status, a.raw, tc.status, tc.code)
			}
			if !strings.Contains(string(a.raw), tc.message) {
				t.Fatalf("message %s does not mention %q", a.raw, tc.message)
			}
		})
	}
	// Without Content-Length (chunked, as hackctl streams) the limit is
	// enforced while the body streams in.
	if a := h.chunkedUpload(token, static); a.status != 413 || !strings.Contains(string(a.raw), "too_large") {
		t.Fatalf("chunked upload over the limit: %d %s", a.status, a.raw)
	}

	mine := h.json(http.MethodGet, "/api/v1/teams/me/submissions", token, nil)
	if list := mine.body["submissions"].([]any); len(list) != 0 {
		t.Fatalf("rejected uploads were queued: %s", mine.raw)
	}
}

func TestChallengesAndBoards(t *testing.T) {
	h := newHarness(t, 64<<20)
	list := h.json(http.MethodGet, "/api/v1/challenges", "", nil)
	if list.status != 200 {
		t.Fatalf("list: %d %s", list.status, list.raw)
	}
	want := map[string]string{"mnist": "accuracy", "imdb": "accuracy", "houses": "rmsle"}
	for _, c := range list.body["challenges"].([]any) {
		c := c.(map[string]any)
		if want[c["slug"].(string)] != c["primary_metric"] || c["status"] != "open" || len(c["metrics"].([]any)) < 4 {
			t.Errorf("challenge %v", c)
		}
		delete(want, c["slug"].(string))
	}
	if len(want) != 0 {
		t.Fatalf("not listed: %v", want)
	}
	detail := h.json(http.MethodGet, "/api/v1/challenges/mnist", "", nil)
	data := detail.body["challenge"].(map[string]any)["data"].([]any)
	if len(data) != 2 {
		t.Fatalf("want the two training files, got %s", detail.raw)
	}
	for _, f := range data {
		name := f.(map[string]any)["name"].(string)
		if strings.HasPrefix(name, "t10k") {
			t.Fatalf("hidden test file %s is listed as public data", name)
		}
	}
	file := h.json(http.MethodGet, "/api/v1/challenges/mnist/data/train-labels-idx1-ubyte.gz", "", nil)
	if file.status != 200 || len(file.raw) != 28881 {
		t.Fatalf("download: %d, %d bytes", file.status, len(file.raw))
	}
	for path, code := range map[string]string{
		"/api/v1/challenges/mnist/data/t10k-labels-idx1-ubyte.gz": "file_not_found",
		"/api/v1/challenges/mnist/data/..%2f..%2fgo.mod":          "file_not_found",
		"/api/v1/challenges/nope":                                 "challenge_not_found",
	} {
		if a := h.json(http.MethodGet, path, "", nil); a.status != 404 || a.errorCode() != code {
			t.Errorf("%s: %d %s", path, a.status, a.raw)
		}
	}
	if a := h.json(http.MethodGet, "/api/v1/challenges/mnist/leaderboard?board=private", h.register("peeker"), nil); a.status != 403 {
		t.Fatalf("private board before reveal: %d %s", a.status, a.raw)
	}
	pub := h.json(http.MethodGet, "/api/v1/challenges/mnist/leaderboard", "", nil)
	if pub.status != 200 || pub.body["metric"] != "accuracy" || pub.body["higher_is_better"] != true {
		t.Fatalf("public board: %d %s", pub.status, pub.raw)
	}
}

func TestOtherTeamsSubmissionIsNotFound(t *testing.T) {
	h := newHarness(t, 64<<20)
	ctx := context.Background()
	owner, err := h.st.CreateTeam(ctx, "owner", "x", store.RoleParticipant)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := h.st.Enqueue(ctx, "mnist", owner, "abc", 1)
	if err != nil {
		t.Fatal(err)
	}
	if a := h.json(http.MethodGet, "/api/v1/submissions/"+sub.ID, h.register("snoop"), nil); a.status != 404 {
		t.Fatalf("another team read the submission: %d %s", a.status, a.raw)
	}
}

func TestSpectatorPageIsServed(t *testing.T) {
	h := newHarness(t, 64<<20)
	a := h.json(http.MethodGet, "/", "", nil)
	if a.status != 200 || !strings.Contains(a.header.Get("Content-Type"), "text/html") || !strings.Contains(string(a.raw), "/api/v1/challenges") {
		t.Fatalf("GET /: %d %s", a.status, a.header.Get("Content-Type"))
	}
}

func TestOrganizerSeesPrivateBoardAndAllSubmissions(t *testing.T) {
	h := newHarness(t, 64<<20)
	ctx := context.Background()
	if err := EnsureOrganizer(ctx, h.st, "short"); err == nil {
		t.Fatal("a short organizer password was accepted")
	}
	if err := EnsureOrganizer(ctx, h.st, "organizer-secret"); err != nil {
		t.Fatal(err)
	}
	// A second bootstrap with another password keeps the first one.
	if err := EnsureOrganizer(ctx, h.st, "another-secret"); err != nil {
		t.Fatal(err)
	}
	login := h.json(http.MethodPost, "/api/v1/auth/token", "", map[string]string{"name": "organizer", "password": "organizer-secret"})
	if login.status != 200 {
		t.Fatalf("organizer login: %d %s", login.status, login.raw)
	}
	org := login.body["token"].(string)
	if a := h.json(http.MethodGet, "/api/v1/challenges/mnist/leaderboard?board=private", org, nil); a.status != 200 {
		t.Fatalf("organizer private board: %d %s", a.status, a.raw)
	}
	team, _ := h.st.CreateTeam(ctx, "someone", "x", store.RoleParticipant)
	sub, _ := h.st.Enqueue(ctx, "mnist", team, "abc", 1)
	if a := h.json(http.MethodGet, "/api/v1/submissions/"+sub.ID, org, nil); a.status != 200 {
		t.Fatalf("organizer reading a team's submission: %d %s", a.status, a.raw)
	}
}

// TestAnUnreachableRedisIsA503ToRetry: with Redis gone, calls answer 503
// "unavailable" with Retry-After (clients resend; an upload keeps its
// Idempotency-Key), not a 500 that tells them nothing.
func TestAnUnreachableRedisIsA503ToRetry(t *testing.T) {
	h := newHarness(t, 1<<20)
	token := h.register("before")
	// SHUTDOWN: the redis-server itself exits.
	_ = h.st.Redis().ShutdownNoSave(context.Background()).Err()
	for _, a := range []answer{
		h.json(http.MethodPost, "/api/v1/teams", "", map[string]string{"name": "during", "password": "correct horse"}),
		h.json(http.MethodGet, "/api/v1/teams/me/submissions", token, nil),
	} {
		if a.status != http.StatusServiceUnavailable || a.errorCode() != "unavailable" || a.header.Get("Retry-After") == "" {
			t.Errorf("with Redis gone: %d %s (Retry-After %q), want 503 unavailable", a.status, a.raw, a.header.Get("Retry-After"))
		}
	}
}
