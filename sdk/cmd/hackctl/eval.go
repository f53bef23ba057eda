package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hackarena/hackarena/challenges"
	"github.com/hackarena/hackarena/judge"
	"github.com/hackarena/hackarena/sdk/client"
)

// evalReport is what `hackctl eval --json` prints.
type evalReport struct {
	Challenge string             `json:"challenge"`
	Sandbox   string             `json:"sandbox"`
	Rows      int                `json:"validation_rows"`
	Status    string             `json:"status"`
	Reason    string             `json:"reason,omitempty"`
	Message   string             `json:"message,omitempty"`
	Public    map[string]float64 `json:"public,omitempty"`
	Private   map[string]float64 `json:"private,omitempty"`
	Phases    map[string]float64 `json:"phase_seconds"`
	// PeakBytes is the plugin's peak memory (0: the sandbox does not
	// measure it, as Docker).
	PeakBytes int64  `json:"peak_memory_bytes"`
	Log       string `json:"log"`
}

func evalCmd(ctx context.Context, c *client.Client, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("eval", flag.ContinueOnError)
	dataDir := fs.String("data", "", "the challenge's downloaded files (default: data/CHALLENGE)")
	sandboxName := fs.String("sandbox", "auto", "auto (Docker, else bubblewrap, as the judge), docker, bwrap, or none (no isolation)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	wall := fs.Duration("wall-time", 0, "override the challenge's wall-time limit, as HACKARENA_RUN_TIMEOUT does on a judge (eval gives each example the same share of it as the judge does)")
	savePredictions := fs.String("save-predictions", "", "write the plugin's answers (JSON) to this file")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return errors.New("usage: hackctl eval CHALLENGE PLUGIN|DIR [--data DIR] [--sandbox auto|docker|bwrap|none] [--json]")
	}
	slug, path := pos[0], pos[1]
	if *dataDir == "" {
		*dataDir = filepath.Join("data", slug)
	}
	raw, err := os.ReadFile(filepath.Join(*dataDir, DetailFile))
	if err != nil {
		return fmt.Errorf("no downloaded %s in %s: run hackctl download %s first (%w)", slug, *dataDir, slug, err)
	}
	var detail struct {
		Slug       string                `json:"slug"`
		Evaluation challenges.Evaluation `json:"evaluation"`
	}
	if err := json.Unmarshal(raw, &detail); err != nil || detail.Evaluation.Format == "" {
		return fmt.Errorf("%s does not describe how %s is judged (%v): download it again with this hackctl", filepath.Join(*dataDir, DetailFile), slug, err)
	}
	ch, err := challenges.ForEvaluation(slug, detail.Evaluation, *dataDir)
	if err != nil {
		return err
	}
	hidden, err := ch.Hidden()
	if err != nil {
		return fmt.Errorf("read the validation part of %s: %w", slug, err)
	}
	binary, cleanup, err := pluginBinary(ctx, c, path, out, *asJSON)
	if err != nil {
		return err
	}
	defer cleanup()
	if *sandboxName == "none" {
		fmt.Fprintln(os.Stderr, "hackctl: warning: --sandbox none runs the plugin as a plain process, with no isolation and no memory limit; the judge never does")
	}
	// The judge's time per example: the validation part is smaller than
	// the hidden set, so its limit is too.
	limit := *wall
	if limit == 0 {
		limit = ch.Limits.WallTime
	}
	limit = detail.Evaluation.WallTimeFor(limit, hidden.Count)
	local, err := judge.NewLocal(ctx, judge.LocalOptions{Sandbox: *sandboxName, WallTime: limit})
	if err != nil {
		return err
	}
	defer local.Close()
	rep := evalReport{Challenge: slug, Sandbox: local.SandboxName(), Rows: hidden.Count, Phases: map[string]float64{}}
	var mu sync.Mutex
	local.Evaluator.Phase = func(name string, d time.Duration) {
		mu.Lock()
		rep.Phases[name] = d.Seconds()
		mu.Unlock()
	}
	local.Evaluator.Memory = func(peak int64) { rep.PeakBytes = peak }
	if !*asJSON {
		fmt.Fprintf(out, "judging %s on %d validation examples of %s's training data, in %s, as the judge does (time limit %s: the judge's per example)\n", path, hidden.Count, slug, rep.Sandbox, limit.Round(time.Millisecond))
	}
	metrics, pred, logs, runErr := local.Evaluator.Evaluate(ctx, "local", binary, ch)
	if *savePredictions != "" && pred != nil {
		raw, err := json.Marshal(pred)
		if err == nil {
			err = os.WriteFile(*savePredictions, raw, 0o644)
		}
		if err != nil {
			return fmt.Errorf("save predictions: %w", err)
		}
	}
	rep.Log = logs
	rep.Status = "scored"
	if runErr != nil {
		f := judge.FailureOf(runErr)
		rep.Status, rep.Reason, rep.Message = "failed", f.Reason, f.Msg
	} else {
		rep.Public, rep.Private = metrics.Public, metrics.Private
	}
	if *asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		printEval(out, rep)
	}
	if rep.Status == "failed" {
		return fmt.Errorf("the judge would fail this plugin: %s", rep.Reason)
	}
	return nil
}

