package judge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/hackarena/hackarena/challenges"
	"github.com/hackarena/hackarena/platform/blob"
	"github.com/hackarena/hackarena/platform/store"
)

// Worker takes jobs from the challenge queues and judges them one at a time.
type Worker struct {
	Store      *store.Store
	Challenges *challenges.Registry
	Blobs      *blob.Store
	Evaluator  *Evaluator
	// Consumer is this worker's name in the consumer group; a restarted
	// worker with the same name resumes its own unfinished jobs at once.
	Consumer string
	// Lease is how long a job may stay unacknowledged with another worker
	// before this one takes it over (that worker is presumed dead).
	Lease time.Duration
	// MaxAttempts bounds retries of internal failures.
	MaxAttempts int
	// Predictions keeps each scored submission's answers for rescoring.
	Predictions *PredictionStore
	// Refresh, when set, brings Challenges up to date with organizer
	// changes; it runs before each job.
	Refresh func(ctx context.Context) error
	// Metrics counts what this worker finished and how long runs took;
	// nil records nothing.
	Metrics *Metrics
	Log     *slog.Logger
}

// Run judges jobs until ctx is cancelled.
func (w *Worker) Run(ctx context.Context) error {
	w.refresh(ctx)
	slugs := w.Challenges.Slugs()
	if err := w.Store.EnsureGroups(ctx, slugs); err != nil {
		return err
	}
	w.Log.Info("judge worker started", "consumer", w.Consumer, "sandbox", w.Evaluator.Sandbox.Name(), "challenges", slugs)

	// The heartbeat has its own goroutine so a long run does not make the
	// worker look dead to /readyz.
	beatCtx, stopBeat := context.WithCancel(ctx)
	beatDone := make(chan struct{})
	go func() {
		defer close(beatDone)
		w.heartbeat(beatCtx)
	}()
	defer func() { stopBeat(); <-beatDone }()

	// First the jobs this consumer name was given before a crash, each
	// once, then new and stale ones.
	pending := true
	resumed := map[string]bool{}
	// A read may hand over more than one job (one per queue that woke
	// it); every one is handled before the next read.
	lastClaim := time.Time{}
	for ctx.Err() == nil {
		// An organizer may have added a challenge: read its queue too.
		if now := w.Challenges.Slugs(); len(now) != len(slugs) {
			if err := w.Store.EnsureGroups(ctx, now); err != nil {
				w.Log.Error("create queues of new challenges", "err", err)
			} else {
				slugs = now
			}
		}
		var jobs []*store.Job
		var err error
		switch {
		case pending:
			jobs, err = w.Store.ReadJobs(ctx, slugs, w.Consumer, true, 0)
			fresh := jobs[:0]
			for _, j := range jobs {
				if !resumed[j.StreamID] {
					resumed[j.StreamID] = true
					fresh = append(fresh, j)
				}
			}
			if err == nil && len(fresh) == 0 {
				pending = false
				continue
			}
			jobs = fresh
		case time.Since(lastClaim) > w.Lease/4:
			lastClaim = time.Now()
			var job *store.Job
			job, err = w.Store.ClaimStale(ctx, slugs, w.Consumer, w.Lease)
			if job == nil && err == nil {
				continue
			}
			jobs = []*store.Job{job}
		default:
			jobs, err = w.Store.ReadJobs(ctx, slugs, w.Consumer, false, 2*time.Second)
		}
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			w.Log.Error("judge queue read failed; retrying", "err", err)
			sleep(ctx, time.Second)
			continue
		}
		for i, job := range jobs {
			if ctx.Err() != nil {
				// Stopping: give back what this worker holds but has not
				// started, instead of leaving it to the lease.
				for _, left := range jobs[i:] {
					w.requeue(left, 0, "the judge stopped before the run; it will be judged", w.Log)
				}
				break
			}
			w.refresh(ctx)
			w.handle(ctx, job)
		}
	}
	return nil
}

func (w *Worker) refresh(ctx context.Context) {
	if w.Refresh == nil {
		return
	}
	if err := w.Refresh(ctx); err != nil && ctx.Err() == nil {
		w.Log.Warn("refresh challenge definitions; judging with the ones loaded", "err", err)
	}
}

