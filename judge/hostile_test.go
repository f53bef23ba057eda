package judge

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hackarena/hackarena/challenges"
	"github.com/hackarena/hackarena/judge/sandbox"
)

// hostileCase is one row of the hostile-plugin table (docs/security.md):
// what the plugin tries, how the run must end, and what the plugin must
// have observed from inside.
type hostileCase struct {
	row    int
	plugin string
	// reason is the expected failure; "" means the run scores.
	reason string
	// mayCrash: failing with crashed is as good as scoring.
	mayCrash bool
	// anyEnding: only check must hold (the row is about what happens
	// to the judge, not how the run ends).
	anyEnding bool
	message   string
	// observed are exact "observed key=value" lines the plugin must log;
	// a value list gives the values allowed per backend.
	observed map[string][]string
	check    func(t *testing.T, backend, log string)
	// flat: the judge's goroutines and heap must be as before the run.
	flat bool
	// maxAlloc, when set, bounds what the judge allocated during the run.
	maxAlloc uint64
	// thenScores: a normal plugin must score right after this one.
	thenScores bool
}

// observations parses the plugin's "observed key=value" lines.
func observations(log string) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(log, "\n") {
		if kv, ok := strings.CutPrefix(strings.TrimSpace(line), "observed "); ok {
			k, v, _ := strings.Cut(kv, "=")
			out[k] = v
		}
	}
	return out
}

