package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/hackarena/hackarena/platform/auth"
	"github.com/hackarena/hackarena/platform/store"
)

// cheapHashes makes the test's new password hashes cost the least bcrypt
// allows.
func cheapHashes(t *testing.T) {
	if err := auth.SetHashCost(bcrypt.MinCost); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = auth.SetHashCost(bcrypt.DefaultCost) })
}

func (h *harness) login(name, password string) answer {
	h.t.Helper()
	return h.json(http.MethodPost, "/api/v1/auth/token", "", map[string]string{"name": name, "password": password})
}

// TestFailedLoginsAreThrottledAndTheLockDecays: 40 wrong passwords in a
// row; past the limit each is answered 429 with Retry-After, and so is
// the right password, until the lock decays.
func TestFailedLoginsAreThrottledAndTheLockDecays(t *testing.T) {
	h := newHarness(t, 1<<20)
	// Ten checks must fit in the window even under the race detector on
	// a loaded machine: a cheap hash.
	cheapHashes(t)
	h.srv.Throttles.LoginPerTeam = store.Throttle{Limit: 10, Window: 3 * time.Second}
	h.register("guessed")
	var codes []int
	for i := 0; i < 40; i++ {
		a := h.login("guessed", fmt.Sprintf("wrong guess %d", i))
		codes = append(codes, a.status)
		if a.status == http.StatusTooManyRequests {
			secs, err := strconv.Atoi(a.header.Get("Retry-After"))
			if err != nil || secs < 1 || secs > 3 {
				t.Fatalf("429 with Retry-After %q, want 1-3 s", a.header.Get("Retry-After"))
			}
			if a.errorCode() != "too_many_attempts" {
				t.Fatalf("429 with body %s", a.raw)
			}
		}
	}
	if got := slices.Index(codes, http.StatusTooManyRequests); got != 10 || slices.ContainsFunc(codes[10:], func(c int) bool { return c != http.StatusTooManyRequests }) || slices.ContainsFunc(codes[:10], func(c int) bool { return c != http.StatusUnauthorized }) {
		t.Fatalf("answers %v: want 10 × 401, then 429s", codes)
	}
	if a := h.login("guessed", "correct horse"); a.status != http.StatusTooManyRequests {
		t.Fatalf("right password during the lock: %d, want 429", a.status)
	}
	time.Sleep(3100 * time.Millisecond)
	if a := h.login("guessed", "correct horse"); a.status != http.StatusOK {
		t.Fatalf("right password after the lock decayed: %d %s", a.status, a.raw)
	}
	// A success clears the name's count: one wrong guess does not lock it.
	if a := h.login("guessed", "one more wrong"); a.status != http.StatusUnauthorized {
		t.Fatalf("a wrong guess after a success: %d, want 401", a.status)
	}
}

// TestLoginThrottleIsSharedByAPIProcesses: two API servers on one Redis
// count one team's failures together.
func TestLoginThrottleIsSharedByAPIProcesses(t *testing.T) {
	a := newHarness(t, 1<<20)
	a.srv.Throttles.LoginPerTeam = store.Throttle{Limit: 6, Window: time.Minute}
	a.register("shared")
	b := &harness{t: t, st: a.st, srv: &Server{Store: a.st, Challenges: a.srv.Challenges, Blobs: a.srv.Blobs, Tokens: a.srv.Tokens,
		MaxUpload: 1 << 20, Log: a.srv.Log, Env: a.srv.Env, Throttles: a.srv.Throttles}}
	b.app = b.srv.App()
	for i := 0; i < 3; i++ {
		a.login("shared", "wrong on a")
		b.login("shared", "wrong on b")
	}
	for name, h := range map[string]*harness{"a": a, "b": b} {
		if got := h.login("shared", "correct horse"); got.status != http.StatusTooManyRequests {
			t.Errorf("server %s after 6 failures spread over both: %d, want 429", name, got.status)
		}
	}
}

