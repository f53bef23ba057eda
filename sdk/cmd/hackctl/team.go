package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/hackarena/hackarena/sdk/client"
)

const teamUsage = `usage: hackctl team create NAME | invite [--uses N] [--expires 48h] | join CODE |
       members [TEAM] | leave | remove USER | captain USER   [--json]`

// teamCmd manages the team the logged-in person is in. Commands that
// change it save the new token the server answers with: a token acts for
// one team, and the old one stops working.
func teamCmd(ctx context.Context, c *client.Client, cfg savedConfig, args []string, out io.Writer, base string) error {
	fs := flag.NewFlagSet("team", flag.ContinueOnError)
	uses := fs.Int("uses", 1, "how many people may join with the invite")
	expires := fs.String("expires", "168h", "how long the invite works")
	pos, asJSON, err := jsonFlag(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return errors.New(teamUsage)
	}
	if c.Token == "" {
		return errors.New("not logged in: run hackctl signup (a login of your own) or hackctl login first")
	}
	arg := func() (string, error) {
		if len(pos) != 2 {
			return "", errors.New(teamUsage)
		}
		return pos[1], nil
	}
	saveToken := func(team, token string) error {
		cfg.Server, cfg.Token, cfg.Team = base, token, team
		return cfg.save()
	}
	switch pos[0] {
	case "create":
		name, err := arg()
		if err != nil {
			return err
		}
		team, token, err := c.CreateTeam(ctx, name)
		if err != nil {
			return err
		}
		if err := saveToken(team.Name, token); err != nil {
			return err
		}
		fmt.Fprintf(out, "created team %q; you are its captain. Invite your teammates with: hackctl team invite --uses N\n", team.Name)
	case "invite":
		inv, err := c.CreateInvite(ctx, *uses, *expires)
		if err != nil {
			return err
		}
		if asJSON {
			return printJSON(out, inv)
		}
		fmt.Fprintf(out, "invite code %s: %d may join team %q with it until %s.\nEach runs: hackctl team join %s\n",
			inv.Code, inv.UsesLeft, inv.Team, inv.ExpiresAt.Local().Format(time.RFC1123), inv.Code)
	case "join":
		code, err := arg()
		if err != nil {
			return err
		}
		team, token, err := c.JoinTeam(ctx, code)
		if err != nil {
			return err
		}
		if err := saveToken(team.Name, token); err != nil {
			return err
		}
		fmt.Fprintf(out, "joined team %q; you submit for it now, and share its daily submissions\n", team.Name)
	case "members":
		name := "me"
		if len(pos) == 2 {
			name = pos[1]
		}
		info, err := c.TeamInfo(ctx, name)
		if err != nil {
			return err
		}
		if asJSON {
			return printJSON(out, info)
		}
		fmt.Fprintf(out, "team %q\n", info.Name)
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "MEMBER\tROLE\tJOINED")
		for _, m := range info.Members {
			role := "member"
			if m.Captain {
				role = "captain"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", m.Name, role, m.JoinedAt.Local().Format("2006-01-02 15:04"))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		for _, d := range info.Disqualified {
			fmt.Fprintf(out, "disqualified from %s on %s: %s\n", d.Challenge, d.At.Local().Format("2006-01-02 15:04"), d.Reason)
		}
	case "leave":
		token, err := c.LeaveTeam(ctx)
		if err != nil {
			return err
		}
		team := cfg.Team
		if err := saveToken("", token); err != nil {
			return err
		}
		fmt.Fprintf(out, "left team %q; its submissions stay its own. Create or join another with hackctl team create|join\n", team)
	case "remove":
		user, err := arg()
		if err != nil {
			return err
		}
		if err := c.RemoveMember(ctx, user); err != nil {
			return err
		}
		fmt.Fprintf(out, "removed %q from the team; their tokens no longer work\n", user)
	case "captain":
		user, err := arg()
		if err != nil {
			return err
		}
		if err := c.HandOver(ctx, user); err != nil {
			return err
		}
		fmt.Fprintf(out, "%q captains the team now\n", user)
	default:
		return errors.New(teamUsage)
	}
	return nil
}

const moderateUsage = `usage (organizers): hackctl moderate disqualify CHALLENGE TEAM --reason R | reinstate CHALLENGE TEAM [--reason R] |
       exclude SUBMISSION_ID --reason R | include SUBMISSION_ID [--reason R] | lock USER --reason R | unlock USER [--reason R]`

// moderateCmd is the organizers' moderation; each action is recorded in
// the audit log with its reason.
func moderateCmd(ctx context.Context, c *client.Client, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("moderate", flag.ContinueOnError)
	reason := fs.String("reason", "", "why: the team sees it, and the audit log keeps it")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) < 2 {
		return errors.New(moderateUsage)
	}
	want := map[string]int{"disqualify": 3, "reinstate": 3, "exclude": 2, "include": 2, "lock": 2, "unlock": 2}
	if n, ok := want[pos[0]]; !ok || len(pos) != n {
		return errors.New(moderateUsage)
	}
	switch pos[0] {
	case "disqualify":
		err = c.Disqualify(ctx, pos[1], pos[2], *reason)
	case "reinstate":
		err = c.Reinstate(ctx, pos[1], pos[2], *reason)
	case "exclude", "include":
		err = c.SetExclusion(ctx, pos[1], pos[0] == "exclude", *reason)
	case "lock", "unlock":
		err = c.SetLock(ctx, pos[1], pos[0] == "lock", *reason)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "%s %s: done (see hackctl audit)\n", pos[0], pos[len(pos)-1])
	return nil
}

// auditCmd lists organizer actions, newest first.
func auditCmd(ctx context.Context, c *client.Client, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("audit", flag.ContinueOnError)
	action := fs.String("action", "", "only this action (spec_change, reveal, rejudge, disqualify, reinstate, exclude, include, lock, unlock)")
	challenge := fs.String("challenge", "", "only actions on this challenge")
	limit := fs.Int("limit", 50, "at most this many")
	pos, asJSON, err := jsonFlag(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return errors.New("usage: hackctl audit [--action A] [--challenge C] [--limit N] [--json]")
	}
	entries, err := c.Audit(ctx, *action, *challenge, *limit)
	if err != nil {
		return err
	}
	if asJSON {
		return printJSON(out, entries)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WHEN\tWHO\tACTION\tCHALLENGE\tTARGET\tWHY")
	for _, e := range entries {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.At.Local().Format("2006-01-02 15:04:05"), e.Actor, e.Action,
			firstNonEmpty(e.Challenge, "-"), firstNonEmpty(e.Target, "-"), firstNonEmpty(e.Reason, "-"))
	}
	return tw.Flush()
}