var hostileCases = []hostileCase{
	// Row 0: plugins that break the contract rather than the sandbox.
	{row: 0, plugin: "panic-at-start", reason: ReasonCrashed, message: "panic: hostile plugin: panic at start"},
	{row: 0, plugin: "never-answers", reason: ReasonTimeout, message: "wall-time limit (8s) during predict batch at example 0"},
	{row: 0, plugin: "wrong-version", reason: ReasonHandshake, message: "Plugin version: 3, Client versions: ["},
	{row: 1, plugin: "net-escape", observed: map[string][]string{"tcp_reached": {"[]"}, "dns_ok": {"false"}}},
	{row: 2, plugin: "local-services", observed: map[string][]string{"reached": {"[]"}}},
	// At the pids limit the Go runtime cannot start a thread and may
	// crash; either way the judge is fine.
	{row: 3, plugin: "fork-bomb", mayCrash: true, observed: map[string][]string{"refused": {"true"}}},
	{row: 4, plugin: "orphans", check: func(t *testing.T, _, _ string) {
		// Nothing of the run may outlive it.
		out := pgrep(t, "-f", "hackarena-orphan-marker")
		if s := strings.TrimSpace(string(out)); s != "" {
			t.Errorf("orphans survived the run: pids %s", s)
		}
	}},
	{row: 5, plugin: "memory-hog", reason: ReasonMemory, message: "ran out of memory"},
	{row: 6, plugin: "spin", reason: ReasonTimeout, message: "wall-time limit"},
	{row: 7, plugin: "sigstop", reason: ReasonTimeout, message: "wall-time limit"},
	// Whether the flood ends before the deadline depends on the machine
	// (under the race detector it does not).
	{row: 8, plugin: "flood-output", anyEnding: true, check: func(t *testing.T, _, log string) {
		if len(log) > 80<<10 || !strings.Contains(log, "[log truncated:") {
			t.Errorf("log of %d bytes, want at most the 64 KiB cap and a truncation note", len(log))
		}
	}},
	{row: 9, plugin: "fill-disk", observed: map[string][]string{
		// Docker's /tmp is a 16 MiB tmpfs; bubblewrap has no /tmp and a
		// read-only root.
		"tmp_stopped_by": {"ENOSPC", "ENOENT", "EROFS"},
		// The socket directory is on its own 16 MiB tmpfs.
		"socket_dir_stopped_by": {"ENOSPC"},
		"root_stopped_by":       {"EROFS", "EACCES"},
	}, check: func(t *testing.T, _, log string) {
		obs := observations(log)
		for _, k := range []string{"tmp_written_mib", "socket_dir_written_mib", "root_written_mib"} {
			if n := obs[k]; len(n) > 2 || (len(n) == 2 && n > "64") {
				t.Errorf("%s = %s MiB, want at most the 64 MiB file-size limit", k, n)
			}
		}
	}},
	{row: 10, plugin: "read-hidden", check: func(t *testing.T, _, log string) {
		// Only the sandbox's own view may be readable: its cgroup, and
		// pid 1, which is the plugin itself (Docker) or bwrap as nobody.
		harmless := []string{"/proc/1/environ", "/proc/1/cmdline", "/sys/fs/cgroup", "/etc/hostname"}
		list := strings.Trim(observations(log)["readable"], "[]")
		for _, p := range strings.Fields(list) {
			if !slices.Contains(harmless, p) {
				t.Errorf("the plugin could read %s", p)
			}
		}
	}},
	{row: 11, plugin: "write-root", observed: map[string][]string{"written": {"[]"}, "executed_from": {"[]"}}},
	{row: 12, plugin: "syscalls", observed: map[string][]string{"allowed": {"[]"}, "cap_eff": {"0000000000000000"}}},
	{row: 13, plugin: "env-dump", observed: map[string][]string{"env": {
		"HACKARENA_PLUGIN,PLUGIN_MAX_PORT,PLUGIN_MIN_PORT,PLUGIN_PROTOCOL_VERSIONS,PLUGIN_UNIX_SOCKET_DIR,PWD",
		"HACKARENA_PLUGIN,HOME,HOSTNAME,PATH,PLUGIN_MAX_PORT,PLUGIN_MIN_PORT,PLUGIN_PROTOCOL_VERSIONS,PLUGIN_UNIX_SOCKET_DIR",
	}}},
	{row: 14, plugin: "handshake-tcp", reason: ReasonHandshake, message: "is not a unix socket"},
	{row: 14, plugin: "handshake-outside", reason: ReasonHandshake, message: "is outside its socket directory"},
	{row: 14, plugin: "handshake-symlink", reason: ReasonHandshake, message: "is not a socket"},
	{row: 14, plugin: "no-handshake", reason: ReasonHandshake, message: "within 4s"},
	{row: 15, plugin: "huge-reply", reason: ReasonBadOutput, message: "larger than the 64 MiB"},
	{row: 15, plugin: "wrong-count", reason: ReasonBadOutput, message: "returned 999 class predictions"},
	// 15 million rows of one class in 60 MiB: refused from the declared
	// sizes, before a row is built (it cost 2.7 GiB when built first).
	{row: 15, plugin: "one-class-reply", reason: ReasonBadOutput, message: "rows of 1 classes", maxAlloc: 400 << 20, thenScores: true},
	// A 1 MiB line straight to fds 1 and 2: the run still ends (it hung
	// a Docker worker for ever), and the worker goes on.
	{row: 20, plugin: "long-line", observed: map[string][]string{"written_mib": {"1"}}, thenScores: true},
	// The broker stream the judge does not use: the run fails at the
	// first message past the bound, and the judge stays as it was.
	{row: 21, plugin: "broker-flood", reason: ReasonHandshake, message: "broker stream", flat: true, thenScores: true},
	// Words that read like the platform's failures are still the
	// plugin's: crashed, and no refund.
	{row: 22, plugin: "imitate-platform", reason: ReasonCrashed, message: "plugin returned an error during predict batch at example 0", thenScores: true},
}

