package judge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"net"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/hackarena/hackarena/challenges"
	"github.com/hackarena/hackarena/gpu"
	"github.com/hackarena/hackarena/judge/sandbox"
	"github.com/hackarena/hackarena/judge/scoring"
	"github.com/hackarena/hackarena/platform/store"
	"github.com/hackarena/hackarena/sdk"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Failure reasons a participant can act on (ARCHITECTURE.md); only
// ReasonInternal is retried.
const (
	ReasonInvalidBinary = "invalid_binary"
	ReasonHandshake     = "handshake"
	ReasonTimeout       = "timeout"
	ReasonMemory        = "memory"
	ReasonCrashed       = "crashed"
	ReasonBadOutput     = "bad_output"
	ReasonSandbox       = "sandbox"
	ReasonInternal      = "internal"
	// ReasonBinaryReleased: the storage retention removed the binary of
	// a submission that was queued again (the platform's doing; the team
	// gets its daily submission back).
	ReasonBinaryReleased = "binary_released"
)

// Failure is a judged run that did not produce a score.
type Failure struct {
	Reason string
	Msg    string
}

func (f *Failure) Error() string { return f.Reason + ": " + f.Msg }

func fail(reason, format string, args ...any) *Failure {
	return &Failure{Reason: reason, Msg: fmt.Sprintf(format, args...)}
}

type progressKey struct{}

// WithProgress asks Evaluate to call report after every batch with how
// many of the hidden set's examples are answered.
func WithProgress(ctx context.Context, report func(done, total int)) context.Context {
	return context.WithValue(ctx, progressKey{}, report)
}

// Usage is what one run used, for its record: how long judging took (from
// Describe to the scores), how many examples the plugin answered, its peak
// memory (0 where the sandbox could not tell) and its Engine time.
type Usage struct {
	JudgingSeconds  float64
	Examples        int
	PeakMemoryBytes int64
	EngineSeconds   float64
}

type usageKey struct{}

// WithUsage has Evaluate record what its run used in u.
func WithUsage(ctx context.Context, u *Usage) context.Context {
	return context.WithValue(ctx, usageKey{}, u)
}

func usageOf(ctx context.Context) *Usage {
	if u, ok := ctx.Value(usageKey{}).(*Usage); ok && u != nil {
		return u
	}
	return &Usage{}
}

func progressOf(ctx context.Context) func(done, total int) {
	if report, ok := ctx.Value(progressKey{}).(func(done, total int)); ok {
		return report
	}
	return func(int, int) {}
}

// FailureOf is how an evaluation error ends a submission: its own
// *Failure, or any other error as the platform's (internal).
func FailureOf(err error) *Failure {
	var f *Failure
	if errors.As(err, &f) {
		return f
	}
	return fail(ReasonInternal, "%v", err)
}

// NewEvaluator is the evaluator of a judge worker, and of `hackctl eval`,
// which must judge as the workers do: the same batch size, handshake
// timeout and log cap. wall, when non-zero, overrides the challenges'
// wall-time limits; engines may be nil (no Engine slots).
func NewEvaluator(sb sandbox.Sandbox, socketRoot string, wall time.Duration, engines *gpu.Pool) *Evaluator {
	return &Evaluator{Sandbox: sb, SocketRoot: socketRoot, BatchSize: 1000, StartTimeout: 10 * time.Second,
		WallTime: wall, LogLimit: 64 << 10, Engines: engines}
}

// Evaluator runs one plugin against a challenge's hidden set.
type Evaluator struct {
	Sandbox sandbox.Sandbox
	// SocketRoot holds the per-run socket directories; it must not be under
	// /tmp when the sandbox mounts its own /tmp.
	SocketRoot string
	// BatchSize is how many examples go into one Predict call.
	BatchSize int
	// StartTimeout bounds the go-plugin handshake.
	StartTimeout time.Duration
	// WallTime overrides the challenge's wall-time limit when non-zero.
	WallTime time.Duration
	// LogLimit caps the plugin output kept with the submission.
	LogLimit int
	// Engines lends each run a slot on the shared tensor engine, served
	// by that slot's engine process; nil offers runs no engine.
	Engines *gpu.Pool
	// Phase, when set, hears how long each phase of a run took:
	// "slot_wait" (borrowing an engine slot, when there are engines),
	// "start" (sandbox and handshake) and "judge" (describe, every batch
	// and scoring); within "judge", "outputs_marked" or "outputs_quiet"
	// (the wait for the plugin's start-up output: until the SDK's marker
	// passed on each output, or until they fell quiet).
	Phase func(name string, d time.Duration)
	// Memory, when set, hears the plugin's peak memory once it has exited
	// (0 where the sandbox does not measure it).
	Memory func(peakBytes int64)
}

