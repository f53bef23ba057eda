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
	"strings"
	"testing"
	"time"

	"github.com/hackarena/hackarena/challenges"
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
	begin := time.Now()
	_, _, log, err := e.Evaluate(context.Background(), "team", binary, ch)
	took := time.Since(begin).Round(time.Millisecond)
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