// TestHostileSuite submits every hostile plugin to both sandboxes and
// checks that each attack failed inside, that the run ended as it should,
// and that afterwards a normal plugin still scores and nothing is left.
func TestHostileSuite(t *testing.T) {
	ch := loadMNIST(t)
	// An abstract unix socket on the host (row 2): sandboxes have their
	// own network namespace, so they cannot reach it.
	abstract, err := net.Listen("unix", "@hackarena-hostile-abstract")
	if err != nil {
		t.Fatal(err)
	}
	defer abstract.Close()

	binaries := map[string]string{}
	for _, tc := range hostileCases {
		if _, ok := binaries[tc.plugin]; !ok {
			binaries[tc.plugin] = buildPlugin(t, "hostile/"+tc.plugin)
		}
	}
	reference := buildPlugin(t, "mnist-centroid")
	for name, sb := range backends(t) {
		t.Run(name, func(t *testing.T) {
			e := newEvaluatorOn(t, sb, 8*time.Second)
			e.StartTimeout = 4 * time.Second
			var before runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			for _, tc := range hostileCases {
				t.Run(fmt.Sprintf("row%02d-%s", tc.row, tc.plugin), func(t *testing.T) {
					runHostile(t, e, name, binaries[tc.plugin], ch, tc)
					if tc.thenScores {
						testReferenceScores(t, newEvaluatorOn(t, sb, time.Minute), reference, ch)
					}
				})
			}
			var after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&after)
			if grown := int64(after.HeapInuse) - int64(before.HeapInuse); grown > 64<<20 {
				t.Errorf("judge heap grew by %d MiB over the suite", grown>>20)
			}
			// After the whole suite the judge still scores a normal plugin.
			testReferenceScores(t, newEvaluatorOn(t, sb, time.Minute), reference, ch)
			assertNothingLeft(t, name, e.SocketRoot)
		})
	}
}

func runHostile(t *testing.T, e *Evaluator, backend, binary string, ch *challenges.Challenge, tc hostileCase) {
	t.Helper()
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	goroutines := runtime.NumGoroutine()
	begin := time.Now()
	usage := &Usage{}
	_, _, log, err := e.Evaluate(WithUsage(context.Background(), usage), "team", binary, ch)
	took := time.Since(begin).Round(time.Millisecond)
	if tc.plugin == "memory-hog" {
		// Stopped for memory, it reached its limit: that is its figure, on
		// either backend.
		if usage.PeakMemoryBytes < ch.Limits.MemoryBytes/2 || usage.PeakMemoryBytes > 2*ch.Limits.MemoryBytes {
			t.Errorf("the memory hog's peak is %d MiB, its limit %d MiB", usage.PeakMemoryBytes>>20, ch.Limits.MemoryBytes>>20)
		}
		t.Logf("peak %d MiB of a %d MiB limit", usage.PeakMemoryBytes>>20, ch.Limits.MemoryBytes>>20)
	}
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if tc.maxAlloc > 0 {
		allocated := after.TotalAlloc - before.TotalAlloc
		if allocated > tc.maxAlloc {
			t.Errorf("the judge allocated %d MiB during the run, want at most %d", allocated>>20, tc.maxAlloc>>20)
		}
		t.Logf("the judge allocated %d MiB during the run", allocated>>20)
	}
	if tc.flat {
		assertFlat(t, goroutines, before.HeapInuse)
	}
	if f := (*Failure)(nil); errors.As(err, &f) && (f.Reason == ReasonSandbox || f.Reason == ReasonInternal) {
		t.Errorf("a hostile plugin got a platform failure, which refunds it: %v", f)
	}
	var f *Failure
	if tc.anyEnding {
		tc.check(t, backend, log)
		t.Logf("ended after %s with %v", took, err)
		return
	}
	if tc.mayCrash && errors.As(err, &f) && f.Reason == ReasonCrashed {
		t.Logf("crashed after %s (allowed): %s", took, f.Msg)
		return
	}
	switch {
	case tc.reason == "" && err != nil:
		t.Fatalf("want a score, got %v after %s; log:\n%s", err, took, tail(log))
	case tc.reason != "" && !errors.As(err, &f):
		t.Fatalf("want failure %s, got %v after %s", tc.reason, err, took)
	case tc.reason != "" && (f.Reason != tc.reason || !strings.Contains(f.Msg, tc.message)):
		t.Fatalf("got %s %q after %s, want %s mentioning %q", f.Reason, f.Msg, took, tc.reason, tc.message)
	}
	obs := observations(log)
	for k, allowed := range tc.observed {
		if !slices.Contains(allowed, obs[k]) {
			t.Errorf("observed %s=%q, want one of %q", k, obs[k], allowed)
		}
	}
	if len(tc.observed) > 0 && obs["attack_done"] != "true" {
		t.Errorf("the attack did not finish; log:\n%s", tail(log))
	}
	if tc.check != nil {
		tc.check(t, backend, log)
	}
	t.Logf("%s after %s; observed %v", map[bool]string{true: "scored", false: "failed"}[err == nil], took, obs)
}