func (e *Evaluator) phase(name string, since time.Time) time.Time {
	now := time.Now()
	if e.Phase != nil {
		e.Phase(name, now.Sub(since))
	}
	return now
}

func (e *Evaluator) wallTime(ch *challenges.Challenge) time.Duration {
	if e.WallTime > 0 {
		return e.WallTime
	}
	return ch.Limits.WallTime
}

// Evaluate runs team's binary on ch's hidden set. It returns the metrics,
// the predictions, the plugin's (capped) log, and a *Failure when the
// submission fails.
func (e *Evaluator) Evaluate(ctx context.Context, team, binary string, ch *challenges.Challenge) (*store.Metrics, *Predictions, string, error) {
	hidden, err := ch.Hidden()
	if err != nil {
		return nil, nil, "", fail(ReasonInternal, "load hidden test set: %v", err)
	}
	// go-plugin adds "/plugin-dirNNNNNNNNNN/pluginNNNNNNNNNN" (at most 42
	// bytes) and the kernel caps a socket path at 107.
	if len(e.SocketRoot)+42 > 107 {
		return nil, nil, "", fail(ReasonSandbox, "socket directory %q is too long for a unix socket path; use a shorter one", e.SocketRoot)
	}
	// Traversable, not listable: an unprivileged sandbox reaches its own
	// run directory by its (random) name and nothing else.
	if err := os.MkdirAll(e.SocketRoot, 0o711); err != nil {
		return nil, nil, "", fail(ReasonInternal, "create socket dir: %v", err)
	}
	if err := os.Chmod(e.SocketRoot, 0o711); err != nil {
		return nil, nil, "", fail(ReasonInternal, "create socket dir: %v", err)
	}
	// The slot is taken before the wall clock starts: waiting for one is
	// the platform's doing, not the plugin's.
	var lease *gpu.EngineLease
	if e.Engines != nil {
		waiting := time.Now()
		var err error
		if lease, err = e.Engines.Acquire(ctx, team); err != nil {
			return nil, nil, "", fail(ReasonInternal, "%v", err)
		}
		defer lease.Release()
		e.phase("slot_wait", waiting)
	}

	wall := e.wallTime(ch)
	ctx, cancel := context.WithTimeout(ctx, wall)
	defer cancel()

	var run *gpu.Run
	var serveEngine func(net.Listener)
	if lease != nil {
		deadline, _ := ctx.Deadline()
		var err error
		if run, err = lease.Open(gpu.RunSpec{Deadline: deadline, Images: hidden.Images}); err != nil {
			return nil, nil, "", fail(ReasonInternal, "%v", err)
		}
		// Closed before the slot is released (defers run last-in first).
		defer run.Close()
		serveEngine = run.ServeEngine
	}

	logs := newCappedLog(e.LogLimit)
	outcome := &sandbox.Outcome{}
	jr := &judgedRun{e: e, ch: ch, wall: wall, outcome: outcome, run: run, logs: logs}
	// Anything past a bound on go-plugin's own streams ends the run at once.
	jr.guard = &streamGuard{stop: func() {
		if run != nil {
			run.Cancel()
		}
		outcome.Kill()
	}}
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  sdk.Handshake,
		VersionedPlugins: sdk.HostPluginSets(serveEngine),
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		// The Engine gets a socket of its own in the run's directory,
		// handed to the plugin's uid by the sandbox (HostToPlugin), rather
		// than go-plugin's multiplexing: that sends every byte, batches
		// included, through yamux's 256 KiB windows.
		RunnerFunc: e.Sandbox.Runner(sandbox.Spec{Binary: binary, MemoryBytes: ch.Limits.MemoryBytes, Outcome: outcome,
			// CPU time counts every thread: a plugin busy on all cores
			// for the whole wall time stays under it, so reaching it means
			// the wall clock failed.
			CPUSeconds: int(wall.Seconds())*runtime.NumCPU() + 30}),
		UnixSocketConfig: &plugin.UnixSocketConfig{TempDir: e.SocketRoot},
		SkipHostEnv:      true,
		// go-plugin lets a reply grow to 2 GiB; a plugin must not be able
		// to make the judge allocate that (sdk.DialOptions bounds it).
		GRPCDialOptions: append(sdk.DialOptions(), jr.guard.dialOption()),
		StartTimeout:    e.StartTimeout,
		// Each output passes the marker the SDK writes as it answers
		// Describe (awaitMarkers).
		Stderr:     logs.output(),
		SyncStdout: logs.output(),
		SyncStderr: logs.output(),
		Logger:     hclog.NewNullLogger(),
	})
	jr.client = client
	// Shutting down is idempotent and also runs when the start failed
	// half-way; the plugin's peak memory is known once it has exited.
	usage := usageOf(ctx)
	defer func() {
		shutdown(client, outcome)
		usage.PeakMemoryBytes = outcome.PeakBytes()
		if e.Memory != nil {
			e.Memory(usage.PeakMemoryBytes)
		}
		if run != nil {
			usage.EngineSeconds = run.Close().ComputeSeconds
		}
	}()

	// go-plugin's handshake does not watch ctx; kill the plugin when the
	// wall time runs out so a blocked start or call returns. The sandbox
	// kill comes first: go-plugin's Kill waits on the plugin's goodwill.
	// The run's engine work stops at the same moment.
	stop := context.AfterFunc(ctx, func() {
		if run != nil {
			run.Cancel()
		}
		outcome.Kill()
		client.Kill()
	})
	defer stop()

	begin := time.Now()
	model, err := e.connect(client)
	if err != nil {
		return jr.failed(ctx, &startError{err})
	}
	begin = e.phase("start", begin)
	defer func() { usage.JudgingSeconds = time.Since(begin).Seconds() }()
	info, err := model.Describe(ctx)
	if err != nil {
		return jr.failed(ctx, fmt.Errorf("describe: %w", err))
	}
	// What the plugin prints from here on may quote hidden inputs; what
	// it printed before, still arriving, belongs to its team. go-plugin
	// forwards the plugin's outputs asynchronously: past the marker on
	// each, everything printed before Describe has arrived; a plugin
	// that does not mark its outputs gets until they are quiet.
	waiting := time.Now()
	if info.OutputMarked && logs.awaitMarkers(100*time.Millisecond) {
		e.phase("outputs_marked", waiting)
	} else {
		logs.settle(5*time.Millisecond, 10*time.Millisecond, 100*time.Millisecond)
		e.phase("outputs_quiet", waiting)
	}
	_, _ = logs.Write([]byte(firstBatchMarker))
	jr.sentHidden = true
	report := progressOf(ctx)
	pred := &Predictions{Revision: ch.Revision, Seed: ch.Spec.Split.Seed, Examples: examplesOf(hidden)}
	for off := 0; off < hidden.Count; off += e.BatchSize {
		n := min(e.BatchSize, hidden.Count-off)
		batch := hidden.Batch(off, n)
		if run != nil && batch.Images != nil {
			// The plugin may have the Engine read these images where
			// they are (shared with its process) rather than send them
			// back.
			batch.ID = uint64(off/e.BatchSize + 1)
			if err := run.SetBatch(batch.ID, off, n, hidden.Height*hidden.Width); err != nil {
				return jr.failed(ctx, fmt.Errorf("engine: %w", err))
			}
			if info.EngineReadsBatches {
				// The plugin reads them from the Engine only.
				batch.Images = nil
			}
		}
		out, err := model.Predict(ctx, batch)
		if err != nil {
			return jr.failed(ctx, fmt.Errorf("predict batch at example %d: %w", off, err))
		}
		if err := pred.add(ch, out, n, off); err != nil {
			return nil, nil, logs.String(), fail(ReasonBadOutput, "%v", err)
		}
		usage.Examples = off + n
		report(off+n, hidden.Count)
	}
	// Docker tells a container's peak only while it runs.
	outcome.SamplePeak()
	// The plugin answered every batch; whatever its engine did decides
	// first (a plugin may paper over a refusal or a dead engine).
	if run != nil {
		if f := engineVerdict(run.Verdict(), wall); f != nil {
			return nil, nil, logs.String(), f
		}
	}
	metrics, err := Score(ch, hidden, pred)
	if err != nil {
		var bad *scoring.BadOutputError
		if errors.As(err, &bad) {
			return nil, nil, logs.String(), fail(ReasonBadOutput, "%v", err)
		}
		return nil, nil, logs.String(), fail(ReasonInternal, "%v", err)
	}
	e.phase("judge", begin)
	return metrics, pred, logs.String(), nil
}

