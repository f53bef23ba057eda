package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/hackarena/hackarena/platform/store"
	"github.com/hackarena/hackarena/sdk/client"
)

// Options size a chaos run.
type Options struct {
	// Submissions in all, shared between the faults by how long each
	// phase is planned to last.
	Submissions int
	Teams       int
	// Cut is how long a judge stays disconnected from the network.
	Cut time.Duration
	// Before and After are the calm parts of each phase around its fault:
	// throughput is measured before, and has After to recover.
	Before, After time.Duration
	// Window is the span over which throughput is compared.
	Window time.Duration
	// Burst is how many uploads are in flight when an API replica restarts.
	Burst int
	// Plugin is the binary every team submits.
	Plugin string
	// Challenge is what it is submitted to.
	Challenge string
}

// Fault is one way the production shape breaks.
type Fault struct {
	Name, How string
	// Hold is how long the fault lasts, for planning the phase.
	Hold time.Duration
	// Judge: the fault hits the judge that holds a running job.
	Judge bool
	// Burst is how many of the phase's uploads Inject sends itself.
	Burst int
	// Inject breaks the platform and heals it again; victim is the judge
	// (a container id) when Judge is set.
	Inject func(ctx context.Context, r *Run, victim string) error
}

// Faults are those make chaos injects, in order.
func Faults(o Options, lease time.Duration) []Fault {
	return []Fault{
		{Name: "a judge dies", How: "docker kill -s KILL, docker start 3 s later", Hold: 3 * time.Second, Judge: true,
			Inject: func(ctx context.Context, r *Run, victim string) error {
				if _, err := Docker(ctx, "kill", "-s", "KILL", victim); err != nil {
					return err
				}
				sleep(ctx, 3*time.Second)
				_, err := Docker(ctx, "start", victim)
				return err
			}},
		{Name: "a judge freezes past its lease", How: fmt.Sprintf("docker pause for the lease (%s) and 5 s, then unpause", lease), Hold: lease + 5*time.Second, Judge: true,
			Inject: func(ctx context.Context, r *Run, victim string) error {
				if _, err := Docker(ctx, "pause", victim); err != nil {
					return err
				}
				sleep(ctx, lease+5*time.Second)
				_, err := Docker(ctx, "unpause", victim)
				return err
			}},
		{Name: "a judge is cut off", How: fmt.Sprintf("docker network disconnect for %s", o.Cut), Hold: o.Cut, Judge: true,
			Inject: func(ctx context.Context, r *Run, victim string) error {
				if _, err := Docker(ctx, "network", "disconnect", r.Stack.Network(), victim); err != nil {
					return err
				}
				sleep(ctx, o.Cut)
				_, err := Docker(ctx, "network", "connect", r.Stack.Network(), victim)
				return err
			}},
		{Name: "Redis dies", How: "docker kill -s KILL of its container, docker start 3 s later (AOF always)", Hold: 5 * time.Second,
			Inject: func(ctx context.Context, r *Run, _ string) error {
				ids, err := r.Stack.Containers(ctx, "redis", false)
				if err != nil || len(ids) != 1 {
					return fmt.Errorf("find the redis container: %v %v", ids, err)
				}
				if _, err := Docker(ctx, "kill", "-s", "KILL", ids[0]); err != nil {
					return err
				}
				sleep(ctx, 3*time.Second)
				if _, err := Docker(ctx, "start", ids[0]); err != nil {
					return err
				}
				return r.waitRedis(ctx)
			}},
		{Name: "an API replica restarts during an upload burst", How: fmt.Sprintf("docker restart of one of 2 replicas while %d uploads are in flight; clients resend with the same Idempotency-Key", o.Burst), Hold: 10 * time.Second, Burst: o.Burst,
			Inject: func(ctx context.Context, r *Run, _ string) error {
				ids, err := r.Stack.Containers(ctx, "api", false)
				if err != nil || len(ids) == 0 {
					return fmt.Errorf("find the api replicas: %v %v", ids, err)
				}
				burst := r.burst(ctx, o.Burst)
				sleep(ctx, 300*time.Millisecond)
				_, err = Docker(ctx, "restart", "-t", "1", ids[0])
				burst.Wait()
				return err
			}},
		{Name: "judges scale 3 → 1 → 3", How: "docker-compose up -d --no-recreate --scale judge=1, then =3 10 s later", Hold: 20 * time.Second,
			Inject: func(ctx context.Context, r *Run, _ string) error {
				if err := r.Stack.ComposeRun(ctx, "up", "-d", "--no-recreate", "--scale", "judge=1"); err != nil {
					return err
				}
				sleep(ctx, 10*time.Second)
				return r.Stack.ComposeRun(ctx, "up", "-d", "--no-recreate", "--scale", "judge=3")
			}},
	}
}