// assertFlat: the judge is back to the goroutines and heap it had before
// a run (go-plugin's own goroutines take a moment to end).
func assertFlat(t *testing.T, goroutines int, heapInuse uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var now runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&now)
		n := runtime.NumGoroutine()
		grown := int64(now.HeapInuse) - int64(heapInuse)
		if n <= goroutines+20 && grown <= 64<<20 {
			t.Logf("goroutines %d (before %d), heap grown by %d KiB", n, goroutines, grown>>10)
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("after the run: %d goroutines (before %d), heap grown by %d MiB", n, goroutines, grown>>20)
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// pgrep lists matching processes; it must exist (make test installs
// procps), or the checks that nothing survived would pass vacuously.
func pgrep(t *testing.T, args ...string) []byte {
	t.Helper()
	out, err := exec.Command("pgrep", args...).Output()
	var exit *exec.ExitError
	if err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 1) { // 1: no process matched
		t.Fatalf("pgrep %v: %v (run `make test`, which installs procps)", args, err)
	}
	return out
}

func tail(s string) string {
	if len(s) > 2000 {
		return "…" + s[len(s)-2000:]
	}
	return s
}

// assertNothingLeft: no sandbox container, no process of the hostile
// plugins, and no run directory remain.
func assertNothingLeft(t *testing.T, backend, socketRoot string) {
	t.Helper()
	if backend == "docker" {
		out, err := exec.Command("docker", "ps", "-aq", "--filter", "label=io.hackarena.sandbox="+testOwner()).Output()
		if err != nil {
			t.Errorf("docker ps: %v", err)
		} else if s := strings.TrimSpace(string(out)); s != "" {
			t.Errorf("containers left behind: %s", s)
		}
	}
	// Other test packages run plugins at the same time: look only for the
	// hostile plugins' children and for bubblewrap processes of this
	// suite's socket directory.
	leftover := regexp.MustCompile(`hackarena-(orphan-marker|fork-bomb-child)|` + regexp.QuoteMeta(socketRoot))
	out := pgrep(t, "-a", ".")
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if leftover.MatchString(line) {
			t.Errorf("process left behind: %s", line)
		}
	}
	entries, _ := os.ReadDir(socketRoot)
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".") {
			t.Errorf("run directory left behind: %s", filepath.Join(socketRoot, e.Name()))
		}
	}
}

// TestForkBombDoesNotStarveAConcurrentRun: two workers judge at once, one
// of them a fork bomb; the other run still scores. (In bubblewrap the
// process limit is per uid, so each run has a uid of its own.)
func TestForkBombDoesNotStarveAConcurrentRun(t *testing.T) {
	ch := loadMNIST(t)
	bomb := buildPlugin(t, "hostile/fork-bomb")
	reference := buildPlugin(t, "mnist-centroid")
	for name, sb := range backends(t) {
		t.Run(name, func(t *testing.T) {
			done := make(chan error, 1)
			go func() {
				_, _, _, err := newEvaluatorOn(t, sb, 30*time.Second).Evaluate(context.Background(), "team", bomb, ch)
				done <- err
			}()
			// Start the reference run while the bomb is at its limit.
			time.Sleep(time.Second)
			testReferenceScores(t, newEvaluatorOn(t, sb, 30*time.Second), reference, ch)
			if err := <-done; err != nil {
				var f *Failure
				if !errors.As(err, &f) || f.Reason != ReasonCrashed {
					t.Errorf("fork bomb ended with %v, want a score or crashed", err)
				}
			}
		})
	}
}

