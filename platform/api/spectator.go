package api

import (
	"bytes"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/hackarena/hackarena/platform/auth"
	"github.com/hackarena/hackarena/platform/store"
	"github.com/microcosm-cc/bluemonday"
	"github.com/yuin/goldmark"
	"github.com/yuin/goldmark/extension"
)

// markdown renders challenge descriptions: GitHub-flavoured tables and
// strikethrough; raw HTML in the source is dropped by goldmark (no
// WithUnsafe), and the output is sanitized again, since organizers'
// descriptions are shown to everyone.
var (
	markdown  = goldmark.New(goldmark.WithExtensions(extension.Table, extension.Strikethrough, extension.Linkify))
	sanitizer = bluemonday.UGCPolicy()
)

// renderMarkdown turns a description into safe HTML.
func renderMarkdown(src string) (string, error) {
	var buf bytes.Buffer
	if err := markdown.Convert([]byte(src), &buf); err != nil {
		return "", err
	}
	return sanitizer.Sanitize(buf.String()), nil
}

// leaderJSON is who leads a challenge's public board.
type leaderJSON struct {
	Team  string  `json:"team"`
	Score float64 `json:"score"`
}

// publicSubmissionJSON is what anyone may see of a submission: no logs, no
// messages, no binary hash, and private scores only once revealed.
type publicSubmissionJSON struct {
	ID         string             `json:"id"`
	Challenge  string             `json:"challenge"`
	Status     string             `json:"status"`
	Reason     string             `json:"reason,omitempty"`
	Member     string             `json:"member,omitempty"`
	Excluded   *store.Exclusion   `json:"excluded,omitempty"`
	Public     map[string]float64 `json:"public,omitempty"`
	Private    map[string]float64 `json:"private,omitempty"`
	QueuedAt   time.Time          `json:"queued_at"`
	FinishedAt *time.Time         `json:"finished_at"`
	// Final: it counts on the private board ("selected" or "default").
	Final string `json:"final,omitempty"`
	// Resources are what its run used, once judged.
	Resources *store.Resources `json:"resources,omitempty"`
	// Interval is the primary metric's 95% bootstrap interval by half.
	Interval map[string][2]float64 `json:"interval,omitempty"`
}

// teamSubmissions is a team's public history, newest first, for its page.
func (s *Server) teamSubmissions(c *fiber.Ctx) error {
	team, err := s.teamByPath(c)
	if err != nil {
		return err
	}
	subs, err := s.Store.TeamSubmissions(c.UserContext(), team.ID, 200)
	if err != nil {
		return err
	}
	// As anyone sees it: no claims, so no organizer's view.
	showPrivate := s.privateShownFor(c, auth.Claims{})
	final := s.finalsOf(c)
	out := make([]publicSubmissionJSON, 0, len(subs))
	for _, sub := range subs {
		j := publicSubmissionJSON{ID: sub.ID, Challenge: sub.Challenge, Status: sub.Status, Reason: sub.Reason, Member: sub.Member, Excluded: sub.Excluded,
			QueuedAt: sub.QueuedAt, FinishedAt: optionalTime(sub.FinishedAt), Final: final(sub), Resources: sub.Resources,
			Interval: intervalView(sub.Interval, showPrivate(sub.Challenge))}
		if sub.Metrics != nil {
			j.Public = sub.Metrics.Public
			if showPrivate(sub.Challenge) {
				j.Private = sub.Metrics.Private
			}
		}
		out = append(out, j)
	}
	return c.JSON(fiber.Map{"team": team.Name, "submissions": out})
}
