// Command chaos runs the production shape with `make up`, submits plugins
// through its load balancer while it breaks it one fault at a time, prints
// what each fault cost and fails on any submission lost, scored twice or
// sandbox left behind (make chaos).
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/hackarena/hackarena/internal/chaos"
	"github.com/hackarena/hackarena/platform/store"
	"github.com/hackarena/hackarena/sdk/build"
)

func main() {
	var o chaos.Options
	repo := flag.String("repo", ".", "the repository root")
	flag.IntVar(&o.Submissions, "submissions", 300, "submissions in all, shared between the faults")
	flag.IntVar(&o.Teams, "teams", 10, "teams submitting (each within mnist's 50 a day)")
	flag.DurationVar(&o.Cut, "cut", time.Minute, "how long a judge stays cut off the network")
	lease := flag.Duration("lease", 15*time.Second, "the judges' lease (HACKARENA_JUDGE_LEASE): how soon a dead, frozen or cut-off judge's job moves")
	flag.DurationVar(&o.Before, "before", 15*time.Second, "calm time before each fault, over which throughput is measured")
	flag.DurationVar(&o.After, "after", 30*time.Second, "time after each fault is healed, to recover in")
	flag.DurationVar(&o.Window, "window", 15*time.Second, "span over which throughput is counted (runs ended in the window before each moment)")
	flag.IntVar(&o.Burst, "burst", 20, "uploads in flight when an API replica restarts")
	report := flag.String("report", "", "also write the table to this file")
	keep := flag.Bool("keep", false, "leave the stack up afterwards (make down removes it)")
	flag.Parse()
	o.Challenge = "mnist"
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *repo, o, *lease, *report, *keep, log); err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, repo string, o chaos.Options, lease time.Duration, report string, keep bool, log *slog.Logger) (err error) {
	if o.Teams < 1 || o.Submissions < o.Teams || o.Submissions < 2*o.Burst {
		return fmt.Errorf("need at least one team, a submission per team and twice the burst (got %d teams, %d submissions, a burst of %d)", o.Teams, o.Submissions, o.Burst)
	}
	if per := (o.Submissions + o.Teams - 1) / o.Teams; per > 50 {
		return fmt.Errorf("%d submissions per team is over mnist's daily quota of 50: use more teams", per)
	}
	stack, err := chaos.NewStack(repo, lease)
	if err != nil {
		return err
	}
	plugin := filepath.Join(stack.HostDir, "mnist-centroid")
	if err := build.Plugin(ctx, filepath.Join(stack.Repo, "plugins", "mnist-centroid"), plugin); err != nil {
		return err
	}
	o.Plugin = plugin
	log.Info("make up", "project", stack.Project, "url", stack.URL(), "lease", lease)
	if err := stack.Up(ctx); err != nil {
		return err
	}
	if !keep {
		defer func() {
			if derr := stack.Down(); derr != nil && err == nil {
				err = derr
			}
		}()
	}
	rdb := stack.Redis()
	defer rdb.Close()
	r := &chaos.Run{Stack: stack, Store: store.New(rdb), Opts: o, Log: log}
	if err := r.Register(ctx); err != nil {
		return err
	}
	faults := chaos.Faults(o, lease)
	counts := r.Plan(faults)
	var results []chaos.Result
	failed := false
	for i, f := range faults {
		log.Info("phase", "fault", f.Name, "submissions", counts[i]+f.Burst)
		res, err := r.Phase(ctx, f, counts[i])
		if err != nil {
			return fmt.Errorf("phase %q: %w", f.Name, err)
		}
		results = append(results, res)
		for _, p := range res.Problems {
			log.Error("problem", "fault", f.Name, "problem", p)
		}
		failed = failed || !res.OK()
	}
	problems := r.Final(ctx, store.Rules{Metric: "accuracy", HigherIsBetter: true})
	for _, p := range problems {
		log.Error("problem", "after every fault", p)
	}
	var table bytes.Buffer
	chaos.WriteTable(&table, results)
	fmt.Print(table.String())
	if report != "" {
		if err := os.MkdirAll(filepath.Dir(report), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(report, table.Bytes(), 0o644); err != nil {
			return err
		}
	}
	if failed || len(problems) > 0 {
		return fmt.Errorf("submissions were lost, scored twice or left sandboxes behind (see the problems above)")
	}
	return nil
}