// TestRegistrationsPerAddressAreThrottled: past the limit an address
// gets 429 with Retry-After, and nothing is created.
func TestRegistrationsPerAddressAreThrottled(t *testing.T) {
	h := newHarness(t, 1<<20)
	h.srv.Throttles.RegisterPerAddress = store.Throttle{Limit: 3, Window: time.Minute}
	for i := 0; i < 3; i++ {
		h.register(fmt.Sprintf("team-%d", i))
	}
	a := h.json(http.MethodPost, "/api/v1/teams", "", map[string]string{"name": "team-3", "password": "correct horse"})
	if a.status != http.StatusTooManyRequests || a.header.Get("Retry-After") == "" {
		t.Fatalf("4th registration: %d %s", a.status, a.raw)
	}
	if _, err := h.st.TeamByName(t.Context(), "team-3"); err == nil {
		t.Fatal("a throttled registration created its team")
	}
}

// TestPasswordChangeRevokesOlderTokens: after a change every token issued
// before it gets 401 saying to log in again; the new token and password
// work, the old password does not.
func TestPasswordChangeRevokesOlderTokens(t *testing.T) {
	h := newHarness(t, 1<<20)
	first := h.register("changer")
	second := h.login("changer", "correct horse").body["token"].(string)
	if a := h.json(http.MethodPost, "/api/v1/teams/me/password", first, map[string]string{"current_password": "not it", "new_password": "battery staple"}); a.status != http.StatusUnauthorized || a.errorCode() != "wrong_password" {
		t.Fatalf("change with a wrong current password: %d %s", a.status, a.raw)
	}
	if a := h.json(http.MethodPost, "/api/v1/teams/me/password", first, map[string]string{"current_password": "correct horse", "new_password": "short"}); a.status != http.StatusBadRequest {
		t.Fatalf("change to a short password: %d %s", a.status, a.raw)
	}
	a := h.json(http.MethodPost, "/api/v1/teams/me/password", first, map[string]string{"current_password": "correct horse", "new_password": "battery staple"})
	if a.status != http.StatusOK {
		t.Fatalf("change: %d %s", a.status, a.raw)
	}
	fresh := a.body["token"].(string)
	for _, old := range []string{first, second} {
		got := h.json(http.MethodGet, "/api/v1/teams/me/submissions", old, nil)
		if got.status != http.StatusUnauthorized || got.errorCode() != "token_revoked" || !bytes.Contains(got.raw, []byte("log in again")) {
			t.Fatalf("a token from before the change: %d %s", got.status, got.raw)
		}
	}
	if got := h.json(http.MethodGet, "/api/v1/teams/me/submissions", fresh, nil); got.status != http.StatusOK {
		t.Fatalf("the new token: %d %s", got.status, got.raw)
	}
	if got := h.login("changer", "correct horse"); got.status != http.StatusUnauthorized {
		t.Fatalf("the old password: %d", got.status)
	}
	if got := h.login("changer", "battery staple"); got.status != http.StatusOK {
		t.Fatalf("the new password: %d", got.status)
	}
}

// loginFlood sends n concurrent logins with wrong passwords for the team
// "victim" to url and returns when all are answered.
func loginFlood(url string, n int) map[int]int { return loginFloodAs(url, "victim", n) }

func loginFloodAs(url, team string, n int) (statuses map[int]int) {
	statuses = map[int]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body, _ := json.Marshal(map[string]string{"name": team, "password": fmt.Sprintf("guess %d", i)})
			resp, err := http.Post(url+"/api/v1/auth/token", "application/json", bytes.NewReader(body))
			code := 0
			if err == nil {
				code = resp.StatusCode
				resp.Body.Close()
			}
			mu.Lock()
			statuses[code]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	return statuses
}

