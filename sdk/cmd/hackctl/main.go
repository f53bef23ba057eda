// Command hackctl is the participant's command line for Hackarena: register
// a team, list challenges, build a plugin, submit it and watch the score.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/hackarena/hackarena/gpu"
	"github.com/hackarena/hackarena/sdk/build"
	"github.com/hackarena/hackarena/sdk/client"
	"github.com/hackarena/hackarena/sdk/runner"
)

const usage = `hackctl — the Hackarena participant CLI

usage: hackctl [--server URL] <command> [flags]

commands:
  register --name TEAM [--password P]   create a team of one (you, with the team's name) and log in
  signup   --name NAME [--password P]   create a login of your own, in no team yet
  login    --name NAME [--password P]   log in; the token is kept in your config dir (mode 0600)
  password --new P [--password CURRENT] change your password; tokens issued before stop working
  team     create NAME | invite [--uses N] [--expires 48h] | join CODE | members [TEAM] | leave |
           remove USER | captain USER   form a team of people: the captain invites, each joins with the code
  challenges                            list the challenges
  download CHALLENGE [-o DIR]           fetch the public training files (default data/CHALLENGE), checked and resumable
  init     CHALLENGE [DIR]              write a plugin folder for the challenge that builds anywhere (default CHALLENGE-plugin)
  build    [DIR] [-o FILE]              build the plugin in DIR as a static linux/amd64 binary
  pack     MODEL [--preprocess FILE] [-o FILE]
                                        make a plugin of an ONNX model (or network.json + weights.npz) and
                                        its preprocess.json, with no Go toolchain; submit and eval pack
                                        MODEL.onnx on the fly
  helper   [-o FILE]                    write hackarena_export.py, the PyTorch export helper (numpy, torch)
  eval     CHALLENGE FILE|DIR|MODEL [--sandbox auto|docker|bwrap|none] [--data DIR] [--json]
           [--wall-time D] [--save-predictions FILE]
                                        judge the plugin on this machine, with the judge's own code, on a
                                        validation part of the downloaded training data: free, no server needed
  submit   CHALLENGE FILE|DIR|MODEL [--wait]
                                        upload a plugin (a folder is built, a model packed first); --wait
                                        prints progress and the scores
  status   SUBMISSION_ID                show one submission
  submissions [CHALLENGE]               list your team's submissions, newest first (FINAL: counts on the private board)
  final    SUBMISSION_ID                select a submission as one of your team's finals: only finals count on the
                                        private board (by default your best by public score)
  final    --clear SUBMISSION_ID|CHALLENGE
                                        unselect one final, or every final you selected in a challenge
  final    --list CHALLENGE             list your team's finals in a challenge
  receipt  SUBMISSION_ID [-o FILE]      save a judged submission's signed receipt (anyone's), checked with the platform's key
  verify   RECEIPT_FILE [--key KEYFILE] check a receipt offline against the platform's public key (default: fetched)
  logs     SUBMISSION_ID                print a submission's plugin log (what the challenge's log policy shows your team)
  leaderboard CHALLENGE [--board public|private]
  whoami                                who you are, which team, server and token expiry hackctl uses
  moderate disqualify CHALLENGE TEAM | reinstate CHALLENGE TEAM | exclude ID | include ID | lock USER | unlock USER
           --reason R                   organizers: moderate; the team sees the reason
  audit    [--action A] [--challenge C] organizers: every organizer action, who, when and why
  logout                                forget the saved token on this machine

Commands that print data take --json, for scripts.

The password comes from --password, else HACKARENA_PASSWORD, else standard input.
The server is --server, else HACKARENA_SERVER, else the one you last logged in to, else http://127.0.0.1:8080.`

