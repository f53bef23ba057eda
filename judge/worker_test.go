package judge

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/hackarena/hackarena/challenges"
	"github.com/hackarena/hackarena/internal/redistest"
	"github.com/hackarena/hackarena/internal/smallfs"
	"github.com/hackarena/hackarena/judge/sandbox"
	"github.com/hackarena/hackarena/platform/blob"
	"github.com/hackarena/hackarena/platform/store"
)

// storePlugin puts a built plugin into a blob store, as the API does.
func storePlugin(t *testing.T, blobs *blob.Store, path string) (string, int64) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	staged, err := blobs.Stage(f, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := staged.Commit(); err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	_, _ = f.Seek(0, io.SeekStart)
	_, _ = io.Copy(h, f)
	if got := hex.EncodeToString(h.Sum(nil)); got != staged.SHA256 {
		t.Fatalf("blob sha %s, file sha %s", staged.SHA256, got)
	}
	return staged.SHA256, staged.Size
}

func runWorker(t *testing.T, w *Worker) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
	}
}

func waitStatus(t *testing.T, st *store.Store, id string, within time.Duration) store.Submission {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		sub, err := st.Submission(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if sub.Final() {
			return sub
		}
		if time.Now().After(deadline) {
			t.Fatalf("submission %s still %s after %s", id, sub.Status, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestWorkerTakesOverJobOfDeadWorker(t *testing.T) {
	ctx := context.Background()
	rdb, _ := redistest.Start(t)
	st := store.New(rdb)
	ch := loadMNIST(t)
	reg := challenges.NewRegistry(ch)
	blobs := blob.New(t.TempDir())
	sha, size := storePlugin(t, blobs, buildPlugin(t, "mnist-centroid"))
	if err := st.EnsureGroups(ctx, reg.Slugs()); err != nil {
		t.Fatal(err)
	}
	team, _ := st.CreateTeam(ctx, "t", "h", store.RoleParticipant)
	sub, err := st.Enqueue(ctx, "mnist", team, sha, size)
	if err != nil {
		t.Fatal(err)
	}
	// A worker takes the job, marks it running and dies.
	jobs, err := st.ReadJobs(ctx, reg.Slugs(), "dead-worker", false, time.Second)
	if err != nil || len(jobs) != 1 {
		t.Fatalf("dead worker read: %v %v", jobs, err)
	}
	if _, started, err := st.Start(ctx, jobs[0].SubmissionID, "dead-worker"); err != nil || !started {
		t.Fatal(started, err)
	}

	w := &Worker{Store: st, Challenges: reg, Blobs: blobs, Evaluator: newEvaluator(t, time.Minute),
		Consumer: "live-worker", Lease: time.Second, MaxAttempts: 3, Log: slog.New(slog.DiscardHandler)}
	stop := runWorker(t, w)
	defer stop()
	got := waitStatus(t, st, sub.ID, time.Minute)
	if got.Status != store.StatusScored || got.Attempts != 2 {
		t.Fatalf("after takeover: %s attempts=%d reason=%s %s", got.Status, got.Attempts, got.Reason, got.Message)
	}
	board, _ := st.Board(ctx, "mnist", store.BoardPublic)
	if len(board) != 1 || board[0].SubmissionID != sub.ID {
		t.Fatalf("board: %+v", board)
	}
	if n, _ := st.JudgesAlive(ctx); n != 1 {
		t.Fatalf("%d judges alive, want the live worker's heartbeat", n)
	}
}

// mnistQueue gives a store on a fresh redis-server with the MNIST queue
// created, the registry holding MNIST, and a participant team.
func mnistQueue(t *testing.T) (*store.Store, *challenges.Registry, store.Team) {
	t.Helper()
	rdb, _ := redistest.Start(t)
	st := store.New(rdb)
	reg := challenges.NewRegistry(loadMNIST(t))
	if err := st.EnsureGroups(context.Background(), reg.Slugs()); err != nil {
		t.Fatal(err)
	}
	team, err := st.CreateTeam(context.Background(), "t", "h", store.RoleParticipant)
	if err != nil {
		t.Fatal(err)
	}
	return st, reg, team
}

func TestWorkerAcksAlreadyJudgedJobWithoutRerunning(t *testing.T) {
	ctx := context.Background()
	st, reg, team := mnistQueue(t)
	// No binary in the blob store: a re-run would fail the submission.
	sub, _ := st.Enqueue(ctx, "mnist", team, "0000", 1)
	if jobs, _ := st.ReadJobs(ctx, reg.Slugs(), "w", false, time.Second); len(jobs) != 1 {
		t.Fatal("no job delivered")
	}
	sub, _, err := st.Start(ctx, sub.ID, "w")
	if err != nil {
		t.Fatal(err)
	}
	metrics := &store.Metrics{Public: map[string]float64{"accuracy": 0.7}, Private: map[string]float64{"accuracy": 0.6}}
	if _, err := st.Finish(ctx, sub, store.Result{Status: store.StatusScored, Metrics: metrics}); err != nil {
		t.Fatal(err)
	}
	// The worker died after writing the result, before the boards and the
	// ack; restarted under its name, it finishes the bookkeeping only.
	w := &Worker{Store: st, Challenges: reg, Blobs: blob.New(t.TempDir()), Evaluator: newEvaluator(t, time.Minute),
		Consumer: "w", Lease: time.Hour, MaxAttempts: 3, Log: slog.New(slog.DiscardHandler)}
	stop := runWorker(t, w)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if left, _ := st.ReadJobs(ctx, reg.Slugs(), "w", true, 0); len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("job never acknowledged")
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	got, _ := st.Submission(ctx, sub.ID)
	if got.Status != store.StatusScored || got.Attempts != 1 {
		t.Fatalf("already-judged submission changed: %+v", got)
	}
	for board, want := range map[string]float64{store.BoardPublic: 0.7, store.BoardPrivate: 0.6} {
		entries, _ := st.Board(ctx, "mnist", board)
		if len(entries) != 1 || entries[0].Score != want {
			t.Fatalf("%s board: %+v", board, entries)
		}
	}
}

// TestInternalFailureGivesQuotaBack: a plugin binary lost from the blob
// store (an internal failure, the team's fault in no way) fails the
// submission after its retries and returns the team's daily submission.
func TestInternalFailureGivesQuotaBack(t *testing.T) {
	ctx := context.Background()
	st, reg, team := mnistQueue(t)
	now := time.Now()
	if wait, err := st.TakeQuota(ctx, "mnist", team.ID, 1, now); err != nil || wait != 0 {
		t.Fatal(wait, err)
	}
	sub, _ := st.Enqueue(ctx, "mnist", team, strings.Repeat("0", 64), 1)
	w := &Worker{Store: st, Challenges: reg, Blobs: blob.New(t.TempDir()), Evaluator: newEvaluator(t, time.Minute),
		Consumer: "w", Lease: time.Hour, MaxAttempts: 2, Log: slog.New(slog.DiscardHandler)}
	stop := runWorker(t, w)
	defer stop()
	got := waitStatus(t, st, sub.ID, 30*time.Second)
	if got.Status != store.StatusFailed || got.Reason != ReasonInternal || got.Attempts != 2 || !got.QuotaRefunded {
		t.Fatalf("got %s/%s after %d attempts, refunded=%v: %s", got.Status, got.Reason, got.Attempts, got.QuotaRefunded, got.Message)
	}
	if !strings.Contains(got.Message, "did not count against your daily submissions") {
		t.Fatalf("message %q does not tell the team", got.Message)
	}
	if wait, _ := st.TakeQuota(ctx, "mnist", team.ID, 1, now); wait != 0 {
		t.Fatal("the quota was not given back")
	}
	if board, _ := st.Board(ctx, "mnist", store.BoardPublic); len(board) != 0 {
		t.Fatalf("a failed submission is ranked: %+v", board)
	}
}

// TestRescoreFromKeptPredictions: after the organizers change the metrics,
// a rescore recomputes a judged submission from its kept predictions,
// without running the plugin again.
func TestRescoreFromKeptPredictions(t *testing.T) {
	ctx := context.Background()
	st, reg, team := mnistQueue(t)
	ch := loadMNIST(t)
	blobs := blob.New(t.TempDir())
	preds := &PredictionStore{Dir: t.TempDir()}
	sha, size := storePlugin(t, blobs, buildPlugin(t, "mnist-centroid"))
	sub, _ := st.Enqueue(ctx, "mnist", team, sha, size)
	w := &Worker{Store: st, Challenges: reg, Blobs: blobs, Evaluator: newEvaluator(t, time.Minute), Predictions: preds,
		Consumer: "w", Lease: time.Hour, MaxAttempts: 3, Log: slog.New(slog.DiscardHandler)}
	stop := runWorker(t, w)
	judged := waitStatus(t, st, sub.ID, time.Minute)
	stop()
	if judged.Status != store.StatusScored {
		t.Fatalf("judged %s: %s", judged.Status, judged.Message)
	}
	// The plugin binary is gone: a rescore cannot be running it.
	if err := os.Remove(blobs.Path(sha)); err != nil {
		t.Fatal(err)
	}
	spec := ch.Spec
	spec.Metrics, spec.PrimaryMetric = []string{"macro_f1", "accuracy"}, "macro_f1"
	changed := challenges.Build(ctx, "mnist", spec, challenges.Env{MNISTDir: os.Getenv("HACKARENA_MNIST_DIR")})
	rep, err := Rescore(ctx, st, preds, changed)
	if err != nil || rep.Rescored != 1 || len(rep.Skipped) != 0 {
		t.Fatalf("rescore: %+v %v", rep, err)
	}
	got, _ := st.Submission(ctx, sub.ID)
	if len(got.Metrics.Public) != 2 || got.Metrics.Public["macro_f1"] != judged.Metrics.Public["macro_f1"] ||
		got.Metrics.Private["accuracy"] != judged.Metrics.Private["accuracy"] {
		t.Fatalf("rescored %v, judged %v", got.Metrics.Public, judged.Metrics.Public)
	}
	// A submission whose predictions were not kept is reported, not lost.
	if err := os.Remove(filepath.Join(preds.Dir, sub.ID+".json.gz")); err != nil {
		t.Fatal(err)
	}
	rep, err = Rescore(ctx, st, preds, changed)
	if err != nil || rep.Rescored != 0 || len(rep.Skipped) != 1 || rep.Skipped[0].SubmissionID != sub.ID {
		t.Fatalf("rescore without predictions: %+v %v", rep, err)
	}
}

// TestSandboxFailureIsRetriedAndRefundedButPlatformWordsAreNot: a run the
// judge could not set up (a Docker runtime the engine does not know) is
// retried, then failed as sandbox with the quota given back; a plugin
// whose error imitates that text is crashed, and its quota is spent.
func TestSandboxFailureIsRetriedAndRefundedButPlatformWordsAreNot(t *testing.T) {
	ctx := context.Background()
	st, reg, team := mnistQueue(t)
	blobs := blob.New(t.TempDir())
	now := time.Now()
	broken, err := sandbox.NewDocker(ctx, sandbox.DockerOptions{Runtime: "no-such-runtime", Owner: testOwner()})
	if err != nil {
		t.Fatal(err)
	}
	defer broken.Close()
	for _, tc := range []struct {
		plugin   string
		sb       sandbox.Sandbox
		reason   string
		attempts int
		refunded bool
	}{
		{"mnist-centroid", broken, ReasonSandbox, 2, true},
		{"hostile/imitate-platform", backends(t)["bwrap"], ReasonCrashed, 1, false},
	} {
		if wait, err := st.TakeQuota(ctx, "mnist", team.ID, 1, now); err != nil || wait != 0 {
			t.Fatal(wait, err)
		}
		sha, size := storePlugin(t, blobs, buildPlugin(t, tc.plugin))
		sub, _ := st.Enqueue(ctx, "mnist", team, sha, size)
		w := &Worker{Store: st, Challenges: reg, Blobs: blobs, Evaluator: newEvaluatorOn(t, tc.sb, time.Minute),
			Consumer: "w", Lease: time.Hour, MaxAttempts: 2, Log: slog.New(slog.DiscardHandler)}
		stop := runWorker(t, w)
		got := waitStatus(t, st, sub.ID, time.Minute)
		stop()
		if got.Status != store.StatusFailed || got.Reason != tc.reason || got.Attempts != tc.attempts || got.QuotaRefunded != tc.refunded {
			t.Fatalf("%s: %s/%s after %d attempts, refunded=%v: %s", tc.plugin, got.Status, got.Reason, got.Attempts, got.QuotaRefunded, got.Message)
		}
		wait, _ := st.TakeQuota(ctx, "mnist", team.ID, 1, now)
		if (wait == 0) != tc.refunded {
			t.Fatalf("%s: quota given back = %v, want %v", tc.plugin, wait == 0, tc.refunded)
		}
		if wait == 0 {
			if err := st.ReturnQuota(ctx, "mnist", team.ID, now); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestAJobIsGivenUpOnAfterBoundedDeliveries: a job whose runs keep ending
// without a result (its judges died: here, five starts nobody finished) is
// failed by the next judge instead of being run again, once, as the
// platform's failure, with the quota given back.
func TestAJobIsGivenUpOnAfterBoundedDeliveries(t *testing.T) {
	ctx := context.Background()
	st, reg, team := mnistQueue(t)
	blobs := blob.New(t.TempDir())
	now := time.Now()
	if wait, err := st.TakeQuota(ctx, "mnist", team.ID, 1, now); err != nil || wait != 0 {
		t.Fatal(wait, err)
	}
	sha, size := storePlugin(t, blobs, buildPlugin(t, "mnist-centroid"))
	sub, _ := st.Enqueue(ctx, "mnist", team, sha, size)
	if jobs, err := st.ReadJobs(ctx, reg.Slugs(), "dead", false, time.Second); err != nil || len(jobs) != 1 {
		t.Fatal(jobs, err)
	}
	w := &Worker{Store: st, Challenges: reg, Blobs: blobs, Evaluator: newEvaluator(t, time.Minute),
		Consumer: "live", Lease: 500 * time.Millisecond, MaxAttempts: 3, Log: slog.New(slog.DiscardHandler)}
	for i := 0; i < w.maxDeliveries(); i++ {
		if _, started, err := st.Start(ctx, sub.ID, fmt.Sprintf("dead-%d", i)); err != nil || !started {
			t.Fatal(started, err)
		}
	}
	stop := runWorker(t, w)
	defer stop()
	got := waitStatus(t, st, sub.ID, time.Minute)
	if got.Status != store.StatusFailed || got.Reason != ReasonInternal || !strings.Contains(got.Message, "gave up after 5 attempts") ||
		!got.QuotaRefunded || got.Attempts != w.maxDeliveries()+1 {
		t.Fatalf("got %s/%s after %d attempts, refunded=%v: %s", got.Status, got.Reason, got.Attempts, got.QuotaRefunded, got.Message)
	}
	if wait, _ := st.TakeQuota(ctx, "mnist", team.ID, 1, now); wait != 0 {
		t.Fatal("the quota was not given back")
	}
}

// TestALateJudgeDoesNotMoveTheBoards: while a judge runs a (slow, valid)
// plugin, another takes its job over and records it as failed; the first
// judge's score is refused, and it must not rank the submission either.
func TestALateJudgeDoesNotMoveTheBoards(t *testing.T) {
	ctx := context.Background()
	st, reg, team := mnistQueue(t)
	blobs := blob.New(t.TempDir())
	sha, size := storePlugin(t, blobs, buildPlugin(t, "hostile/fill-socket-dir")) // scores after about 4 s
	sub, _ := st.Enqueue(ctx, "mnist", team, sha, size)
	e := newEvaluator(t, time.Minute)
	judged := make(chan struct{}, 1)
	e.Phase = func(name string, _ time.Duration) {
		if name == "judge" {
			judged <- struct{}{}
		}
	}
	w := &Worker{Store: st, Challenges: reg, Blobs: blobs, Evaluator: e,
		Consumer: "slow", Lease: time.Hour, MaxAttempts: 3, Log: slog.New(slog.DiscardHandler)}
	stop := runWorker(t, w)
	defer stop()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if got, _ := st.Submission(ctx, sub.ID); got.Status == store.StatusRunning {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the job never started")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Another judge takes the job over (as if the first had been frozen
	// past its lease) and records a failure.
	job, err := st.ClaimStale(ctx, reg.Slugs(), "other", 0)
	if err != nil || job == nil {
		t.Fatal(job, err)
	}
	other, _, err := st.Start(ctx, job.SubmissionID, "other")
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := st.Finish(ctx, other, store.Result{Status: store.StatusFailed, Reason: ReasonCrashed, Message: "the other judge's"}); !ok || err != nil {
		t.Fatal(ok, err)
	}
	// The first judge's run ends (it scores) after the other's result;
	// then its result is offered, refused, and nothing more is written.
	select {
	case <-judged:
	case <-time.After(2 * time.Minute):
		t.Fatal("the first judge's run did not end")
	}
	time.Sleep(time.Second)
	got, _ := st.Submission(ctx, sub.ID)
	if got.Status != store.StatusFailed || got.Message != "the other judge's" {
		t.Fatalf("the record is %s %q, want the other judge's failure", got.Status, got.Message)
	}
	for _, board := range []string{store.BoardPublic, store.BoardPrivate} {
		if entries, _ := st.Board(ctx, "mnist", board); len(entries) != 0 {
			t.Fatalf("the %s board ranks a submission recorded as failed: %+v", board, entries)
		}
	}
}

// TestAJudgeRepairsBoardsThatRankByOldRules: the boards still rank by a
// metric the challenge no longer uses (a file edited between restarts);
// the judge's update is refused, and instead of dropping the score it
// rebuilds the boards by the challenge's rules and ranks the submission.
func TestAJudgeRepairsBoardsThatRankByOldRules(t *testing.T) {
	ctx := context.Background()
	st, _, team := mnistQueue(t)
	raw, err := fs.ReadFile(challenges.Builtin, "mnist/challenge.json")
	if err != nil {
		t.Fatal(err)
	}
	spec, err := challenges.DecodeSpec("mnist", bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	spec.PrimaryMetric = "macro_f1"
	ch := challenges.Build(ctx, "mnist", spec, challenges.Env{Datasets: challenges.FindDatasets(), MNISTDir: os.Getenv("HACKARENA_MNIST_DIR")})
	if ch.Status != challenges.StatusOpen {
		t.Fatal(ch.StatusReason)
	}
	// The boards' recorded rules: accuracy.
	if _, err := st.UpdateBoard(ctx, "mnist", store.Rules{Metric: "accuracy", HigherIsBetter: true}, store.Submission{ID: "old", TeamID: "old", TeamName: "old"}, 0.5); err != nil {
		t.Fatal(err)
	}
	blobs := blob.New(t.TempDir())
	sha, size := storePlugin(t, blobs, buildPlugin(t, "mnist-centroid"))
	sub, _ := st.Enqueue(ctx, "mnist", team, sha, size)
	w := &Worker{Store: st, Challenges: challenges.NewRegistry(ch), Blobs: blobs, Evaluator: newEvaluator(t, time.Minute),
		Consumer: "w", Lease: time.Hour, MaxAttempts: 3, Log: slog.New(slog.DiscardHandler)}
	stop := runWorker(t, w)
	defer stop()
	if got := waitStatus(t, st, sub.ID, time.Minute); got.Status != store.StatusScored {
		t.Fatalf("%s %s", got.Status, got.Message)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		metric, _, _ := st.BoardRules(ctx, "mnist")
		entries, _ := st.Board(ctx, "mnist", store.BoardPublic)
		if metric == "macro_f1" && len(entries) == 1 && entries[0].SubmissionID == sub.ID {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("boards rank by %q with %+v; want macro_f1 with the new submission", metric, entries)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestAJudgeOnAFullDiskKeepsTheScore: the predictions of a judged run
// cannot be written (the disk is full); the judge keeps the result, waits
// for room with the job's lease renewed, and once space returns the
// submission is scored with its predictions kept.
func TestAJudgeOnAFullDiskKeepsTheScore(t *testing.T) {
	ctx := context.Background()
	st, reg, team := mnistQueue(t)
	blobs := blob.New(t.TempDir())
	disk := smallfs.Mount(t, 4<<20)
	preds := &PredictionStore{Dir: filepath.Join(disk, "predictions")}
	sha, size := storePlugin(t, blobs, buildPlugin(t, "mnist-centroid"))
	filler := smallfs.Fill(t, disk)
	defer func(d time.Duration) { diskFullPause = d }(diskFullPause)
	diskFullPause = 50 * time.Millisecond
	metrics, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	sub, _ := st.Enqueue(ctx, "mnist", team, sha, size)
	w := &Worker{Store: st, Challenges: reg, Blobs: blobs, Evaluator: newEvaluator(t, time.Minute), Predictions: preds,
		Consumer: "w", Lease: 2 * time.Second, MaxAttempts: 1, Log: slog.New(slog.DiscardHandler), Metrics: metrics}
	stop := runWorker(t, w)
	defer stop()
	for deadline := time.Now().Add(time.Minute); testutil.ToFloat64(metrics.full) < 3; {
		if time.Now().After(deadline) {
			t.Fatal("the judge never waited for room to keep the predictions")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Waiting outlasts the lease: the renewal keeps the job with this judge.
	time.Sleep(3 * time.Second)
	if got, _ := st.Submission(ctx, sub.ID); got.Status != store.StatusRunning || got.Attempts != 1 {
		t.Fatalf("while the disk is full the submission is %s after %d attempt(s), want running after 1", got.Status, got.Attempts)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	judged := waitStatus(t, st, sub.ID, time.Minute)
	if judged.Status != store.StatusScored || judged.Metrics.Public["accuracy"] < 0.5 {
		t.Fatalf("once there is room: %s %v %s", judged.Status, judged.Metrics, judged.Message)
	}
	if _, err := preds.Load(sub.ID); err != nil {
		t.Fatalf("the predictions were not kept: %v", err)
	}
}