// Predictions are everything a plugin answered for a hidden set, kept so a
// submission can be rescored without running it again.
type Predictions struct {
	Classes       []int       `json:"classes,omitempty"`
	Probabilities [][]float64 `json:"probabilities,omitempty"`
	Values        []float64   `json:"values,omitempty"`
	// What they answer: the challenge's spec revision and split seed when
	// they were made, and the example each answer is for (HiddenSet's
	// Examples), so a rescore under another split matches each answer to
	// its example again, or says why it cannot.
	Revision int64  `json:"revision"`
	Seed     uint64 `json:"seed"`
	Examples []int  `json:"examples,omitempty"`
}

// add validates one batch's answers and appends them.
func (p *Predictions) add(ch *challenges.Challenge, out sdk.Predictions, n, off int) error {
	if ch.Task == scoring.TaskRegression {
		nonNegative := false
		for _, m := range ch.Metrics {
			nonNegative = nonNegative || scoring.Metrics[m].NonNegative
		}
		if err := scoring.CheckValues(out.Values, n, off, nonNegative); err != nil {
			return err
		}
		p.Values = append(p.Values, out.Values...)
		return nil
	}
	if err := scoring.CheckClasses(out.Classes, n, ch.NumClasses, off); err != nil {
		return err
	}
	p.Classes = append(p.Classes, out.Classes...)
	// Probabilities are optional, but all or none: a plugin that stops
	// sending them half-way has a bug worth reporting.
	switch {
	case len(out.Probabilities) == 0 && (off == 0 || p.Probabilities == nil):
	case off > 0 && p.Probabilities == nil:
		return &scoring.BadOutputError{Msg: fmt.Sprintf("the plugin returned probabilities from example %d on but not before: return them for every batch or none", off)}
	default:
		rows := convertRows[float64](out.Probabilities)
		if err := scoring.CheckProbabilities(rows, n, ch.NumClasses, off); err != nil {
			return err
		}
		p.Probabilities = append(p.Probabilities, rows...)
	}
	return nil
}