func main() {
	// A packed plugin (hackctl pack) is this executable with a model
	// appended: it serves the model to the judge and does nothing else.
	if runner.ServeIfPacked() {
		return
	}
	// hackctl eval serves its Engine slot from a process of its own, as
	// the judge does: this executable's engine sub-command.
	if len(os.Args) == 2 && os.Args[1] == "engine" {
		os.Exit(gpu.ServeEngineProcess())
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "hackctl:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdin io.Reader, out io.Writer) error {
	global := flag.NewFlagSet("hackctl", flag.ContinueOnError)
	server := global.String("server", "", "platform URL")
	global.Usage = func() { fmt.Fprintln(global.Output(), usage) }
	if err := global.Parse(args); err != nil {
		return err
	}
	if global.NArg() == 0 {
		global.Usage()
		return errors.New("no command given")
	}
	cfg, err := loadConfig()
	if err != nil {
		return err
	}
	base := firstNonEmpty(*server, os.Getenv("HACKARENA_SERVER"), cfg.Server, "http://127.0.0.1:8080")
	c := client.New(base, cfg.Token)
	cmd, rest := global.Arg(0), global.Args()[1:]
	switch cmd {
	case "register", "login", "signup":
		return authenticate(ctx, c, cmd, rest, stdin, out, base)
	case "team":
		return teamCmd(ctx, c, cfg, rest, out, base)
	case "moderate":
		return moderateCmd(ctx, c, rest, out)
	case "audit":
		return auditCmd(ctx, c, rest, out)
	case "password":
		return changePassword(ctx, c, cfg, rest, stdin, out, base)
	case "challenges":
		return listChallenges(ctx, c, rest, out)
	case "download":
		return downloadCmd(ctx, c, rest, out)
	case "init":
		return initCmd(ctx, c, rest, out)
	case "pack":
		return packCmd(rest, out)
	case "helper":
		return helperCmd(rest, out)
	case "build":
		return buildCmd(ctx, c, rest, out)
	case "eval":
		return evalCmd(ctx, c, rest, out)
	case "submit":
		return submit(ctx, c, rest, out)
	case "status":
		pos, asJSON, err := jsonFlag(flag.NewFlagSet("status", flag.ContinueOnError), rest)
		if err != nil {
			return err
		}
		if len(pos) != 1 {
			return errors.New("usage: hackctl status SUBMISSION_ID [--json]")
		}
		sub, err := c.Submission(ctx, pos[0])
		if err != nil {
			return err
		}
		if asJSON {
			return printJSON(out, sub)
		}
		printSubmission(out, sub)
		return nil
	case "submissions":
		return submissions(ctx, c, rest, out)
	case "final":
		return final(ctx, c, rest, out)
	case "receipt":
		return receiptCmd(ctx, c, rest, out)
	case "verify":
		return verify(ctx, c, rest, out)
	case "logs":
		return logs(ctx, c, rest, out)
	case "whoami":
		return whoami(ctx, c, cfg, rest, out)
	case "logout":
		return logout(cfg, out)
	case "leaderboard":
		return leaderboard(ctx, c, rest, out)
	case "help", "-h", "--help":
		fmt.Fprintln(out, usage)
		return nil
	}
	return fmt.Errorf("unknown command %q (run hackctl help)", cmd)
}

func firstNonEmpty(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

// parseInterleaved lets flags come after positional arguments
// (hackctl submit mnist ./model --wait), which the flag package alone stops
// at.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return positional, nil
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func authenticate(ctx context.Context, c *client.Client, cmd string, args []string, stdin io.Reader, out io.Writer, base string) error {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	name := fs.String("name", "", "your name (register: also the team's)")
	password := fs.String("password", "", "password (or HACKARENA_PASSWORD, or standard input)")
	if _, err := parseInterleaved(fs, args); err != nil {
		return err
	}
	if *name == "" {
		return fmt.Errorf("usage: hackctl %s --name NAME [--password P]", cmd)
	}
	pw, err := passwordFrom(*password, "password", stdin, out)
	if err != nil {
		return err
	}
	var token string
	team := *name
	switch cmd {
	case "register":
		var t client.Team
		t, token, err = c.Register(ctx, *name, pw)
		if err == nil {
			fmt.Fprintf(out, "registered team %q (id %s), a team of one you captain: invite teammates with hackctl team invite\n", t.Name, t.ID)
		}
	case "signup":
		token, err = c.RegisterUser(ctx, *name, pw)
		team = ""
		if err == nil {
			fmt.Fprintf(out, "signed up as %q, in no team yet: hackctl team create NAME, or hackctl team join CODE\n", *name)
		}
	default:
		var exp time.Time
		token, exp, err = c.Login(ctx, *name, pw)
		if err == nil {
			fmt.Fprintf(out, "logged in as %q until %s\n", *name, exp.Local().Format(time.RFC1123))
		}
	}
	if err != nil {
		return err
	}
	if cmd == "login" {
		if id, err := client.New(base, token).WhoAmI(ctx); err == nil {
			team = id.Name
		}
	}
	return savedConfig{Server: base, Team: team, Token: token}.save()
}

// passwordFrom is the --password flag, else HACKARENA_PASSWORD, else a
// line typed after the prompt what.
func passwordFrom(flagValue, what string, stdin io.Reader, out io.Writer) (string, error) {
	if pw := firstNonEmpty(flagValue, os.Getenv("HACKARENA_PASSWORD")); pw != "" {
		return pw, nil
	}
	fmt.Fprint(out, what+": ")
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && line == "" {
		return "", fmt.Errorf("no %s given: use --password, HACKARENA_PASSWORD or type it", what)
	}
	return strings.TrimRight(line, "\r\n"), nil
}

func changePassword(ctx context.Context, c *client.Client, cfg savedConfig, args []string, stdin io.Reader, out io.Writer, base string) error {
	fs := flag.NewFlagSet("password", flag.ContinueOnError)
	current := fs.String("password", "", "current password (or HACKARENA_PASSWORD, or standard input)")
	next := fs.String("new", "", "new password, 8 to 72 bytes")
	if _, err := parseInterleaved(fs, args); err != nil {
		return err
	}
	if *next == "" {
		return errors.New("usage: hackctl password --new NEW [--password CURRENT]")
	}
	if cfg.Token == "" {
		return errors.New("not logged in: run hackctl login first")
	}
	pw, err := passwordFrom(*current, "current password", stdin, out)
	if err != nil {
		return err
	}
	token, _, err := c.ChangePassword(ctx, pw, *next)
	if err != nil {
		return err
	}
	cfg.Server, cfg.Token = base, token
	if err := cfg.save(); err != nil {
		return err
	}
	fmt.Fprintf(out, "password of %q changed; tokens issued before it no longer work (this one was replaced)\n", cfg.Team)
	return nil
}

func listChallenges(ctx context.Context, c *client.Client, args []string, out io.Writer) error {
	_, asJSON, err := jsonFlag(flag.NewFlagSet("challenges", flag.ContinueOnError), args)
	if err != nil {
		return err
	}
	list, err := c.Challenges(ctx)
	if err != nil {
		return err
	}
	if asJSON {
		return printJSON(out, list)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SLUG\tTITLE\tTASK\tMETRIC\tSTATUS")
	for _, ch := range list {
		dir := "higher is better"
		if !ch.HigherIsBetter {
			dir = "lower is better"
		}
		status := ch.Status
		if ch.StatusReason != "" {
			status += ": " + ch.StatusReason
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s (%s)\t%s\n", ch.Slug, ch.Title, ch.Task, ch.PrimaryMetric, dir, status)
	}
	return tw.Flush()
}

func buildCmd(ctx context.Context, c *client.Client, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("build", flag.ContinueOnError)
	output := fs.String("o", "", "output file (default: the folder's name)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	dir := "."
	if len(pos) > 0 {
		dir = pos[0]
	}
	path, err := buildPlugin(ctx, c, dir, *output)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "built %s (static linux/amd64)\n", path)
	return nil
}

// buildPlugin builds the plugin folder dir; the SDK module comes from the
// platform c talks to.
func buildPlugin(ctx context.Context, c *client.Client, dir, output string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	if output == "" {
		output = filepath.Base(abs)
	}
	if err := build.Plugin(ctx, abs, output, goEnv(c.BaseURL)...); err != nil {
		return "", err
	}
	return output, nil
}

func submit(ctx context.Context, c *client.Client, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("submit", flag.ContinueOnError)
	wait := fs.Bool("wait", false, "wait for the result and print the scores")
	pos, asJSON, err := jsonFlag(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return errors.New("usage: hackctl submit CHALLENGE FILE|DIR|MODEL.onnx [--wait] [--json]")
	}
	if !asJSON {
		_, err := submitTo(ctx, c, pos[0], pos[1], *wait, out)
		return err
	}
	// The JSON is the only output: the queued submission, or with --wait
	// the final one.
	sub, err := submitTo(ctx, c, pos[0], pos[1], *wait, io.Discard)
	if sub.ID != "" {
		if jerr := printJSON(out, sub); jerr != nil {
			return jerr
		}
	}
	return err
}

// submitTo uploads path (building a folder first) to slug and, with wait,
// follows it to its result; it returns the last state it saw.
func submitTo(ctx context.Context, c *client.Client, slug, path string, wait bool, out io.Writer) (client.Submission, error) {
	if c.Token == "" {
		return client.Submission{}, errors.New("not logged in: run hackctl register or hackctl login first")
	}
	path, cleanup, err := pluginBinary(ctx, c, path, out, false)
	if err != nil {
		return client.Submission{}, err
	}
	defer cleanup()
	sub, err := c.Submit(ctx, slug, path)
	if err != nil {
		return client.Submission{}, err
	}
	fmt.Fprintf(out, "submitted %s to %s\n", sub.ID, slug)
	if !wait {
		fmt.Fprintf(out, "follow it with: hackctl status %s\n", sub.ID)
		return sub, nil
	}
	status := newStatusLine(out)
	final, err := c.Wait(ctx, sub.ID, 500*time.Millisecond, status.show)
	status.end()
	if final.ID == "" {
		final = sub
	}
	if err != nil {
		return final, err
	}
	printSubmission(out, final)
	if final.Status == "failed" {
		return final, fmt.Errorf("submission failed: %s", final.Reason)
	}
	return final, nil
}

// statusLine shows a submission on its way: queued (position N), running
// n/N with a bar, then the result. On a terminal it is one line redrawn in
// place; in a pipe each change is a line of its own.
type statusLine struct {
	out io.Writer
	tty bool
}

func newStatusLine(out io.Writer) *statusLine { return &statusLine{out: out, tty: isTerminal(out)} }

func (l *statusLine) show(s client.Submission) {
	line := s.Status
	switch {
	case s.QueuePosition != nil:
		line += fmt.Sprintf(" (position %d in queue)", *s.QueuePosition)
	case s.Progress != nil && s.Progress.Total > 0:
		const width = 30
		filled := s.Progress.Done * width / s.Progress.Total
		line += fmt.Sprintf(" %d/%d [%s%s] %3d%%", s.Progress.Done, s.Progress.Total,
			strings.Repeat("#", filled), strings.Repeat(".", width-filled), s.Progress.Done*100/s.Progress.Total)
	}
	line = time.Now().Format("15:04:05") + "  " + line
	if l.tty {
		fmt.Fprintf(l.out, "\r%s\033[K", line)
		return
	}
	fmt.Fprintln(l.out, line)
}

func (l *statusLine) end() {
	if l.tty {
		fmt.Fprintln(l.out)
	}
}

func sortedKeys(m map[string]float64) []string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

func printSubmission(out io.Writer, s client.Submission) {
	by := ""
	if s.Member != "" {
		by = " (sent by " + s.Member + ")"
	}
	fmt.Fprintf(out, "submission %s  challenge %s  team %s%s  status %s\n", s.ID, s.Challenge, s.Team, by, s.Status)
	if s.Reason != "" || s.Message != "" {
		fmt.Fprintf(out, "  %s: %s\n", s.Reason, s.Message)
	}
	if s.Excluded != nil {
		fmt.Fprintf(out, "  excluded from ranking by the organizers on %s: %s\n", s.Excluded.At.Local().Format("2006-01-02 15:04"), s.Excluded.Reason)
	}
	if s.Metrics != nil {
		printScores(out, "public", s.Metrics.Public)
		printScores(out, "private", s.Metrics.Private)
	}
}

// printScores writes one line of a part's metrics, by name; nothing for
// a part without any.
func printScores(out io.Writer, part string, scores map[string]float64) {
	if len(scores) == 0 {
		return
	}
	fmt.Fprintf(out, "  %s:", part)
	for _, k := range sortedKeys(scores) {
		fmt.Fprintf(out, "  %s=%.4f", k, scores[k])
	}
	fmt.Fprintln(out)
}

func leaderboard(ctx context.Context, c *client.Client, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("leaderboard", flag.ContinueOnError)
	board := fs.String("board", "public", "public or private")
	pos, asJSON, err := jsonFlag(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("usage: hackctl leaderboard CHALLENGE [--board public|private]")
	}
	lb, err := c.Leaderboard(ctx, pos[0], *board)
	if err != nil {
		return err
	}
	if asJSON {
		return printJSON(out, lb)
	}
	direction := "higher is better"
	if !lb.HigherIsBetter {
		direction = "lower is better"
	}
	fmt.Fprintf(out, "%s — %s board, %s (%s)\n", lb.Challenge, lb.Board, lb.Metric, direction)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RANK\tTEAM\tSCORE\tENTRIES\tSUBMITTED")
	for _, e := range lb.Entries {
		fmt.Fprintf(tw, "%d\t%s\t%.4f\t%d\t%s\n", e.Rank, e.Team, e.Score, e.Submissions, e.SubmittedAt.Local().Format("2006-01-02 15:04"))
	}
	if len(lb.Entries) == 0 {
		fmt.Fprintln(tw, "-\t(no scored submissions yet)\t\t\t")
	}
	return tw.Flush()
}
