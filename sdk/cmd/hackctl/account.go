package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hackarena/hackarena/sdk/client"
)

// printJSON writes v for scripts, indented.
func printJSON(out io.Writer, v any) error {
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// jsonFlag parses args with a --json flag added to fs.
func jsonFlag(fs *flag.FlagSet, args []string) (positional []string, asJSON bool, err error) {
	j := fs.Bool("json", false, "print the result as JSON")
	positional, err = parseInterleaved(fs, args)
	return positional, *j, err
}

func whoami(ctx context.Context, c *client.Client, cfg savedConfig, args []string, out io.Writer) error {
	_, asJSON, err := jsonFlag(flag.NewFlagSet("whoami", flag.ContinueOnError), args)
	if err != nil {
		return err
	}
	if c.Token == "" {
		return errors.New("not logged in: run hackctl register or hackctl login")
	}
	id, err := c.WhoAmI(ctx)
	var apiErr *client.Error
	if errors.As(err, &apiErr) && apiErr.Status == 401 {
		return fmt.Errorf("the saved token for %q no longer works (%s): run hackctl login", cfg.Team, apiErr.Message)
	}
	if err != nil {
		return err
	}
	if asJSON {
		return printJSON(out, struct {
			client.Identity
			Server string `json:"server"`
		}{id, c.BaseURL})
	}
	who := id.User.Name
	if who == "" {
		who = id.Name
	}
	switch {
	case id.Name == "":
		fmt.Fprintf(out, "%q (%s), in no team yet, on %s; the token works until %s\n", who, id.Role, c.BaseURL, id.ExpiresAt.Local().Format(time.RFC1123))
	default:
		role := "member"
		if id.Captain {
			role = "captain"
		}
		fmt.Fprintf(out, "%q (%s), %s of team %q (id %s), on %s; the token works until %s\n", who, id.Role, role, id.Name, id.ID, c.BaseURL, id.ExpiresAt.Local().Format(time.RFC1123))
	}
	if id.Team != nil {
		for _, d := range id.Team.Disqualified {
			fmt.Fprintf(out, "your team was disqualified from %s: %s\n", d.Challenge, d.Reason)
		}
	}
	return nil
}

func logout(cfg savedConfig, out io.Writer) error {
	if cfg.Token == "" {
		fmt.Fprintln(out, "not logged in")
		return nil
	}
	team := cfg.Team
	cfg.Token = ""
	if err := cfg.save(); err != nil {
		return err
	}
	fmt.Fprintf(out, "logged out of %q on this machine (the token is forgotten; to stop it working everywhere, change the password)\n", team)
	return nil
}

func submissions(ctx context.Context, c *client.Client, args []string, out io.Writer) error {
	pos, asJSON, err := jsonFlag(flag.NewFlagSet("submissions", flag.ContinueOnError), args)
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return errors.New("usage: hackctl submissions [CHALLENGE] [--json]")
	}
	if c.Token == "" {
		return errors.New("not logged in: run hackctl register or hackctl login first")
	}
	all, err := c.MySubmissions(ctx)
	if err != nil {
		return err
	}
	list := []client.Submission{}
	for _, s := range all {
		if len(pos) == 0 || s.Challenge == pos[0] {
			list = append(list, s)
		}
	}
	if asJSON {
		return printJSON(out, list)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tCHALLENGE\tSTATUS\tPUBLIC\tFINAL\tQUEUED")
	for _, s := range list {
		status := s.Status
		if s.Reason != "" {
			status += ": " + s.Reason
		}
		if s.Progress != nil && s.Progress.Total > 0 {
			status += fmt.Sprintf(" %d%%", s.Progress.Done*100/s.Progress.Total)
		}
		if s.Excluded != nil {
			status += " (excluded)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, s.Challenge, status, publicScores(s), firstNonEmpty(s.FinalAs, "-"), s.QueuedAt.Local().Format("2006-01-02 15:04"))
	}
	if len(list) == 0 {
		fmt.Fprintln(tw, "-\t(no submissions yet)\t\t\t\t")
	}
	return tw.Flush()
}

func publicScores(s client.Submission) string {
	if s.Metrics == nil || len(s.Metrics.Public) == 0 {
		return "-"
	}
	return scoreLine(s.Metrics.Public)
}

// scoreLine is metrics as name=value, by name.
func scoreLine(m map[string]float64) string {
	parts := make([]string, 0, len(m))
	for _, k := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%s=%.4f", k, m[k]))
	}
	return strings.Join(parts, " ")
}

func logs(ctx context.Context, c *client.Client, args []string, out io.Writer) error {
	pos, asJSON, err := jsonFlag(flag.NewFlagSet("logs", flag.ContinueOnError), args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("usage: hackctl logs SUBMISSION_ID [--json]")
	}
	s, err := c.Submission(ctx, pos[0])
	if err != nil {
		return err
	}
	if asJSON {
		return printJSON(out, struct {
			ID     string `json:"id"`
			Status string `json:"status"`
			Log    string `json:"log"`
		}{s.ID, s.Status, s.Log})
	}
	if s.Log == "" {
		fmt.Fprintf(out, "(submission %s is %s and has no log yet)\n", s.ID, s.Status)
		return nil
	}
	_, err = io.WriteString(out, s.Log)
	return err
}

// final selects or unselects a final, or lists a challenge's finals.
func final(ctx context.Context, c *client.Client, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("final", flag.ContinueOnError)
	unselect := fs.Bool("clear", false, "unselect the submission instead")
	list := fs.Bool("list", false, "list the team's finals in CHALLENGE")
	pos, asJSON, err := jsonFlag(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || (*unselect && *list) {
		return errors.New("usage: hackctl final SUBMISSION_ID | hackctl final --clear SUBMISSION_ID|CHALLENGE | hackctl final --list CHALLENGE [--json]")
	}
	if c.Token == "" {
		return errors.New("not logged in: run hackctl register or hackctl login first")
	}
	var finals client.Finals
	switch {
	case *list:
		finals, err = c.Finals(ctx, pos[0])
	case *unselect:
		// A challenge's name clears every final the team selected there.
		if finals, err = c.Finals(ctx, pos[0]); err == nil && finals.Selected {
			selected := finals.Submissions
			for _, s := range selected {
				if finals, err = c.SelectFinal(ctx, s.ID, false); err != nil {
					break
				}
			}
		} else if apiErr := (*client.Error)(nil); errors.As(err, &apiErr) && apiErr.Status == 404 {
			finals, err = c.SelectFinal(ctx, pos[0], false)
		}
	default:
		finals, err = c.SelectFinal(ctx, pos[0], true)
	}
	if err != nil {
		return err
	}
	if asJSON {
		return printJSON(out, finals)
	}
	how := fmt.Sprintf("none selected: your best %d by public score count", finals.Count)
	if finals.Selected {
		how = fmt.Sprintf("selected by your team (at most %d)", finals.Count)
	}
	fmt.Fprintf(out, "finals in %s, %s; the private board ranks your team by the best of them\n", finals.Challenge, how)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tPUBLIC\tQUEUED")
	for _, s := range finals.Submissions {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", s.ID, publicScores(s), s.QueuedAt.Local().Format("2006-01-02 15:04"))
	}
	if len(finals.Submissions) == 0 {
		fmt.Fprintln(tw, "-\t(no scored submission yet)\t")
	}
	if finals.ClosesAt != nil {
		fmt.Fprintf(tw, "\t\t(finals can change until %s)\n", finals.ClosesAt.Local().Format("2006-01-02 15:04"))
	}
	return tw.Flush()
}