// Run is one chaos run against a stack that is up.
type Run struct {
	Stack *Stack
	Store *store.Store
	Opts  Options
	Log   *slog.Logger

	teams   []*client.Client
	teamIDs []string
	next    int
	mu      sync.Mutex
	// uploads of the phase going on.
	uploads []*upload
	// judges ever seen, for their sandboxes.
	judges map[string]bool
	// fenced is each judge's count of refused writes when last read.
	fenced map[string]float64
}

type upload struct {
	team     int
	key      string
	accepted string
	err      error
}

// Register makes the teams, through the load balancer.
func (r *Run) Register(ctx context.Context) error {
	for i := range r.Opts.Teams {
		name := fmt.Sprintf("chaos-%d", i)
		team, token, err := client.New(r.Stack.URL(), "").Register(ctx, name, name+"-password")
		if err != nil {
			return fmt.Errorf("register %s: %w", name, err)
		}
		r.teams = append(r.teams, client.New(r.Stack.URL(), token))
		r.teamIDs = append(r.teamIDs, team.ID)
	}
	r.judges, r.fenced = map[string]bool{}, map[string]float64{}
	return nil
}

// submit uploads the plugin once for the next team, resending with the
// same key until the platform takes it (at most 3 minutes).
func (r *Run) submit(ctx context.Context) *upload {
	r.mu.Lock()
	u := &upload{team: r.next % len(r.teams)}
	r.next++
	r.uploads = append(r.uploads, u)
	r.mu.Unlock()
	var err error
	if u.key, err = client.NewIdempotencyKey(); err != nil {
		u.err = err
		return u
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	for {
		sub, err := r.teams[u.team].SubmitWithKey(ctx, r.Opts.Challenge, r.Opts.Plugin, u.key)
		if err == nil {
			r.mu.Lock()
			u.accepted = sub.ID
			r.mu.Unlock()
			return u
		}
		if !client.Retryable(err) || ctx.Err() != nil {
			r.mu.Lock()
			u.err = err
			r.mu.Unlock()
			return u
		}
	}
}

// burst starts n uploads at once.
func (r *Run) burst(ctx context.Context, n int) *sync.WaitGroup {
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() { defer wg.Done(); r.submit(ctx) }()
	}
	return &wg
}

// paced uploads n plugins evenly over d.
func (r *Run) paced(ctx context.Context, n int, d time.Duration) *sync.WaitGroup {
	var wg sync.WaitGroup
	begin := time.Now()
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range n {
			sleep(ctx, time.Until(begin.Add(d*time.Duration(i)/time.Duration(max(n, 1)))))
			if ctx.Err() != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); r.submit(ctx) }()
		}
	}()
	return &wg
}

// Plan shares the submissions a phase paces (all but the bursts a fault
// sends itself) between the faults by their phases' length.
func (r *Run) Plan(faults []Fault) []int {
	total := time.Duration(0)
	paced := r.Opts.Submissions
	for _, f := range faults {
		total += r.phaseLength(f)
		paced -= f.Burst
	}
	counts := make([]int, len(faults))
	left := paced
	for i, f := range faults {
		counts[i] = int(int64(paced) * int64(r.phaseLength(f)) / int64(total))
		left -= counts[i]
	}
	for i := 0; left > 0; i, left = (i+1)%len(counts), left-1 {
		counts[i]++
	}
	return counts
}

func (r *Run) phaseLength(f Fault) time.Duration { return r.Opts.Before + f.Hold + r.Opts.After }

