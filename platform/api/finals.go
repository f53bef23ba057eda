package api

import (
	"errors"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/hackarena/hackarena/platform/store"
)

// Which of a team's submissions are finals, as views say it.
const (
	finalSelected = "selected"
	finalDefault  = "default"
)

// finalsOf answers, for one request, whether a submission is one of its
// team's finals ("selected", "default" or ""), reading each team's finals
// in each challenge once.
func (s *Server) finalsOf(c *fiber.Ctx) func(sub store.Submission) string {
	known := map[[2]string]store.Finals{}
	return func(sub store.Submission) string {
		if sub.Status != store.StatusScored {
			return ""
		}
		ch, ok := s.Challenges.Get(sub.Challenge)
		if !ok {
			return ""
		}
		key := [2]string{sub.Challenge, sub.TeamID}
		f, ok := known[key]
		if !ok {
			var err error
			if f, err = s.Store.TeamFinals(c.UserContext(), sub.Challenge, sub.TeamID, store.RulesOf(ch)); err != nil {
				s.Log.Warn("read a team's finals", "challenge", sub.Challenge, "err", err)
			}
			known[key] = f
		}
		return finalKind(f, sub.ID)
	}
}

// finalKind says whether id is one of the finals f, and how.
func finalKind(f store.Finals, id string) string {
	switch {
	case !f.Has(id):
		return ""
	case f.Selected:
		return finalSelected
	}
	return finalDefault
}

// selectFinal (POST) and unselectFinal (DELETE) change which of its
// submissions a team counts at the end.
func (s *Server) selectFinal(c *fiber.Ctx) error   { return s.changeFinal(c, true) }
func (s *Server) unselectFinal(c *fiber.Ctx) error { return s.changeFinal(c, false) }

func (s *Server) changeFinal(c *fiber.Ctx, selected bool) error {
	claims, _ := claimsOf(c)
	id := strings.Clone(c.Params("id"))
	sub, err := s.Store.Submission(c.UserContext(), id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && sub.TeamID != claims.TeamID) {
		return apiError(fiber.StatusNotFound, "submission_not_found", "no submission %q of your team: list yours with GET /api/v1/teams/me/submissions", id)
	}
	if err != nil {
		return err
	}
	ch, ok := s.Challenges.Get(sub.Challenge)
	if !ok {
		return apiError(fiber.StatusConflict, "challenge_unavailable", "challenge %q is not available on this server", sub.Challenge)
	}
	rules := store.RulesOf(ch)
	changed, err := s.Store.SelectFinal(c.UserContext(), sub, selected, rules, ch.ClosesAt)
	var tooMany *store.TooManyFinalsError
	switch {
	case errors.Is(err, store.ErrNotScored):
		return apiError(fiber.StatusConflict, "not_scored", "submission %s is %s: only a scored submission can be a final", sub.ID, sub.Status)
	case errors.Is(err, store.ErrClosed):
		return apiError(fiber.StatusConflict, "challenge_closed", "%s closed at %s: the finals are fixed", ch.Slug, ch.ClosesAt.Format(time.RFC3339))
	case errors.As(err, &tooMany):
		return apiError(fiber.StatusConflict, "too_many_finals", "%d submissions count at the end of %s and your team has selected %s: unselect one first (DELETE /api/v1/submissions/{id}/final, or hackctl final --clear ID)",
			tooMany.Max, ch.Slug, strings.Join(tooMany.Selected, ", "))
	case err != nil:
		return err
	}
	finals, err := s.Store.TeamFinals(c.UserContext(), sub.Challenge, sub.TeamID, rules)
	if err != nil {
		return err
	}
	view := s.submissionJSON(c, sub, s.showPrivate(c, sub.Challenge, claims))
	view.Log = ""
	view.Final = finalKind(finals, sub.ID)
	ids := make([]string, 0, len(finals.Submissions))
	for _, f := range finals.Submissions {
		ids = append(ids, f.ID)
	}
	return c.JSON(fiber.Map{"submission": view, "changed": changed,
		"finals": fiber.Map{"challenge": ch.Slug, "count": rules.Finals, "selected": finals.Selected, "submissions": ids}})
}

// teamFinals lists the caller's finals in a challenge: those it selected,
// or the ones that count by default.
func (s *Server) teamFinals(c *fiber.Ctx) error {
	claims, _ := claimsOf(c)
	ch, ok := s.Challenges.Get(c.Params("slug"))
	if !ok {
		return apiError(fiber.StatusNotFound, "challenge_not_found", "no challenge %q: list them with GET /api/v1/challenges", c.Params("slug"))
	}
	rules := store.RulesOf(ch)
	finals, err := s.Store.TeamFinals(c.UserContext(), ch.Slug, claims.TeamID, rules)
	if err != nil {
		return err
	}
	showPrivate := s.showPrivate(c, ch.Slug, claims)
	subs := make([]submissionJSON, 0, len(finals.Submissions))
	for _, sub := range finals.Submissions {
		view := s.submissionJSON(c, sub, showPrivate)
		view.Final = finalKind(finals, sub.ID)
		subs = append(subs, view)
	}
	return c.JSON(fiber.Map{"challenge": ch.Slug, "count": rules.Finals, "selected": finals.Selected, "closes_at": optionalTime(ch.ClosesAt), "submissions": subs})
}