// TestLoginFloodLeavesHealthAndHonestLogins: 200 concurrent wrong logins
// for one team; /healthz keeps answering and another team logs in.
func TestLoginFloodLeavesHealthAndHonestLogins(t *testing.T) {
	h := newHarness(t, 1<<20)
	h.register("victim")
	h.register("honest")
	url := h.listen()
	done := make(chan map[int]int)
	go func() { done <- loginFlood(url, 200) }()
	time.Sleep(50 * time.Millisecond)
	// Generous: under the race detector one bcrypt check takes about a
	// second; the honest login waits for the flood's one check in flight.
	client := &http.Client{Timeout: 30 * time.Second}
	for i := 0; i < 20; i++ {
		resp, err := client.Get(url + "/healthz")
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("/healthz during the flood: %v %v", resp, err)
		}
		resp.Body.Close()
		time.Sleep(10 * time.Millisecond)
	}
	body, _ := json.Marshal(map[string]string{"name": "honest", "password": "correct horse"})
	begin := time.Now()
	resp, err := client.Post(url+"/api/v1/auth/token", "application/json", bytes.NewReader(body))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("an honest login during the flood: %v %v", resp, err)
	}
	resp.Body.Close()
	t.Logf("the honest login took %s during the flood", time.Since(begin).Round(time.Millisecond))
	statuses := <-done
	if statuses[http.StatusUnauthorized] > DefaultLoginLimit+1 || statuses[0] > 0 {
		t.Fatalf("flood answers %v: want at most about %d hashed failures (401), the rest 429", statuses, DefaultLoginLimit)
	}
}

// healthzP99 sends n sequential /healthz requests and returns the 99th
// percentile latency.
func healthzP99(b *testing.B, url string, n int) time.Duration {
	b.Helper()
	lat := make([]time.Duration, 0, n)
	for i := 0; i < n; i++ {
		start := time.Now()
		resp, err := http.Get(url + "/healthz")
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("/healthz: %v %v", resp, err)
		}
		resp.Body.Close()
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	return lat[len(lat)*99/100]
}

// BenchmarkHealthzDuringLoginFlood reports /healthz's p99 latency while
// 200 concurrent wrong logins arrive (each round a fresh team name, so
// the flood hashes until its name locks), against idle in the same run.
func BenchmarkHealthzDuringLoginFlood(b *testing.B) {
	h := newHarness(b, 1<<20)
	url := h.listen()
	idle := healthzP99(b, url, 200)
	var flood time.Duration
	for i := 0; i < b.N; i++ {
		name := fmt.Sprintf("victim-%d", i)
		body, _ := json.Marshal(map[string]string{"name": name, "password": "correct horse"})
		if resp, err := http.Post(url+"/api/v1/teams", "application/json", bytes.NewReader(body)); err == nil {
			resp.Body.Close()
		}
		done := make(chan struct{})
		go func() { defer close(done); loginFloodAs(url, name, 200) }()
		flood = max(flood, healthzP99(b, url, 200))
		<-done
	}
	b.ReportMetric(float64(idle.Microseconds())/1000, "idle-p99-ms")
	b.ReportMetric(float64(flood.Microseconds())/1000, "flood-p99-ms")
	b.ReportMetric(float64(flood)/float64(idle), "flood/idle")
}

// TestFailedLoginsPerAddressAreThrottled: one address guessing across
// many team names is locked at the address limit, and a locked address is
// told so.
func TestFailedLoginsPerAddressAreThrottled(t *testing.T) {
	h := newHarness(t, 1<<20)
	cheapHashes(t)
	h.srv.Throttles.LoginPerAddress = store.Throttle{Limit: 5, Window: time.Minute}
	for i := 0; i < 5; i++ {
		h.register(fmt.Sprintf("spread-%d", i))
		if a := h.login(fmt.Sprintf("spread-%d", i), "wrong guess"); a.status != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d", i, a.status)
		}
	}
	a := h.login("spread-0", "correct horse")
	if a.status != http.StatusTooManyRequests || !bytes.Contains(a.raw, []byte("from your address")) || a.header.Get("Retry-After") == "" {
		t.Fatalf("after 5 failures over 5 names from one address: %d %s", a.status, a.raw)
	}
}