// Score computes a challenge's metrics on both parts of its hidden set.
// A metric that needs probabilities the plugin did not return is left out
// rather than failing the submission.
func Score(ch *challenges.Challenge, hidden *challenges.HiddenSet, p *Predictions) (*store.Metrics, error) {
	parts := [2][]bool{hidden.Public, hidden.Private()}
	var scores [2]scoring.Score
	for i, mask := range parts {
		var err error
		if ch.Task == scoring.TaskRegression {
			if len(p.Values) != hidden.Count {
				return nil, &scoring.BadOutputError{Msg: fmt.Sprintf("%d values for %d examples", len(p.Values), hidden.Count)}
			}
			scores[i], err = scoring.Regress(ch.Metrics, hidden.Targets, p.Values, mask)
		} else {
			if len(p.Classes) != hidden.Count {
				return nil, &scoring.BadOutputError{Msg: fmt.Sprintf("%d classes for %d examples", len(p.Classes), hidden.Count)}
			}
			metrics := ch.Metrics
			if p.Probabilities == nil {
				metrics = nil
				for _, m := range ch.Metrics {
					if !scoring.Metrics[m].NeedsProbabilities {
						metrics = append(metrics, m)
					}
				}
			}
			scores[i], err = scoring.Classify(metrics, hidden.Labels, p.Classes, p.Probabilities, mask, ch.NumClasses)
		}
		if err != nil {
			return nil, fmt.Errorf("score: %w", err)
		}
	}
	if err := finiteScores(ch, hidden, p, scores[:]); err != nil {
		return nil, err
	}
	if _, ok := scores[0].Values[ch.PrimaryMetric]; !ok {
		if scoring.Metrics[ch.PrimaryMetric].NeedsProbabilities {
			return nil, &scoring.BadOutputError{Msg: fmt.Sprintf("this challenge ranks by %s, which needs class probabilities: return Probabilities from Predict", ch.PrimaryMetric)}
		}
		return nil, fmt.Errorf("score: primary metric %s is undefined on the public part", ch.PrimaryMetric)
	}
	return &store.Metrics{Public: scores[0].Values, Private: scores[1].Values,
		PublicConfusion: scores[0].Confusion, PrivateConfusion: scores[1].Confusion}, nil
}