// TestFilledDirectoriesDoNotReachAnotherRun: one run fills what it can
// write (its socket directory with bytes or files, Docker's /tmp) and
// holds it while it answers slowly; another team's run, judged at the
// same time by a second worker of the same judge (same socket root),
// scores every time, and the attacker ends at its own caps.
func TestFilledDirectoriesDoNotReachAnotherRun(t *testing.T) {
	ch := loadMNIST(t)
	reference := buildPlugin(t, "mnist-centroid")
	nowhere := []string{"ENOENT", "EROFS"} // bubblewrap has no /tmp
	attackers := []struct {
		plugin   string
		observed map[string][]string
	}{
		{"fill-socket-dir", map[string][]string{"socket_dir_stopped_by": {"ENOSPC"}}},
		{"create-files", map[string][]string{"socket_dir_stopped_by": {"ENOSPC"}, "tmp_stopped_by": append([]string{"ENOSPC"}, nowhere...)}},
		{"fill-tmp", map[string][]string{"tmp_stopped_by": append([]string{"ENOSPC"}, nowhere...)}},
	}
	binaries := map[string]string{}
	for _, a := range attackers {
		binaries[a.plugin] = buildPlugin(t, "hostile/"+a.plugin)
	}
	for name, sb := range backends(t) {
		for _, a := range attackers {
			t.Run(name+"/"+a.plugin, func(t *testing.T) {
				attacker := newEvaluatorOn(t, sb, time.Minute)
				victim := *attacker
				type result struct {
					log string
					err error
				}
				done := make(chan result, 1)
				go func() {
					_, _, log, err := attacker.Evaluate(context.Background(), "attacker", binaries[a.plugin], ch)
					done <- result{log, err}
				}()
				// The attacker fills on its first batch, then holds for
				// about 4 s.
				time.Sleep(1500 * time.Millisecond)
				testReferenceScores(t, &victim, reference, ch)
				r := <-done
				if r.err != nil {
					t.Fatalf("the attacker did not score (it should stop at its own caps and go on): %v\n%s", r.err, tail(r.log))
				}
				obs := observations(r.log)
				for k, allowed := range a.observed {
					if !slices.Contains(allowed, obs[k]) {
						t.Errorf("attacker observed %s=%q, want one of %q", k, obs[k], allowed)
					}
				}
				if n, _ := strconv.Atoi(obs["socket_dir_files"]); n > sandbox.RunDirInodes {
					t.Errorf("the attacker created %d files in its socket directory, over its cap of %d inodes", n, sandbox.RunDirInodes)
				}
				if kib, _ := strconv.Atoi(obs["socket_dir_written_kib"]); kib > sandbox.RunDirBytes>>10 {
					t.Errorf("the attacker wrote %d KiB to its socket directory, over its cap of %d", kib, sandbox.RunDirBytes>>10)
				}
				t.Logf("attacker observed %v", obs)
			})
		}
	}
}

