package judge

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hackarena/hackarena/challenges"
	"github.com/hackarena/hackarena/judge/sandbox"
	"github.com/hackarena/hackarena/judge/scoring"
	"github.com/hackarena/hackarena/sdk/build"
)

var (
	registryOnce sync.Once
	registry     *challenges.Registry
	registryErr  error
)

// loadChallenge loads a builtin challenge from the data mirror (CI has it).
func loadChallenge(t testing.TB, slug string) *challenges.Challenge {
	t.Helper()
	registryOnce.Do(func() {
		env := challenges.Env{Datasets: challenges.FindDatasets(), MNISTDir: os.Getenv("HACKARENA_MNIST_DIR")}
		registry, registryErr = challenges.LoadAll(context.Background(), challenges.Builtin, "challenges", env)
	})
	if registryErr != nil {
		t.Fatal(registryErr)
	}
	ch, ok := registry.Get(slug)
	if !ok || ch.Status != challenges.StatusOpen {
		t.Fatalf("challenge %s not open: %+v", slug, ch)
	}
	return ch
}

func loadMNIST(t testing.TB) *challenges.Challenge { return loadChallenge(t, "mnist") }

// buildPlugin compiles plugins/<name> the way hackctl build does.
func buildPlugin(t testing.TB, name string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), filepath.Base(name))
	if err := build.Plugin(context.Background(), filepath.Join("..", "plugins", name), out); err != nil {
		t.Fatal(err)
	}
	return out
}

var (
	sandboxesOnce sync.Once
	sandboxes     map[string]sandbox.Sandbox
	sandboxesErr  error
)

// backends are both sandboxes; CI has a Docker Engine and bubblewrap, so
// neither may be missing.
func backends(t testing.TB) map[string]sandbox.Sandbox {
	t.Helper()
	sandboxesOnce.Do(func() {
		sandboxes = map[string]sandbox.Sandbox{}
		for _, name := range []string{"bwrap", "docker"} {
			// The owner keeps parallel test packages from removing each
			// other's containers as leftovers.
			sb, err := sandbox.New(context.Background(), name, sandbox.DockerOptions{Owner: testOwner()})
			if err != nil {
				sandboxesErr = fmt.Errorf("%v (run `make test`, which installs bubblewrap; the tests need a running Docker Engine)", err)
				return
			}
			sandboxes[name] = sb
		}
	})
	if sandboxesErr != nil {
		t.Fatal(sandboxesErr)
	}
	return sandboxes
}

// testOwner labels this test process's containers.
func testOwner() string { return fmt.Sprintf("test-judge-%d", os.Getpid()) }