func printEval(out io.Writer, rep evalReport) {
	for _, name := range []string{"slot_wait", "start", "judge"} {
		if d, ok := rep.Phases[name]; ok {
			fmt.Fprintf(out, "  %-9s %.2fs\n", name, d)
		}
	}
	if rep.PeakBytes > 0 {
		fmt.Fprintf(out, "  peak memory %s\n", bytesIEC(rep.PeakBytes))
	} else {
		fmt.Fprintf(out, "  peak memory not measured in %s (bwrap measures it: --sandbox bwrap)\n", rep.Sandbox)
	}
	fmt.Fprintf(out, "status %s\n", rep.Status)
	if rep.Reason != "" {
		fmt.Fprintf(out, "  %s: %s\n", rep.Reason, rep.Message)
	}
	printScores(out, "public half", rep.Public)
	printScores(out, "private half", rep.Private)
	fmt.Fprintln(out, "--- plugin log (all of it: it is your own data) ---")
	fmt.Fprint(out, rep.Log)
	if rep.Log != "" && !strings.HasSuffix(rep.Log, "\n") {
		fmt.Fprintln(out)
	}
	fmt.Fprintln(out, "--- end of log ---")
}

// pluginBinary is path, or for a folder the plugin built from it, or for
// a model (.onnx, network .json) the plugin packed of it, into a temporary
// file that cleanup removes.
func pluginBinary(ctx context.Context, c *client.Client, path string, out io.Writer, quiet bool) (string, func(), error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", nil, fmt.Errorf("plugin %s: %w", path, err)
	}
	if !fi.IsDir() && !isModelFile(path) {
		abs, err := filepath.Abs(path)
		return abs, func() {}, err
	}
	tmp, err := os.MkdirTemp("", "hackctl-build-")
	if err != nil {
		return "", nil, err
	}
	if !fi.IsDir() {
		if !quiet {
			fmt.Fprintf(out, "packing %s ...\n", path)
		}
		if _, err := packModel(path, "", "", filepath.Join(tmp, "plugin")); err != nil {
			os.RemoveAll(tmp)
			return "", nil, err
		}
		return filepath.Join(tmp, "plugin"), func() { os.RemoveAll(tmp) }, nil
	}
	if !quiet {
		fmt.Fprintf(out, "building %s ...\n", path)
	}
	built, err := buildPlugin(ctx, c, path, filepath.Join(tmp, "plugin"))
	if err != nil {
		os.RemoveAll(tmp)
		return "", nil, err
	}
	return built, func() { os.RemoveAll(tmp) }, nil
}
