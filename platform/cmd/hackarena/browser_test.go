package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/hackarena/hackarena/sdk/client"
)

// artifactDir is where browser tests leave their screenshots:
// HACKARENA_ARTIFACTS, or artifacts/ at the top of the repository.
func artifactDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("HACKARENA_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(repoRoot, "artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(dir)
	return abs
}

// browser starts Debian's chromium, headless, for the test. A missing
// chromium fails the test: `make test` installs it.
func browser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium is not installed: run `make test` (it installs Debian's chromium) or apt-get install chromium")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.WindowSize(1600, 1000),
		// Root in a container has no user namespace for chromium's own
		// sandbox; the page under test is ours.
		chromedp.NoSandbox,
		chromedp.Flag("disable-dev-shm-usage", true),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	path := filepath.Join(artifactDir(t), name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

// within runs browser actions with a deadline, naming what was awaited.
func within(t *testing.T, ctx context.Context, d time.Duration, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// pollTrue waits until a JavaScript expression is true in the page.
func pollTrue(expr string, d time.Duration) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(d))(ctx, tg)
		return err
	})
}

func visible(sel string) chromedp.Action[chromedp.Void] {
	return chromedp.WaitVisible(chromedp.CSS(sel))
}

// TestBrowserShowsNewResultsWithoutReload opens the spectator page in a
// real browser, submits plugins over the API and watches their rows appear
// and reorder on the board through the event stream, with no reload; the
// private board is absent until the organizers reveal it.
func TestBrowserShowsNewResultsWithoutReload(t *testing.T) {
	srv := startServer(t, t.TempDir(), "HACKARENA_ORGANIZER_PASSWORD=organizer-password")
	srv.waitFor("/readyz")
	ctx := browser(t)
	bg := context.Background()

	within(t, ctx, 30*time.Second, "open the mnist page",
		chromedp.Navigate(srv.url+"/#/c/mnist"),
		visible(`#public-board table`),
		visible(`#live.on`),
	)
	eval[bool](t, ctx, `window.notReloaded = true`) // a reload would lose this
	privateAbsent := `document.querySelector('#private-board').hidden && !document.querySelector('#private-board table')`
	if !eval[bool](t, ctx, privateAbsent) {
		t.Fatal("the private board is shown before the reveal")
	}

	centroid := buildPlugin(t, "mnist-centroid")
	mlp := buildPlugin(t, "mnist-mlp")
	slow := register(t, srv.url, "Centroid Crew")
	fast := register(t, srv.url, "Neural Ninjas")
	if _, err := slow.Submit(bg, "mnist", centroid); err != nil {
		t.Fatal(err)
	}
	row := func(board, team string) string { return fmt.Sprintf(`#%s tr[data-team=%q]`, board, team) }
	within(t, ctx, 2*time.Minute, "see Centroid Crew's row appear",
		visible(row("public-board", "Centroid Crew")),
		visible(`#feed li .badge.scored`),
	)
	if _, err := fast.Submit(bg, "mnist", mlp); err != nil {
		t.Fatal(err)
	}
	// The better network takes first place: its row is first.
	firstTeam := `document.querySelector('#public-board tbody tr').dataset.team`
	within(t, ctx, 2*time.Minute, "see Neural Ninjas take first place",
		visible(row("public-board", "Neural Ninjas")),
		pollTrue(firstTeam+` === "Neural Ninjas"`, time.Minute),
	)
	if !eval[bool](t, ctx, `window.notReloaded === true`) {
		t.Fatal("the page reloaded to show the new rows")
	}
	// Each score shows its bootstrap interval; the centroid, 15 points
	// behind, is told apart from the leader.
	if n := eval[int](t, ctx, `document.querySelectorAll('#public-board tbody tr .interval').length`); n != 2 {
		t.Fatalf("%d of 2 rows show an interval", n)
	}
	if eval[bool](t, ctx, `document.querySelector('#public-board tr[data-team="Centroid Crew"] .badge.tied') !== null`) {
		t.Fatal("the centroid is marked as tied with the leader")
	}
	if n := eval[int](t, ctx, `document.querySelectorAll('#chart svg path').length`); n != 2 {
		t.Fatalf("the score chart has %d lines, want one per team (2)", n)
	}
	if !eval[bool](t, ctx, privateAbsent) {
		t.Fatal("the private board appeared before the reveal")
	}
	screenshot(t, ctx, "spectator-public.png")

	org, _, err := client.New(srv.url, "").Login(bg, "organizer", "organizer-password")
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, srv.url+"/api/v1/challenges/mnist/reveal", nil)
	req.Header.Set("Authorization", "Bearer "+org)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("reveal: %v %v", resp, err)
	}
	resp.Body.Close()
	within(t, ctx, 30*time.Second, "see the private board after the reveal",
		visible(row("private-board", "Neural Ninjas")),
		visible(row("private-board", "Centroid Crew")),
	)
	if !eval[bool](t, ctx, `window.notReloaded === true`) {
		t.Fatal("the page reloaded to show the private board")
	}
	screenshot(t, ctx, "spectator-revealed.png")

	// The keyboard reaches the controls: from the content, Tab focuses
	// the description's toggle, visibly, and Enter opens it.
	within(t, ctx, 10*time.Second, "tab to the description", chromedp.KeyEvent("\t"))
	if got := eval[string](t, ctx, `document.activeElement.textContent`); got != "About this challenge" {
		t.Fatalf("Tab focuses %q, want the description's toggle", got)
	}
	if outline := eval[string](t, ctx, `getComputedStyle(document.activeElement).outlineStyle`); outline == "none" {
		t.Fatal("the focused toggle has no visible outline")
	}
	within(t, ctx, 10*time.Second, "open the description", chromedp.KeyEvent("\r"))
	if !eval[bool](t, ctx, `document.querySelector('details.description').open && document.querySelector('details.description h1, details.description p') !== null`) {
		t.Fatal("Enter on the toggle did not show the rendered description")
	}

	// Dark mode: the page follows the system's colour scheme.
	if _, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
		Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "dark"}}}); err != nil {
		t.Fatal(err)
	}
	if bg := eval[string](t, ctx, `getComputedStyle(document.body).backgroundColor`); bg != "rgb(17, 18, 24)" {
		t.Fatalf("dark mode body background %s, want the dark theme's rgb(17, 18, 24)", bg)
	}
	screenshot(t, ctx, "spectator-dark.png")
	if _, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{}); err != nil {
		t.Fatal(err)
	}

	// A phone: everything fits the width (nothing scrolls sideways).
	within(t, ctx, 10*time.Second, "emulate a phone", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile))
	if fits := eval[bool](t, ctx, `document.documentElement.scrollWidth <= 390`); !fits {
		t.Fatalf("at phone width the page is %d px wide", eval[int](t, ctx, `document.documentElement.scrollWidth`))
	}
	screenshot(t, ctx, "spectator-phone.png")
	within(t, ctx, 10*time.Second, "back to a desktop window", chromedp.EmulateReset())

	// The list and a team page, for the screenshots and to see they load.
	within(t, ctx, 30*time.Second, "open the challenge list",
		chromedp.Navigate(srv.url+"/#/"),
		visible(`li[data-slug="mnist"] .leader`),
	)
	if leader := eval[string](t, ctx, `document.querySelector('li[data-slug="mnist"] .leader').textContent`); !strings.Contains(leader, "Neural Ninjas") {
		t.Fatalf("the list names %q as mnist's leader", leader)
	}
	screenshot(t, ctx, "spectator-list.png")

	within(t, ctx, 30*time.Second, "open Neural Ninjas' team page",
		chromedp.Navigate(srv.url+"/#/team/Neural%20Ninjas"),
		visible(`#team-submissions tbody tr .badge.scored`),
	)
	// Its one scored submission counts at the end, as its best by public
	// score (the team selected none).
	if final := eval[string](t, ctx, `document.querySelector('#team-submissions tbody tr .badge.final')?.textContent ?? ""`); final != "final (default)" {
		t.Fatalf("the team page marks its final as %q, want \"final (default)\"", final)
	}

	// The organizers disqualify Centroid Crew while the board is open: its
	// row goes, and the page names it under "Disqualified" with the reason;
	// its team page shows its one member and why it is off the boards.
	within(t, ctx, 30*time.Second, "open the mnist page again",
		chromedp.Navigate(srv.url+"/#/c/mnist"),
		visible(row("public-board", "Centroid Crew")),
		visible(`#live.on`),
	)
	if !eval[bool](t, ctx, `document.querySelector('#disqualified').hidden`) {
		t.Fatal("the page lists disqualified teams when there are none")
	}
	req, _ = http.NewRequest(http.MethodPost, srv.url+"/api/v1/challenges/mnist/disqualifications",
		strings.NewReader(`{"team":"Centroid Crew","reason":"submitted another team's model"}`))
	req.Header.Set("Authorization", "Bearer "+org)
	req.Header.Set("Content-Type", "application/json")
	resp, err = http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("disqualify: %v %v", resp, err)
	}
	resp.Body.Close()
	within(t, ctx, 30*time.Second, "see Centroid Crew leave the boards",
		pollTrue(`!document.querySelector('#public-board tr[data-team="Centroid Crew"]') && !document.querySelector('#private-board tr[data-team="Centroid Crew"]')`, 20*time.Second),
		visible(`#disqualified li[data-team="Centroid Crew"]`),
	)
	if text := eval[string](t, ctx, `document.querySelector('#disqualified li').textContent`); !strings.Contains(text, "submitted another team's model") {
		t.Fatalf("the disqualified list says %q", text)
	}
	within(t, ctx, 10*time.Second, "see the chart drop its line",
		pollTrue(`document.querySelectorAll('#chart svg path').length === 1`, 5*time.Second))
	screenshot(t, ctx, "spectator-disqualified.png")
	within(t, ctx, 30*time.Second, "open Centroid Crew's team page",
		chromedp.Navigate(srv.url+"/#/team/Centroid%20Crew"),
		visible(`#team-members li[data-member="Centroid Crew"] .badge.captain`),
		visible(`#team-disqualified .disqualified`),
	)
	if text := eval[string](t, ctx, `document.querySelector('#team-disqualified').textContent`); !strings.Contains(text, "mnist") || !strings.Contains(text, "submitted another team's model") {
		t.Fatalf("the team page says %q", text)
	}
}