// finiteScores refuses metrics that are not finite, which no board can
// rank and no record can store (a price of 1e200 passes every value check,
// but its square does not), naming the first example that made them so.
func finiteScores(ch *challenges.Challenge, hidden *challenges.HiddenSet, p *Predictions, scores []scoring.Score) error {
	for _, sc := range scores {
		for _, name := range slices.Sorted(maps.Keys(sc.Values)) {
			v := sc.Values[name]
			if !math.IsInf(v, 0) && !math.IsNaN(v) {
				continue
			}
			if ch.Task == scoring.TaskRegression {
				for i, pred := range p.Values {
					d := pred - hidden.Targets[i]
					l := math.Log1p(math.Max(pred, 0)) - math.Log1p(math.Max(hidden.Targets[i], 0))
					if math.IsInf(d*d, 0) || math.IsInf(l*l, 0) {
						return &scoring.BadOutputError{Msg: fmt.Sprintf("the prediction for example %d (%g) makes %s infinite: return values on the scale of the target", i, pred, name)}
					}
				}
			}
			return &scoring.BadOutputError{Msg: fmt.Sprintf("the predictions make %s %g, which cannot be ranked: return values on the scale of the target", name, v)}
		}
	}
	return nil
}

func (e *Evaluator) connect(client *plugin.Client) (sdk.Model, error) {
	rpc, err := client.Client()
	if err != nil {
		return nil, err
	}
	raw, err := rpc.Dispense(sdk.PluginName)
	if err != nil {
		return nil, fmt.Errorf("dispense: %w", err)
	}
	model, ok := raw.(sdk.Model)
	if !ok {
		return nil, fmt.Errorf("dispense: plugin returned %T, not a model", raw)
	}
	return model, nil
}

// judgedRun is what classifying a failed run needs to know of it.
type judgedRun struct {
	e       *Evaluator
	ch      *challenges.Challenge
	wall    time.Duration
	client  *plugin.Client
	outcome *sandbox.Outcome
	run     *gpu.Run
	logs    *cappedLog
	guard   *streamGuard
	// sentHidden: the plugin has been sent hidden inputs, so what it says
	// from then on may quote them.
	sentHidden bool
}

// startError is a failure to start the plugin and complete go-plugin's
// handshake: only such errors are read as go-plugin's own messages.
type startError struct{ err error }

func (e *startError) Error() string { return "start: " + e.err.Error() }
func (e *startError) Unwrap() error { return e.err }

// failed classifies a run error and returns it with the plugin's log,
// read after classify has shut the plugin down so its last lines are in.
func (r *judgedRun) failed(ctx context.Context, err error) (*store.Metrics, *Predictions, string, error) {
	f := r.classify(ctx, err)
	return nil, nil, r.logs.String(), f
}

// Bounds of plugin-controlled text quoted in a failure message: the log's
// tail before the plugin saw hidden inputs, and any excerpt after, when
// the team may not read the log itself.
const (
	quotedTail     = 600
	quotedExcerpt  = 100
	privateExcerpt = "its output is shown to the organizers only under this challenge's log policy"
)

// wordsPrivate: what the plugin says now may quote hidden inputs, and
// its team may not read them (the private log policy).
func (r *judgedRun) wordsPrivate() bool {
	return r.sentHidden && r.ch.Limits.Logs != challenges.LogsFull
}

// quote bounds text the plugin controls for a failure message its team
// reads: once the plugin has seen hidden inputs under the private log
// policy, only a short excerpt.
func (r *judgedRun) quote(s string) string {
	if !r.wordsPrivate() {
		return strings.TrimSpace(s)
	}
	s = excerpt(s, quotedExcerpt)
	// Hidden texts are looked for in the excerpt itself: 100 bytes of a
	// review per submission is still the hidden set walking out.
	if hidden, err := r.ch.Hidden(); err == nil && quotesHidden(s, hidden.Texts) {
		return hiddenRemoved
	}
	return s
}