// Phase runs one fault: n submissions paced over the phase, the fault
// injected once a job is running (on the judge running it, for a judge's
// fault) with the fault's own burst, then every accepted submission
// followed to its end.
func (r *Run) Phase(ctx context.Context, f Fault, n int) (Result, error) {
	res := Result{Fault: f.Name, How: f.How, Failed: map[string]int{}}
	since, err := r.Store.LastEventID(ctx)
	if err != nil {
		return res, err
	}
	before, err := r.teamCounts(ctx)
	if err != nil {
		return res, err
	}
	if err := r.seeJudges(ctx); err != nil {
		return res, err
	}
	r.fencedWrites(ctx)
	r.mu.Lock()
	r.uploads = nil
	r.mu.Unlock()
	begin := time.Now()
	pacing := r.paced(ctx, n, r.phaseLength(f))
	sleep(ctx, r.Opts.Before)
	victim, err := r.running(ctx, f.Judge)
	if err != nil {
		return res, err
	}
	res.FaultAt = time.Now()
	r.Log.Info("fault", "fault", f.Name, "victim", short(victim))
	if err := f.Inject(ctx, r, victim); err != nil {
		return res, fmt.Errorf("inject %q: %w", f.Name, err)
	}
	res.HealedAt = time.Now()
	pacing.Wait()
	if err := r.seeJudges(ctx); err != nil {
		return res, err
	}

	r.mu.Lock()
	uploads := append([]*upload(nil), r.uploads...)
	r.mu.Unlock()
	subs, err := r.follow(ctx, uploads, &res)
	if err != nil {
		return res, err
	}
	res.measure(subs, begin, r.Opts.Window)
	if err := r.countEvents(ctx, since, subs, &res); err != nil {
		return res, err
	}
	if err := r.countDuplicates(ctx, before, uploads, &res); err != nil {
		return res, err
	}
	if err := r.countOrphans(ctx, &res); err != nil {
		return res, err
	}
	res.Fenced = r.fencedWrites(ctx)
	return res, nil
}

// fencedWrites reads every running judge's count of refused writes (its
// /metrics on port 9464) and returns how many were added since the last
// read; a judge that restarted counts from zero again.
func (r *Run) fencedWrites(ctx context.Context) int {
	ids, err := r.Stack.Containers(ctx, "judge", false)
	if err != nil {
		return 0
	}
	added := 0.0
	for _, id := range ids {
		ip, err := r.Stack.IP(ctx, id)
		if err != nil {
			continue
		}
		n, err := scrapeSum(ctx, "http://"+net.JoinHostPort(ip, "9464")+"/metrics", "hackarena_judge_fenced_writes_total")
		if err != nil {
			r.Log.Warn("read a judge's metrics", "judge", short(id), "err", err)
			continue
		}
		if prev := r.fenced[id]; n >= prev {
			added += n - prev
		} else {
			added += n
		}
		r.fenced[id] = n
	}
	return int(added)
}

// scrapeSum adds up every series of one family at a Prometheus endpoint.
func scrapeSum(ctx context.Context, url, family string) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return 0, err
	}
	sum := 0.0
	for _, m := range families[family].GetMetric() {
		sum += m.GetCounter().GetValue()
	}
	return sum, nil
}

// running waits until a job is being judged and names the judge holding
// one (the victim of a judge's fault).
func (r *Run) running(ctx context.Context, judge bool) (string, error) {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		view, err := r.Store.Queue(ctx, r.Opts.Challenge)
		if err == nil {
			judges, _ := r.Stack.Containers(ctx, "judge", false)
			for _, e := range view.Running {
				if e.Status != store.StatusRunning {
					continue
				}
				if !judge {
					return "", nil
				}
				for _, j := range judges {
					if strings.HasPrefix(e.Worker, short(j)+"-") {
						return j, nil
					}
				}
			}
		}
		sleep(ctx, 20*time.Millisecond)
	}
	return "", errors.New("no job was running for a minute: the fault could not land mid-run")
}

// follow waits for every accepted upload's submission to end; those that
// do not within five minutes of the last upload are lost.
func (r *Run) follow(ctx context.Context, uploads []*upload, res *Result) ([]store.Submission, error) {
	deadline := time.Now().Add(5 * time.Minute)
	var subs []store.Submission
	for _, u := range uploads {
		if u.accepted == "" {
			res.UploadErrors++
			res.problem("an upload was never accepted: %v", u.err)
			continue
		}
		res.Submitted++
		for {
			sub, err := r.Store.Submission(ctx, u.accepted)
			if err == nil && sub.Final() {
				subs = append(subs, sub)
				switch sub.Status {
				case store.StatusScored:
					res.Scored++
				default:
					res.Failed[sub.Reason]++
				}
				break
			}
			if errors.Is(err, store.ErrNotFound) || time.Now().After(deadline) {
				res.Lost++
				res.problem("submission %s was accepted and never ended (%s, %v)", u.accepted, sub.Status, err)
				break
			}
			sleep(ctx, 200*time.Millisecond)
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
		}
	}
	return subs, nil
}

