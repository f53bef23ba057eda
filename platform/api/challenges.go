package api

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/hackarena/hackarena/challenges"
	"github.com/hackarena/hackarena/platform/auth"
	"github.com/hackarena/hackarena/platform/store"
)

type challengeJSON struct {
	Slug           string     `json:"slug"`
	Title          string     `json:"title"`
	Task           string     `json:"task"`
	Input          string     `json:"input"`
	Metrics        []string   `json:"metrics"`
	PrimaryMetric  string     `json:"primary_metric"`
	HigherIsBetter bool       `json:"higher_is_better"`
	Status         string     `json:"status"`
	StatusReason   string     `json:"status_reason,omitempty"`
	OpensAt        *time.Time `json:"opens_at"`
	ClosesAt       *time.Time `json:"closes_at"`
	RevealAt       *time.Time `json:"reveal_at,omitempty"`
	// Filled in the list only: teams that submitted, the public leader,
	// and whether the private board is public.
	Teams    *int64      `json:"teams,omitempty"`
	Leader   *leaderJSON `json:"leader,omitempty"`
	Revealed *bool       `json:"revealed,omitempty"`
}

type challengeDetailJSON struct {
	challengeJSON
	Description string `json:"description"`
	// DescriptionHTML is the description rendered and sanitized.
	DescriptionHTML string            `json:"description_html"`
	Limits          challenges.Limits `json:"limits"`
	Data            []dataFileJSON    `json:"data"`
	// Evaluation is what `hackctl eval` judges a plugin with locally.
	Evaluation challenges.Evaluation `json:"evaluation"`
	// TeamSize is the most members a team submitting here may have.
	TeamSize int `json:"team_size"`
	// FinalSubmissions is how many of a team's submissions count at the end.
	FinalSubmissions int `json:"final_submissions"`
}

type dataFileJSON struct {
	challenges.DataFile
	URL string `json:"url"`
}

func optionalTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func summary(c *challenges.Challenge) challengeJSON {
	status := c.Status
	if status == challenges.StatusOpen && !c.Open(time.Now()) {
		status = "closed"
	}
	return challengeJSON{
		Slug: c.Slug, Title: c.Title, Task: c.Task, Input: c.Input, Metrics: c.Metrics,
		PrimaryMetric: c.PrimaryMetric, HigherIsBetter: c.HigherIsBetter,
		Status: status, StatusReason: c.StatusReason,
		OpensAt: optionalTime(c.OpensAt), ClosesAt: optionalTime(c.ClosesAt), RevealAt: optionalTime(c.RevealAt),
	}
}

func (s *Server) challenge(c *fiber.Ctx) (*challenges.Challenge, error) {
	ch, ok := s.Challenges.Get(c.Params("slug"))
	if !ok {
		return nil, apiError(fiber.StatusNotFound, "challenge_not_found", "no challenge %q: list them with GET /api/v1/challenges", c.Params("slug"))
	}
	return ch, nil
}

func (s *Server) listChallenges(c *fiber.Ctx) error {
	out := []challengeJSON{}
	for _, ch := range s.Challenges.All() {
		j := summary(ch)
		teams, leader, err := s.Store.BoardSummary(c.UserContext(), ch.Slug)
		if err != nil {
			return err
		}
		revealed, err := s.privateVisible(c.UserContext(), ch, auth.Claims{}, false)
		if err != nil {
			return err
		}
		j.Teams, j.Revealed = &teams, &revealed
		if leader != nil {
			j.Leader = &leaderJSON{Team: leader.TeamName, Score: leader.Score}
		}
		out = append(out, j)
	}
	return c.JSON(fiber.Map{"challenges": out})
}

func (s *Server) detail(ch *challenges.Challenge) (challengeDetailJSON, error) {
	html, err := renderMarkdown(ch.Description)
	if err != nil {
		return challengeDetailJSON{}, fmt.Errorf("render the description of %q: %w", ch.Slug, err)
	}
	detail := challengeDetailJSON{challengeJSON: summary(ch), Description: ch.Description, DescriptionHTML: html, Limits: ch.Limits, Data: []dataFileJSON{}, Evaluation: ch.Evaluation(),
		TeamSize: ch.Spec.Members(), FinalSubmissions: ch.Finals}
	for _, f := range ch.Data {
		detail.Data = append(detail.Data, dataFileJSON{DataFile: f, URL: "/api/v1/challenges/" + ch.Slug + "/data/" + f.Name})
	}
	return detail, nil
}

func (s *Server) getChallenge(c *fiber.Ctx) error {
	ch, err := s.challenge(c)
	if err != nil {
		return err
	}
	detail, err := s.detail(ch)
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"challenge": detail})
}

func (s *Server) getDataFile(c *fiber.Ctx) error {
	ch, err := s.challenge(c)
	if err != nil {
		return err
	}
	f, ok := ch.DataFile(c.Params("file"))
	if !ok {
		return apiError(fiber.StatusNotFound, "file_not_found", "challenge %q has no data file %q: see the data list in GET /api/v1/challenges/%s", ch.Slug, c.Params("file"), ch.Slug)
	}
	c.Set(fiber.HeaderContentDisposition, `attachment; filename="`+f.Name+`"`)
	c.Set("X-Content-SHA256", f.SHA256)
	if f.Content != nil {
		c.Type("csv")
		return sendRange(c, nopCloser{bytes.NewReader(f.Content)}, int64(len(f.Content)), f.SHA256)
	}
	file, err := os.Open(f.Path)
	if err != nil {
		return fmt.Errorf("open data file %s of %q: %w", f.Name, ch.Slug, err)
	}
	info, err := file.Stat()
	if err != nil {
		file.Close()
		return fmt.Errorf("open data file %s of %q: %w", f.Name, ch.Slug, err)
	}
	c.Type(filepath.Ext(f.Name))
	return sendRange(c, file, info.Size(), f.SHA256)
}