// classify turns a run error into the reason a participant can act on.
// The reason comes from what the judge observed (its own typed errors,
// the sandbox, the engine, the plugin's exit, the wall clock, the shape
// of a reply), never from text the plugin controls: a plugin's error that
// reads like a platform failure is still the plugin's error.
func (r *judgedRun) classify(ctx context.Context, err error) *Failure {
	// Whether the plugin exited by itself, before shutting it down, which
	// waits for the sandbox to report how the run ended (Docker: was it
	// killed for memory?).
	exited := r.client.Exited()
	shutdown(r.client, r.outcome)
	withLog := func(msg string) string {
		if r.wordsPrivate() {
			return msg + " (" + privateExcerpt + ")"
		}
		tail := strings.TrimSpace(r.logs.Tail(quotedTail))
		if tail == "" {
			return msg
		}
		return msg + "; last output: " + tail
	}
	if v := r.guard.Violation(); v != "" {
		return fail(ReasonHandshake, "%s: a plugin must be served by sdk.Serve and leave go-plugin's streams to it", v)
	}
	// What the run's engine did decides before what the plugin said: a
	// refusal for the slot's budget is out of memory, one for the time
	// left is a timeout, whatever the plugin made of it, and an engine
	// process that died is the platform's failure, not the plugin's.
	var engineInput string
	if r.run != nil {
		out := r.run.Close()
		if f := engineVerdict(out, r.wall); f != nil {
			return f
		}
		engineInput = out.Input
	}
	var setup *sandbox.SetupError
	if errors.As(err, &setup) || errors.As(r.outcome.HostFailure(), &setup) {
		return fail(ReasonSandbox, "the judge could not set up or keep the sandbox for this run (%v): the platform's failure, not your plugin's", setup)
	}
	stage := stageOf(err)
	var shape *sdk.ReplyShapeError
	var badAddr *sandbox.AddressError
	var start *startError
	oom := ""
	if r.outcome.OOMKilled() {
		oom = "killed by the kernel at its memory limit"
	} else if status, ok := r.outcome.ExitStatus(); ok && status != 0 {
		// The Go runtime's own report (bubblewrap has no memory cgroup to
		// ask); it counts only for a plugin that did exit with a failure
		// by itself.
		oom = r.quote(oomLine(r.logs.String()))
	}
	switch {
	case errors.As(err, &shape):
		return fail(ReasonBadOutput, "%s: %v", stage, shape)
	case status.Code(err) == codes.ResourceExhausted:
		return fail(ReasonBadOutput, "the plugin's reply is larger than the %d MiB a message may carry (%s); return one prediction per example", sdk.MaxMessageBytes>>20, stage)
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fail(ReasonTimeout, "the run exceeded its wall-time limit (%s) during %s; make Predict return sooner", r.wall, stage)
	case oom != "":
		r.outcome.ReachedLimit(r.ch.Limits.MemoryBytes)
		return fail(ReasonMemory, "plugin ran out of memory (%s) under its limit of %d MiB: use less memory", oom, r.ch.Limits.MemoryBytes>>20)
	case errors.As(err, &badAddr):
		return fail(ReasonHandshake, "%v: a plugin must let sdk.Serve create its socket", badAddr)
	case errors.As(err, &start):
		return r.startFailure(start.err, withLog)
	case exited || status.Code(err) == codes.Unavailable:
		return fail(ReasonCrashed, "%s", withLog("plugin exited during "+stage))
	}
	msg := r.quote(pluginText(err))
	if engineInput != "" {
		return fail(ReasonCrashed, "%s", withLog(fmt.Sprintf("plugin returned an error during %s after the Engine refused its request (%s): %s", stage, engineInput, msg)))
	}
	return fail(ReasonCrashed, "%s", withLog(fmt.Sprintf("plugin returned an error during %s: %s", stage, msg)))
}