// heartbeatTTL is how long a worker counts as alive after its last beat.
const heartbeatTTL = 15 * time.Second

func (w *Worker) heartbeat(ctx context.Context) {
	tick := time.NewTicker(heartbeatTTL / 3)
	defer tick.Stop()
	for {
		if err := w.Store.Heartbeat(ctx, w.Consumer, heartbeatTTL); err != nil && ctx.Err() == nil {
			w.Log.Warn("judge heartbeat failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// handle judges one job. The job is acknowledged only after its result is
// written, so a worker that dies mid-run leaves it for another.
func (w *Worker) handle(ctx context.Context, job *store.Job) {
	log := w.Log.With("submission_id", job.SubmissionID, "challenge", job.Challenge)
	sub, started, err := w.Store.Start(ctx, job.SubmissionID, w.Consumer)
	if errors.Is(err, store.ErrNotFound) {
		log.Warn("queue entry without submission record; dropping it")
		w.ack(ctx, job, log)
		return
	}
	if err != nil {
		log.Error("start submission", "err", err)
		return
	}
	ch, ok := w.Challenges.Get(job.Challenge)
	if !ok {
		w.finish(ctx, job, nil, sub, nil, nil, "", fail(ReasonInternal, "challenge %q is not loaded on this judge", job.Challenge), log, nil)
		return
	}
	if !started {
		// Judged already by a worker that died before acknowledging:
		// finish the bookkeeping it may have missed.
		if sub.Status == store.StatusScored && sub.Metrics != nil {
			if err := w.updateBoards(ctx, ch, sub, sub.Metrics, log); err != nil {
				return // left pending: the bookkeeping is done again
			}
			// It may also have died before announcing the board.
			if err := w.Store.PublishBoard(ctx, ch.Slug, ch.PrimaryMetric, ch.HigherIsBetter); err != nil {
				log.Error("publish leaderboard; the job stays pending", "err", err)
				return
			}
		}
		w.ack(ctx, job, log)
		return
	}
	log = log.With("attempt", sub.Attempts)
	// Every delivery counts an attempt, whatever ended the last one (a
	// judge that died mid-run, a result that could not be written): past
	// the bound the job is given up on, the platform's failure.
	if sub.Attempts > w.maxDeliveries() {
		w.finish(ctx, job, ch, sub, nil, nil, "", fail(ReasonInternal, "the judge gave up after %d attempts that ended without a result (a judge stopped or failed while running it)", sub.Attempts-1), log, nil)
		return
	}
	// While it runs, the job's lease is renewed, so no other judge takes
	// it over; the renewal stops when the run is no longer current.
	leaseCtx, stopLease := context.WithCancel(ctx)
	leaseDone := make(chan struct{})
	go func() {
		defer close(leaseDone)
		w.renewLease(leaseCtx, job, sub.Attempts, log)
	}()
	endLease := sync.OnceFunc(func() { stopLease(); <-leaseDone })
	defer endLease()
	log.Info("judging", "team", sub.TeamName)
	begin := time.Now()
	var metrics *store.Metrics
	var pred *Predictions
	var logs string
	usage := &Usage{}
	binary := w.Blobs.Path(sub.SHA256)
	if _, statErr := os.Stat(binary); statErr != nil {
		err = fail(ReasonInternal, "plugin binary %s is missing from the blob store", sub.SHA256)
		if !sub.BinaryReleasedAt.IsZero() {
			err = fail(ReasonBinaryReleased, "its plugin binary was released by the storage retention on %s, so it cannot run again; submit the plugin again to have it judged", sub.BinaryReleasedAt.UTC().Format("2006-01-02 15:04 UTC"))
		}
	} else {
		metrics, pred, logs, err = w.Evaluator.Evaluate(WithUsage(WithProgress(ctx, w.progress(ctx, sub, log)), usage), sub.TeamID, binary, ch)
	}
	if err == nil && w.Predictions != nil {
		if saveErr := w.savePredictions(ctx, sub.ID, pred, log); saveErr != nil {
			err = fail(ReasonInternal, "keep predictions: %v", saveErr)
		}
	}
	// The run is over: what follows is written under its attempt, and a
	// renewal racing it would only report the run's own result as fenced.
	endLease()
	if ctx.Err() != nil {
		// Stopping: the result is meaningless; give the job back.
		w.requeue(job, sub.Attempts, "the judge stopped during the run; it will be judged again", log)
		return
	}
	var f *Failure
	// The platform's own failures are retried: an internal error, or a
	// sandbox the judge could not set up (the plugin never ran).
	if errors.As(err, &f) && (f.Reason == ReasonInternal || f.Reason == ReasonSandbox) && sub.Attempts < w.MaxAttempts {
		log.Warn("platform failure; requeueing", "reason", f.Reason, "err", err)
		w.requeue(job, sub.Attempts, "retrying after an internal error: "+f.Msg, log)
		return
	}
	log.Info("judged", "took", time.Since(begin).Round(time.Millisecond), "err", err)
	w.finish(ctx, job, ch, sub, metrics, pred, logs, err, log, usage)
}

func (w *Worker) requeue(job *store.Job, attempt int, msg string, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := w.Store.Requeue(ctx, job, attempt, msg)
	switch {
	case errors.Is(err, store.ErrFenced):
		w.Metrics.fencedWrite("requeue")
		log.Warn("not requeued: the submission is final or another judge's attempt is current")
	case err != nil:
		log.Error("requeue failed; the job stays pending for reclaim", "err", err)
	}
}

// savePredictions keeps a run's predictions. On a full disk it waits for
// room, trying again with a growing pause, for as long as the judge runs:
// the score was computed and is not thrown away for want of space, and a
// judge that cannot write takes no other job meanwhile. The job's lease
// is renewed while it waits; a judge stopped meanwhile gives the job
// back, to be judged again.
func (w *Worker) savePredictions(ctx context.Context, id string, pred *Predictions, log *slog.Logger) error {
	wait := time.Second
	for {
		err := w.Predictions.Save(id, pred)
		if err == nil || !blob.IsNoSpace(err) || ctx.Err() != nil {
			return err
		}
		log.Error("the disk is full: the predictions of a judged run cannot be kept; waiting for room", "retry_in", wait, "err", err)
		w.Metrics.diskFull()
		sleep(ctx, wait)
		wait = min(2*wait, diskFullPause)
	}
}

// diskFullPause is the longest pause between tries to write on a full
// disk.
var diskFullPause = 30 * time.Second

// progressEvery is how often at most a run's progress is recorded (the
// last batch always is, just before the result).
const progressEvery = 250 * time.Millisecond

// progress records how far the run sub is has got, at most every
// progressEvery, for the submission view, hackctl and the spectators.
func (w *Worker) progress(ctx context.Context, sub store.Submission, log *slog.Logger) func(done, total int) {
	var last time.Time
	return func(done, total int) {
		if done < total && time.Since(last) < progressEvery {
			return
		}
		last = time.Now()
		if err := w.Store.SetProgress(ctx, sub, done, total); err != nil && !errors.Is(err, store.ErrFenced) && ctx.Err() == nil {
			log.Warn("record progress", "err", err)
		}
	}
}

// maxDeliveries bounds how often one job is started, for any reason.
func (w *Worker) maxDeliveries() int { return w.MaxAttempts + 2 }

// renewLease keeps job's lease while ctx lasts, every quarter lease.
func (w *Worker) renewLease(ctx context.Context, job *store.Job, attempt int, log *slog.Logger) {
	tick := time.NewTicker(max(w.Lease/4, 10*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		err := w.Store.RenewLease(ctx, job, w.Consumer, attempt)
		if errors.Is(err, store.ErrFenced) {
			w.Metrics.fencedWrite("lease")
			log.Warn("another judge's attempt is current; this run's result will be refused")
			return
		}
		if err != nil && ctx.Err() == nil {
			log.Warn("renew the job's lease", "err", err)
		}
	}
}

// finish writes a run's result, with its board entries, under the run's
// attempt. A score computed under a challenge revision that is no longer
// current is computed again from the run's predictions under the current
// one (the organizers changed the challenge during the run), or, when
// they cannot answer its hidden set any more, the job is judged again.
func (w *Worker) finish(ctx context.Context, job *store.Job, ch *challenges.Challenge, sub store.Submission, metrics *store.Metrics, pred *Predictions, logs string, runErr error, log *slog.Logger, usage *Usage) {
	res := store.Result{Status: store.StatusScored, Metrics: metrics, Log: logs}
	if runErr != nil {
		f := FailureOf(runErr)
		// Failures of the platform, not of the plugin, give the team its
		// daily submission back.
		// The store adds the note that says so, when it did refund.
		refund := f.Reason == ReasonInternal || f.Reason == ReasonSandbox || f.Reason == ReasonBinaryReleased
		res = store.Result{Status: store.StatusFailed, Reason: f.Reason, Message: f.Msg, Log: logs, RefundQuota: refund}
	}
	// What judged it, for its receipt, and what the run used.
	res.JudgeVersion, res.Sandbox = BuildVersion(), w.Evaluator.Sandbox.Name()
	if usage != nil {
		// The record as the result writes it: a board that breaks ties by
		// a resource ranks by these.
		res.Resources = usage.resources(sub.Size)
		sub.Resources = res.Resources
	}
	if ch != nil {
		res.Stamp = store.StampOf(ch)
	}
	if runErr == nil {
		res.Ranking = &store.Ranking{Rules: store.RulesOf(ch), Revision: ch.Revision}
		// The primary metric on the challenge's resamples: its interval,
		// and the board's comparisons with the leader.
		if hidden, err := ch.Hidden(); err == nil {
			if res.Bootstrap, err = BootstrapOf(ch, hidden, pred); err != nil {
				log.Warn("bootstrap the primary metric; the result has no interval", "err", err)
			}
		}
	}
	var done store.Finished
	var err error
	for try := 0; ; try++ {
		done, err = w.finishRun(ctx, sub, res, log)
		if !errors.Is(err, store.ErrRevisionChanged) || try == 3 {
			break
		}
		w.refresh(ctx)
		fresh, ok := w.Challenges.Get(ch.Slug)
		if !ok || fresh.Revision == ch.Revision {
			continue
		}
		hidden, herr := fresh.Hidden()
		if herr != nil {
			w.requeue(job, sub.Attempts, "retrying after an internal error: the challenge changed during the run and its new hidden set could not be loaded", log)
			return
		}
		m, boot, serr := scoreKept(fresh, hidden, pred)
		if serr != nil {
			log.Warn("the challenge changed during the run and the answers do not fit it; judging again", "revision", fresh.Revision, "err", serr)
			w.requeue(job, sub.Attempts, "the organizers changed the challenge during the run; it will be judged again under the new rules", log)
			return
		}
		log.Info("the challenge changed during the run; scored the answers under the current revision", "from", ch.Revision, "to", fresh.Revision)
		ch, res.Metrics, res.Stamp, res.Bootstrap = fresh, m, store.StampOf(fresh), boot
		res.Ranking = &store.Ranking{Rules: store.RulesOf(ch), Revision: ch.Revision}
	}
	if done.Wrote {
		w.Metrics.finishedOne(sub.Challenge, res.Status, res.Reason)
	}
	switch {
	case errors.Is(err, store.ErrFenced):
		// Another judge holds the job now; its entry is not ours to ack.
		w.Metrics.fencedWrite("result")
		log.Warn("result refused: another judge's attempt is current")
		return
	case done.Wrote && err != nil:
		// Written, but its private entry or the board's snapshot event may
		// be missing: the job stays pending, and whichever judge takes it
		// next finds it final and does that bookkeeping again.
		log.Error("finish the boards after the result; the job stays pending", "err", err)
		return
	case err != nil:
		log.Error("write result; the job stays pending for retry", "err", err)
		return
	}
	// The result's own script ranked it, unless the boards rank by other
	// rules than this judge's: repair them, and rank it (idempotently).
	if done.BoardsRefused {
		if err := w.updateBoards(ctx, ch, sub, res.Metrics, log); err != nil {
			return
		}
	}
	w.ack(ctx, job, log)
}

// resultRetry bounds how long a judge keeps trying to write a result Redis
// did not take (a restarting Redis, a cut connection) before it leaves the
// job to be judged again.
const resultRetry = 30 * time.Second

// finishRun writes res under sub's attempt, trying again while Redis is
// unreachable: the write is fenced and written once, so a retry of one
// that did land changes nothing, and the score the run computed is not
// thrown away for a blip.
func (w *Worker) finishRun(ctx context.Context, sub store.Submission, res store.Result, log *slog.Logger) (store.Finished, error) {
	deadline := time.Now().Add(resultRetry)
	wait := 100 * time.Millisecond
	for {
		done, err := w.Store.FinishRun(ctx, sub, res)
		// Redis refusing writes it cannot persist (its disk is full) is
		// waited out like a full disk here: the score stays.
		outOfTime := time.Now().Add(wait).After(deadline) && !store.IsOutOfDisk(err)
		if err == nil || done.Wrote || errors.Is(err, store.ErrFenced) || errors.Is(err, store.ErrRevisionChanged) ||
			errors.Is(err, store.ErrNotFound) || outOfTime || ctx.Err() != nil {
			return done, err
		}
		if store.IsOutOfDisk(err) {
			w.Metrics.diskFull()
		}
		log.Warn("write result; retrying", "in", wait, "err", err)
		sleep(ctx, wait)
		wait = min(2*wait, 5*time.Second)
	}
}

// updateBoards ranks a scored submission (idempotently): its public score
// on the public board, and its team's private entry from its finals.
func (w *Worker) updateBoards(ctx context.Context, ch *challenges.Challenge, sub store.Submission, m *store.Metrics, log *slog.Logger) error {
	for try := 0; ; try++ {
		err := w.rank(ctx, ch, sub, m, log)
		if errors.Is(err, store.ErrBoardRulesChanged) && try == 0 {
			// The boards rank by other rules than this judge's: an
			// organizer changed the ranking metric since this job started
			// (rank by the new one), or the boards kept old rules their
			// rebuild never replaced (repair them).
			w.refresh(ctx)
			if fresh, ok := w.Challenges.Get(ch.Slug); ok {
				ch = fresh
			}
			if rebuilt, _, err := w.Store.ReconcileBoards(ctx, ch.Slug, store.RulesOf(ch)); err != nil {
				log.Error("repair the boards' ranking rules", "err", err)
			} else if rebuilt {
				log.Warn("the boards ranked by other rules than the challenge's; rebuilt them", "metric", ch.PrimaryMetric, "finals", ch.Finals)
			}
			continue
		}
		if err != nil {
			log.Error("update leaderboards", "err", err)
		}
		return err
	}
}

func (w *Worker) rank(ctx context.Context, ch *challenges.Challenge, sub store.Submission, m *store.Metrics, log *slog.Logger) error {
	if score, ok := m.Public[ch.PrimaryMetric]; ok {
		if _, err := w.Store.UpdateBoard(ctx, ch.Slug, store.RulesOf(ch), sub, score); err != nil {
			return err
		}
	} else {
		log.Warn("submission has no score in the primary metric; a rescore will rank it", "metric", ch.PrimaryMetric)
	}
	_, err := w.Store.RefreshPrivateEntry(ctx, ch.Slug, sub.TeamID, store.RulesOf(ch))
	return err
}

func (w *Worker) ack(ctx context.Context, job *store.Job, log *slog.Logger) {
	if err := w.Store.Ack(ctx, job); err != nil {
		log.Error("acknowledge job", "err", err)
	}
}

// DefaultConsumer names a worker after its host, so a restarted judge on the
// same host resumes the jobs its previous run left unfinished.
func DefaultConsumer(role string, index int) string {
	host, err := os.Hostname()
	if err != nil {
		host = "judge"
	}
	return fmt.Sprintf("%s-%s-%d", host, role, index)
}