func newEvaluatorOn(t testing.TB, sb sandbox.Sandbox, wall time.Duration) *Evaluator {
	t.Helper()
	// go-plugin's socket dirs go under SocketRoot; keep it short.
	root, err := os.MkdirTemp("", "ev-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	unmount, _, err := sandbox.MountSocketRoot(root)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unmount() })
	return &Evaluator{Sandbox: sb, SocketRoot: root, BatchSize: 1000, StartTimeout: 10 * time.Second, WallTime: wall, LogLimit: 64 << 10}
}

func newEvaluator(t *testing.T, wall time.Duration) *Evaluator {
	t.Helper()
	return newEvaluatorOn(t, backends(t)["bwrap"], wall)
}

func TestEvaluateReferencePluginScores(t *testing.T) {
	ch := loadMNIST(t)
	plugin := buildPlugin(t, "mnist-centroid")
	for name, sb := range backends(t) {
		t.Run(name, func(t *testing.T) {
			testReferenceScores(t, newEvaluatorOn(t, sb, time.Minute), plugin, ch)
		})
	}
}

func testReferenceScores(t *testing.T, e *Evaluator, plugin string, ch *challenges.Challenge) {
	usage := &Usage{}
	metrics, pred, _, err := e.Evaluate(WithUsage(context.Background(), usage), "team", plugin, ch)
	if err != nil {
		t.Fatalf("evaluate: %v", err)
	}
	// What the run used, on either backend: the centroids are about 1 MiB
	// of a 12 MiB binary, so its peak is tens of MiB, and it uses no Engine.
	if usage.Examples != 10000 || usage.JudgingSeconds <= 0 || usage.PeakMemoryBytes < 4<<20 || usage.PeakMemoryBytes > ch.Limits.MemoryBytes || usage.EngineSeconds != 0 {
		t.Errorf("usage %+v", usage)
	}
	for _, part := range []map[string]float64{metrics.Public, metrics.Private} {
		if acc := part["accuracy"]; acc < 0.80 || acc > 0.85 {
			t.Errorf("nearest-centroid accuracy %.4f, want about 0.82", acc)
		}
		if r := part["macro_recall"]; r < 0.78 || r > 0.86 {
			t.Errorf("nearest-centroid macro recall %.4f, want about 0.82", r)
		}
	}
	if len(pred.Classes) != 10000 || pred.Probabilities != nil {
		t.Fatalf("kept %d classes, %d probability rows", len(pred.Classes), len(pred.Probabilities))
	}
	// Rescoring the kept predictions gives the same metrics.
	hidden, _ := ch.Hidden()
	again, err := Score(ch, hidden, pred)
	if err != nil || again.Public["accuracy"] != metrics.Public["accuracy"] || again.Private["macro_f1"] != metrics.Private["macro_f1"] {
		t.Fatalf("rescore gave %+v, %v; judged %+v", again, err, metrics)
	}
}

// TestScoresThatAreNotFiniteAreBadOutput: a price of 1e200 passes the
// value checks but makes the RMSE infinite, which could not be stored and
// made the job loop for ever; it is bad_output naming the example.
func TestScoresThatAreNotFiniteAreBadOutput(t *testing.T) {
	ch := loadChallenge(t, "houses")
	hidden, err := ch.Hidden()
	if err != nil {
		t.Fatal(err)
	}
	p := &Predictions{Values: append([]float64(nil), hidden.Targets...)}
	p.Values[3] = 1e200
	_, err = Score(ch, hidden, p)
	var bad *scoring.BadOutputError
	if !errors.As(err, &bad) || !strings.Contains(bad.Msg, "example 3 (1e+200)") {
		t.Fatalf("got %v, want bad output naming example 3", err)
	}
}

// TestStartUpOutputIsTheTeamsAndPassesItsMarker: what a plugin prints
// while it starts, on any of its three outputs, is in the part of the log
// its team reads, and nothing it printed once it had hidden inputs is;
// the judge moves on when the SDK's marker has passed on each output
// (rather than waiting for them to fall quiet), and the marker itself is
// not in the log.
func TestStartUpOutputIsTheTeamsAndPassesItsMarker(t *testing.T) {
	ch := loadChallenge(t, "houses")
	plugin := buildPlugin(t, "hostile/print-inputs")
	for name, sb := range backends(t) {
		t.Run(name, func(t *testing.T) {
			e := newEvaluatorOn(t, sb, time.Minute)
			var phases []string
			e.Phase = func(phase string, _ time.Duration) { phases = append(phases, phase) }
			_, _, log, err := e.Evaluate(context.Background(), "team", plugin, ch)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(phases, "outputs_marked") || slices.Contains(phases, "outputs_quiet") {
				t.Errorf("phases %v: the judge should have moved on at the SDK's markers", phases)
			}
			if strings.Contains(log, "\x00") || strings.Contains(log, "Describe answered") {
				t.Errorf("the marker is in the log: %q", log[:min(len(log), 500)])
			}
			team := TeamLog(challenges.LogsPrivate, log)
			for _, line := range []string{"print-inputs: starting up", "print-inputs: stderr is ready", "print-inputs: the log is ready"} {
				if !strings.Contains(team, line) {
					t.Errorf("the team's log lacks %q:\n%s", line, team)
				}
			}
			if strings.Contains(team, "column:") || !strings.Contains(log, "column:") {
				t.Errorf("the hidden columns should be in the organizers' log only:\nteam: %.2000s", team)
			}
		})
	}
}