type nopCloser struct{ io.ReadSeeker }

func (nopCloser) Close() error { return nil }

// sendRange answers with the bytes of body (size long) that the request's
// Range header asks for: one range (what a resumed download sends) as 206
// with Content-Range, a range past the end as 416, anything else, or a
// Range whose If-Range names another version, as the whole body. The
// file's sha256 is its ETag. body is closed once sent.
func sendRange(c *fiber.Ctx, body io.ReadSeekCloser, size int64, sha string) error {
	etag := `"` + sha + `"`
	c.Set(fiber.HeaderAcceptRanges, "bytes")
	c.Set(fiber.HeaderETag, etag)
	start, end, ok := parseRange(c.Get(fiber.HeaderRange), size)
	if ifRange := c.Get(fiber.HeaderIfRange); ifRange != "" && ifRange != etag {
		ok, start, end = false, 0, size-1
	}
	switch {
	case !ok && start > 0:
		body.Close()
		c.Set(fiber.HeaderContentRange, "bytes */"+strconv.FormatInt(size, 10))
		return apiError(fiber.StatusRequestedRangeNotSatisfiable, "range_not_satisfiable", "the file has %d bytes; ask for a range that starts before its end", size)
	case !ok:
		return c.SendStream(body, int(size))
	}
	if _, err := body.Seek(start, io.SeekStart); err != nil {
		body.Close()
		return fmt.Errorf("seek data file: %w", err)
	}
	c.Status(fiber.StatusPartialContent)
	c.Set(fiber.HeaderContentRange, fmt.Sprintf("bytes %d-%d/%d", start, end, size))
	return c.SendStream(struct {
		io.Reader
		io.Closer
	}{io.LimitReader(body, end-start+1), body}, int(end-start+1))
}

// parseRange reads a single "bytes=a-b", "bytes=a-" or "bytes=-n" range of
// a body of size bytes. ok is false for no range or one this server does
// not serve in part (several ranges, bad syntax), where start > 0 only for
// a range that starts at or past the end.
func parseRange(h string, size int64) (start, end int64, ok bool) {
	spec, found := strings.CutPrefix(h, "bytes=")
	if !found || strings.Contains(spec, ",") {
		return 0, size - 1, false
	}
	first, last, found := strings.Cut(strings.TrimSpace(spec), "-")
	if !found {
		return 0, size - 1, false
	}
	if first == "" {
		n, err := strconv.ParseInt(last, 10, 64)
		if err != nil || n <= 0 {
			return 0, size - 1, false
		}
		return max(size-n, 0), size - 1, size > 0
	}
	a, err := strconv.ParseInt(first, 10, 64)
	if err != nil || a < 0 {
		return 0, size - 1, false
	}
	if a >= size {
		return max(a, 1), size - 1, false
	}
	b := size - 1
	if last != "" {
		if b, err = strconv.ParseInt(last, 10, 64); err != nil || b < a {
			return 0, size - 1, false
		}
		b = min(b, size-1)
	}
	return a, b, true
}

// privateVisible reports whether the caller may see private scores: an
// organizer always, everyone once the schedule's reveal time has passed or
// the organizers revealed the board.
func (s *Server) privateVisible(ctx context.Context, ch *challenges.Challenge, claims auth.Claims, authenticated bool) (bool, error) {
	if authenticated && claims.Role == store.RoleOrganizer {
		return true, nil
	}
	if !ch.RevealAt.IsZero() && time.Now().After(ch.RevealAt) {
		return true, nil
	}
	at, err := s.Store.RevealedAt(ctx, ch.Slug)
	return !at.IsZero(), err
}

func (s *Server) leaderboard(c *fiber.Ctx) error {
	ch, err := s.challenge(c)
	if err != nil {
		return err
	}
	board := c.Query("board", store.BoardPublic)
	switch board {
	case store.BoardPublic:
	case store.BoardPrivate:
		claims, ok := claimsOf(c)
		visible, err := s.privateVisible(c.UserContext(), ch, claims, ok)
		if err != nil {
			return err
		}
		if !visible {
			return apiError(fiber.StatusForbidden, "private_board_hidden", "the private leaderboard of %q is hidden until the organizers reveal it", ch.Slug)
		}
	default:
		return apiError(fiber.StatusBadRequest, "invalid_board", "board must be \"public\" or \"private\"")
	}
	entries, err := s.Store.Board(c.UserContext(), ch.Slug, board)
	if err != nil {
		return err
	}
	// Who is off the board, and why, so no one wonders where a team went.
	dq, err := s.Store.Disqualifications(c.UserContext(), ch.Slug)
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{
		"challenge": ch.Slug, "board": board, "metric": ch.PrimaryMetric,
		"higher_is_better": ch.HigherIsBetter, "entries": entries, "disqualified": dq,
	})
}

// history lists every scored submission's public score in the primary
// metric, oldest first, for drawing a board's history.
func (s *Server) history(c *fiber.Ctx) error {
	ch, err := s.challenge(c)
	if err != nil {
		return err
	}
	points, err := s.Store.History(c.UserContext(), ch.Slug, ch.PrimaryMetric)
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"challenge": ch.Slug, "metric": ch.PrimaryMetric, "higher_is_better": ch.HigherIsBetter, "points": points})
}