// TestProgressMovesInHackctlAndOnTheSpectatorPage: while mnist-cnn (a run
// of several seconds) is judged, `hackctl submit --wait` shows its progress
// moving, and the spectator page, fed by the events stream, draws the
// running submission's percentage in its feed.
func TestProgressMovesInHackctlAndOnTheSpectatorPage(t *testing.T) {
	srv := startServer(t, t.TempDir())
	srv.waitFor("/readyz")
	ctx := browser(t)
	within(t, ctx, 30*time.Second, "open the mnist page",
		chromedp.Navigate(srv.url+"/#/c/mnist"),
		visible(`#live.on`),
	)
	// Every percentage the feed shows, however briefly.
	eval[bool](t, ctx, `(window.seen = new Set(), setInterval(() => document.querySelectorAll('#feed .badge[data-progress]').forEach((b) => window.seen.add(Number(b.dataset.progress))), 20), true)`)
	h := newHackctl(t, srv)
	h.hack("register", "--name", "patient-cnn")
	out := h.hack("submit", "mnist", buildPlugin(t, "mnist-cnn"), "--wait")
	steps := regexp.MustCompile(`running (\d+)/(\d+)`).FindAllStringSubmatch(out, -1)
	distinct := map[string]bool{}
	for _, m := range steps {
		distinct[m[1]] = true
	}
	if len(distinct) < 2 || !strings.Contains(out, "status scored") {
		t.Fatalf("submit --wait showed %d progress values; want it moving to a score:\n%s", len(distinct), out)
	}
	within(t, ctx, time.Minute, "see the submission scored in the feed", visible(`#feed li .badge.scored`))
	if !eval[bool](t, ctx, `[...window.seen].some((p) => p > 0 && p < 100)`) {
		t.Fatalf("the feed never drew a running percentage; it showed %v", eval[[]int](t, ctx, `[...window.seen]`))
	}
}