// countEvents counts each submission's final events since the phase
// began: exactly one each.
func (r *Run) countEvents(ctx context.Context, since string, subs []store.Submission, res *Result) error {
	if lost, err := r.Store.EventsLostAfter(ctx, since); err != nil {
		return err
	} else if lost {
		res.problem("the event stream was trimmed past the phase's start: its events cannot be counted")
		return nil
	}
	finals := map[string]int{}
	err := r.Store.EachEventAfter(ctx, since, func(e *store.Event) error {
		if e.Type != store.EventSubmission {
			return nil
		}
		var se store.SubmissionEvent
		if err := json.Unmarshal(e.Data, &se); err != nil {
			return err
		}
		if se.Status == store.StatusScored || se.Status == store.StatusFailed {
			finals[se.ID]++
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, sub := range subs {
		switch n := finals[sub.ID]; {
		case n > 1:
			res.Twice++
			res.problem("submission %s has %d final events", sub.ID, n)
		case n == 0:
			res.problem("submission %s ended without a final event", sub.ID)
		}
	}
	return nil
}

// teamCounts is how many submissions each team has on record.
func (r *Run) teamCounts(ctx context.Context) ([]int, error) {
	counts := make([]int, len(r.teamIDs))
	for i, id := range r.teamIDs {
		subs, err := r.Store.TeamSubmissions(ctx, id, 100000)
		if err != nil {
			return nil, err
		}
		counts[i] = len(subs)
	}
	return counts, nil
}

// countDuplicates compares the submissions each team gained in the phase
// with the uploads it had accepted: a resent upload that made a second
// submission is scored twice.
func (r *Run) countDuplicates(ctx context.Context, before []int, uploads []*upload, res *Result) error {
	after, err := r.teamCounts(ctx)
	if err != nil {
		return err
	}
	accepted := make([]map[string]bool, len(r.teams))
	for i := range accepted {
		accepted[i] = map[string]bool{}
	}
	for _, u := range uploads {
		if u.accepted != "" {
			accepted[u.team][u.accepted] = true
		}
	}
	for i := range r.teams {
		if extra := after[i] - before[i] - len(accepted[i]); extra != 0 {
			res.Twice += max(extra, 0)
			res.problem("team %d has %d submissions more than the uploads it had accepted", i, extra)
		}
	}
	return nil
}

// seeJudges remembers every judge container of the project, for their
// sandboxes.
func (r *Run) seeJudges(ctx context.Context) error {
	ids, err := r.Stack.Containers(ctx, "judge", true)
	if err != nil {
		return err
	}
	for _, id := range ids {
		r.judges[id] = true
	}
	return nil
}

// countOrphans waits up to a minute for the sandboxes of runs that
// ended (a late run of a judge that was taken over included) to go: none
// may be left once every submission has ended.
func (r *Run) countOrphans(ctx context.Context, res *Result) error {
	var judges []string
	for j := range r.judges {
		judges = append(judges, j)
	}
	sort.Strings(judges)
	deadline := time.Now().Add(time.Minute)
	for {
		left, err := Sandboxes(ctx, judges)
		if err != nil {
			return err
		}
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			res.Orphans = len(left)
			res.problem("sandbox containers left a minute after every submission ended: %v", left)
			return nil
		}
		sleep(ctx, time.Second)
	}
}

func (r *Run) waitRedis(ctx context.Context) error {
	deadline := time.Now().Add(time.Minute)
	for {
		err := r.Store.Redis().Ping(ctx).Err()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis did not answer within a minute of its restart: %w", err)
		}
		sleep(ctx, 200*time.Millisecond)
	}
}

// Final checks what the whole run left: boards equal to a rebuild from
// the records, and each team's quota equal to its submissions less
// refunds.
func (r *Run) Final(ctx context.Context, rules store.Rules) []string {
	var problems []string
	rep, err := r.Store.RebuildBoards(ctx, r.Opts.Challenge, rules)
	if err != nil {
		return []string{fmt.Sprintf("rebuild the boards: %v", err)}
	}
	for _, b := range rep.Boards {
		if len(b.Changes) != 0 || b.Entries != len(r.teams) {
			problems = append(problems, fmt.Sprintf("the %s board (%d entries for %d teams) differs from a rebuild from the records: %+v", b.Board, b.Entries, len(r.teams), b.Changes))
		}
	}
	var subs []store.Submission
	for _, id := range r.teamIDs {
		mine, err := r.Store.TeamSubmissions(ctx, id, 100000)
		if err != nil {
			return append(problems, err.Error())
		}
		subs = append(subs, mine...)
	}
	mismatches, err := r.Store.QuotaMismatches(ctx, r.Opts.Challenge, subs)
	if err != nil {
		return append(problems, err.Error())
	}
	problems = append(problems, mismatches...)
	return problems
}

func sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