// startFailure reads go-plugin's own messages about a failed start; the
// plugin controls at most what follows their fixed openings.
func (r *judgedRun) startFailure(err error, withLog func(string) string) *Failure {
	msg := err.Error()
	lower := strings.ToLower(msg)
	switch {
	case strings.HasPrefix(msg, "plugin exited before we could connect"), strings.Contains(msg, "\nFailed to read any lines from plugin's stdout"):
		return fail(ReasonCrashed, "%s", withLog("plugin exited before completing the go-plugin handshake"))
	case strings.HasPrefix(lower, "incompatible api version with plugin."):
		return fail(ReasonHandshake, "plugin was built for another contract version, and this judge speaks v%d: rebuild it with this platform's SDK (%s)", sdk.ProtocolVersion, excerpt(msg, 200))
	case strings.HasPrefix(msg, "timeout while waiting for plugin to start"):
		return fail(ReasonHandshake, "%s", withLog(fmt.Sprintf("plugin did not complete the go-plugin handshake within %s: its main must call sdk.Serve", r.e.StartTimeout)))
	case strings.HasPrefix(msg, "Unrecognized remote plugin message"), strings.HasPrefix(lower, "incompatible core api version"),
		strings.HasPrefix(lower, "error parsing"), strings.HasPrefix(lower, "unsupported plugin protocol"), strings.HasPrefix(lower, "unknown address type"):
		return fail(ReasonHandshake, "%s", withLog("plugin printed something other than the go-plugin handshake: its main must call sdk.Serve before writing to stdout"))
	}
	if r.client.Exited() {
		return fail(ReasonCrashed, "%s", withLog("plugin exited during start"))
	}
	return fail(ReasonHandshake, "%s", withLog("the plugin's go-plugin handshake failed ("+excerpt(msg, 200)+"): its main must call sdk.Serve"))
}

// pluginText is the text of the plugin's own error: the message of the
// gRPC status it returned.
func pluginText(err error) string {
	var st interface{ GRPCStatus() *status.Status }
	if errors.As(err, &st) {
		return st.GRPCStatus().Message()
	}
	_, text, _ := strings.Cut(err.Error(), ": ")
	return text
}

// stageOf names the part of the run an error came from ("predict batch at
// example 0"), which the judge itself wrote as the error's first words.
func stageOf(err error) string {
	stage, _, _ := strings.Cut(err.Error(), ":")
	return stage
}

// engineVerdict is the failure a run's engine session decides, or nil.
func engineVerdict(out gpu.Outcome, wall time.Duration) *Failure {
	if f := out.Failure; f != nil {
		switch f.Kind {
		case gpu.FailedMemory:
			return fail(ReasonMemory, "engine: %s", f.Msg)
		case gpu.FailedDeadline:
			return fail(ReasonTimeout, "the run exceeded its wall-time limit (%s): %s", wall, f.Msg)
		}
		return fail(ReasonInternal, "engine: %s", f.Msg)
	}
	if out.OverBudget != nil {
		return fail(ReasonMemory, "engine: %v", out.OverBudget)
	}
	if out.Compute != nil {
		return fail(ReasonTimeout, "the run would exceed its wall-time limit (%s): the Engine refused a batch: %v", wall, out.Compute)
	}
	return nil
}

// shutdown lets the plugin exit gracefully for a few seconds, then kills
// its sandbox: go-plugin's Kill asks the plugin to shut down over gRPC and
// waits without a deadline, which never returns for a plugin that stopped
// itself. After the kill it waits a bounded time more: the sandbox's own
// supervision ends the run's output then, so go-plugin returns, and a
// worker is never held by one run.
func shutdown(client *plugin.Client, outcome *sandbox.Outcome) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		client.Kill()
	}()
	select {
	case <-done:
		return
	case <-time.After(gracefulExit):
		outcome.Kill()
	}
	select {
	case <-done:
	case <-time.After(killedExit):
		slog.Warn("a killed plugin's go-plugin client did not return; leaving it", "waited", killedExit)
	}
}

// gracefulExit is how long a plugin may take to exit when asked;
// killedExit how long go-plugin may take to notice a killed one.
const (
	gracefulExit = 5 * time.Second
	killedExit   = 30 * time.Second
)

// oomLine finds the runtime's out-of-memory report in a plugin's output. A
// crash dump puts it first, far from the tail.
func oomLine(log string) string {
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "out of memory") || strings.Contains(line, "cannot allocate memory") {
			return strings.TrimSpace(line)
		}
	}
	return ""
}

// resources is u as a record keeps it, with the binary's size.
func (u *Usage) resources(binaryBytes int64) *store.Resources {
	r := &store.Resources{JudgingSeconds: u.JudgingSeconds, Examples: u.Examples, PeakMemoryBytes: u.PeakMemoryBytes,
		EngineSeconds: u.EngineSeconds, BinaryBytes: binaryBytes}
	if u.JudgingSeconds > 0 {
		r.ExamplesPerSecond = float64(u.Examples) / u.JudgingSeconds
	}
	return r
}