// TestFailuresToHostARunAreTheJudges: when the judge cannot set up or
// host a run (its binary gone from the blob store, an OCI runtime the
// Docker Engine does not know, the container removed from under the run)
// the reason is sandbox, which refunds the team, whatever the plugin did.
func TestFailuresToHostARunAreTheJudges(t *testing.T) {
	ch := loadMNIST(t)
	reference := buildPlugin(t, "mnist-centroid")
	never := buildPlugin(t, "hostile/never-answers")
	wantSandbox := func(t *testing.T, err error, mention string) {
		t.Helper()
		var f *Failure
		if !errors.As(err, &f) || f.Reason != ReasonSandbox || !strings.Contains(f.Msg, mention) {
			t.Fatalf("got %v, want sandbox mentioning %q", err, mention)
		}
	}
	for name, sb := range backends(t) {
		t.Run(name+"/binary-missing", func(t *testing.T) {
			_, _, _, err := newEvaluatorOn(t, sb, 20*time.Second).Evaluate(context.Background(), "team", filepath.Join(t.TempDir(), "gone"), ch)
			wantSandbox(t, err, "could not set up or keep the sandbox")
		})
	}
	t.Run("docker/unknown-runtime", func(t *testing.T) {
		sb, err := sandbox.NewDocker(context.Background(), sandbox.DockerOptions{Runtime: "no-such-runtime", Owner: testOwner()})
		if err != nil {
			t.Fatal(err)
		}
		defer sb.Close()
		_, _, _, err = newEvaluatorOn(t, sb, 20*time.Second).Evaluate(context.Background(), "team", reference, ch)
		wantSandbox(t, err, "no-such-runtime")
	})
	t.Run("docker/container-removed-mid-run", func(t *testing.T) {
		done := make(chan error, 1)
		go func() {
			_, _, _, err := newEvaluatorOn(t, backends(t)["docker"], 30*time.Second).Evaluate(context.Background(), "team", never, ch)
			done <- err
		}()
		// never-answers is waiting in its first Predict by then.
		time.Sleep(3 * time.Second)
		out, err := exec.Command("docker", "ps", "-q", "--filter", "label=io.hackarena.sandbox="+testOwner()).Output()
		if err != nil || len(strings.Fields(string(out))) == 0 {
			t.Fatalf("no running sandbox container to remove: %v %s", err, out)
		}
		if out, err := exec.Command("docker", append([]string{"rm", "-f"}, strings.Fields(string(out))...)...).CombinedOutput(); err != nil {
			t.Fatalf("docker rm: %v %s", err, out)
		}
		wantSandbox(t, <-done, "docker sandbox")
	})
}

// TestFailureMessagesDoNotQuoteHiddenInputs: a plugin fails its first
// IMDB batch with an error that is a hidden review, after printing the
// batch. Under the private log policy the message has no review text and
// no log tail; under "full" it has both.
func TestFailureMessagesDoNotQuoteHiddenInputs(t *testing.T) {
	ch := loadChallenge(t, "imdb")
	hidden, err := ch.Hidden()
	if err != nil {
		t.Fatal(err)
	}
	plugin := buildPlugin(t, "hostile/quote-inputs")
	e := newEvaluatorOn(t, backends(t)["bwrap"], time.Minute)
	first := hidden.Texts[0]
	// The challenge is the package's shared one: put its policy back.
	defer func(was string) { ch.Limits.Logs = was }(ch.Limits.Logs)
	for _, policy := range []string{challenges.LogsPrivate, challenges.LogsFull} {
		t.Run(policy, func(t *testing.T) {
			ch.Limits.Logs = policy
			_, _, log, err := e.Evaluate(context.Background(), "team", plugin, ch)
			var f *Failure
			if !errors.As(err, &f) || f.Reason != ReasonCrashed {
				t.Fatalf("got %v, want crashed", err)
			}
			if !strings.Contains(log, first[:40]) {
				t.Fatalf("the organizers' log lacks the printed batch")
			}
			quoted := false
			for _, text := range hidden.Texts {
				for off := 0; off+30 <= len(text); off += 30 {
					quoted = quoted || strings.Contains(f.Msg, text[off:off+30])
				}
			}
			if policy == challenges.LogsPrivate && (quoted || !strings.Contains(f.Msg, "shown to the organizers only")) {
				t.Fatalf("private policy: the message quotes hidden text or does not say where it is: %s", f.Msg)
			}
			if policy == challenges.LogsFull && !quoted {
				t.Fatalf("full policy: the message should quote the plugin: %s", f.Msg)
			}
		})
	}
}
