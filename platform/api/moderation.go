package api

import (
	"encoding/json"
	"errors"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/hackarena/hackarena/platform/store"
)

// maxReason bounds the reason an organizer gives, which the affected team
// and the audit log show.
const maxReason = 500

type reasonRequest struct {
	Team   string `json:"team"`
	Reason string `json:"reason"`
}

// reasonOf reads {"reason"} (and "team") from the body, or ?reason=; a
// required reason must be there.
func reasonOf(c *fiber.Ctx, required bool) (reasonRequest, error) {
	var req reasonRequest
	if len(c.Body()) > 0 {
		if err := decodeJSON(c, &req); err != nil {
			return req, err
		}
	}
	if req.Reason == "" {
		req.Reason = c.Query("reason")
	}
	req.Reason = strings.TrimSpace(req.Reason)
	if required && req.Reason == "" {
		return req, apiError(fiber.StatusBadRequest, "reason_required", "say why in \"reason\": the affected team sees it, and the audit log keeps it")
	}
	if len(req.Reason) > maxReason {
		return req, apiError(fiber.StatusBadRequest, "invalid_reason", "reason is %d bytes; keep it under %d", len(req.Reason), maxReason)
	}
	return req, nil
}

// actor names the organizer acting, for the audit log.
func actor(c *fiber.Ctx) string {
	claims, _ := claimsOf(c)
	if claims.UserName != "" {
		return claims.UserName
	}
	return claims.TeamName
}

// auditAfter records an action that took effect already (a spec change, a
// reveal, a rejudge); a failure to record it is logged, not answered: the
// action stands.
func (s *Server) auditAfter(c *fiber.Ctx, e store.AuditEntry, detail any) {
	e.Actor = actor(c)
	if e.Reason == "" {
		e.Reason = strings.TrimSpace(c.Query("reason"))
	}
	if detail != nil {
		if raw, err := json.Marshal(detail); err == nil {
			e.Detail = raw
		}
	}
	if err := s.Store.Audit(c.UserContext(), e); err != nil {
		s.Log.Error("an organizer action is missing from the audit log", "action", e.Action, "challenge", e.Challenge, "err", err)
	}
}

// disqualify is POST /api/v1/challenges/{slug}/disqualifications
// {"team","reason"}: the team leaves both boards at once, and they are
// rebuilt without it.
func (s *Server) disqualify(c *fiber.Ctx) error {
	ch, err := s.challenge(c)
	if err != nil {
		return err
	}
	req, err := reasonOf(c, true)
	if err != nil {
		return err
	}
	team, err := s.Store.TeamByName(c.UserContext(), strings.TrimSpace(req.Team))
	if errors.Is(err, store.ErrNotFound) || (err == nil && team.Role == store.RoleOrganizer) {
		return apiError(fiber.StatusNotFound, "team_not_found", "no team named %q: send its name in \"team\"", req.Team)
	}
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	d := store.Disqualification{TeamID: team.ID, Team: team.Name, Reason: req.Reason, By: actor(c), At: now}
	e := store.AuditEntry{At: now, Actor: actor(c), Action: store.ActionDisqualify, Challenge: ch.Slug, Target: team.Name, Reason: req.Reason}
	if err := s.Store.Disqualify(c.UserContext(), ch.Slug, d, e); err != nil {
		return err
	}
	rep, err := s.Store.RebuildBoards(c.UserContext(), ch.Slug, store.RulesOf(ch))
	if err != nil {
		return err
	}
	s.Log.Info("team disqualified", "challenge", ch.Slug, "team", team.Name, "by", d.By)
	return c.JSON(fiber.Map{"challenge": ch.Slug, "disqualification": d, "rebuild": rep})
}

// reinstate is DELETE /api/v1/challenges/{slug}/disqualifications/{team}:
// the boards are rebuilt with the team's best entries back.
func (s *Server) reinstate(c *fiber.Ctx) error {
	ch, err := s.challenge(c)
	if err != nil {
		return err
	}
	req, err := reasonOf(c, false)
	if err != nil {
		return err
	}
	name, err := url.PathUnescape(c.Params("team"))
	if err != nil {
		return apiError(fiber.StatusBadRequest, "invalid_name", "the team name in the path is not URL-encoded correctly")
	}
	team, err := s.Store.TeamByName(c.UserContext(), name)
	if errors.Is(err, store.ErrNotFound) {
		return apiError(fiber.StatusNotFound, "team_not_found", "no team named %q", name)
	}
	if err != nil {
		return err
	}
	e := store.AuditEntry{At: time.Now(), Actor: actor(c), Action: store.ActionReinstate, Challenge: ch.Slug, Target: team.Name, Reason: req.Reason}
	changed, err := s.Store.Reinstate(c.UserContext(), ch.Slug, team.ID, e)
	if err != nil {
		return err
	}
	if !changed {
		return apiError(fiber.StatusNotFound, "not_disqualified", "team %q is not disqualified from %q", team.Name, ch.Slug)
	}
	rep, err := s.Store.RebuildBoards(c.UserContext(), ch.Slug, store.RulesOf(ch))
	if err != nil {
		return err
	}
	s.Log.Info("team reinstated", "challenge", ch.Slug, "team", team.Name, "by", e.Actor)
	return c.JSON(fiber.Map{"challenge": ch.Slug, "reinstated": team.Name, "rebuild": rep})
}

// disqualifications is GET /api/v1/challenges/{slug}/disqualifications,
// public: who is off the boards and why.
func (s *Server) disqualifications(c *fiber.Ctx) error {
	ch, err := s.challenge(c)
	if err != nil {
		return err
	}
	list, err := s.Store.Disqualifications(c.UserContext(), ch.Slug)
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"challenge": ch.Slug, "disqualified": list})
}

// setExclusion is POST (exclude, with a reason) or DELETE (include again)
// /api/v1/submissions/{id}/exclusion; the boards are rebuilt.
func (s *Server) setExclusion(c *fiber.Ctx) error {
	exclude := c.Method() == fiber.MethodPost
	req, err := reasonOf(c, exclude)
	if err != nil {
		return err
	}
	sub, err := s.Store.Submission(c.UserContext(), c.Params("id"))
	if errors.Is(err, store.ErrNotFound) {
		return apiError(fiber.StatusNotFound, "submission_not_found", "no submission %q", c.Params("id"))
	}
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	e := store.AuditEntry{At: now, Actor: actor(c), Action: store.ActionInclude, Challenge: sub.Challenge, Target: sub.ID, Reason: req.Reason}
	var ex *store.Exclusion
	if exclude {
		ex = &store.Exclusion{Reason: req.Reason, By: actor(c), At: now}
		e.Action = store.ActionExclude
	}
	changed, err := s.Store.SetExclusion(c.UserContext(), sub, ex, e)
	if err != nil {
		return err
	}
	if !changed {
		return apiError(fiber.StatusNotFound, "not_excluded", "submission %s is not excluded", sub.ID)
	}
	out := fiber.Map{"submission_id": sub.ID, "challenge": sub.Challenge, "excluded": ex}
	if ch, ok := s.Challenges.Get(sub.Challenge); ok {
		rep, err := s.Store.RebuildBoards(c.UserContext(), ch.Slug, store.RulesOf(ch))
		if err != nil {
			return err
		}
		out["rebuild"] = rep
	}
	s.Log.Info("submission "+e.Action+"d", "submission", sub.ID, "team", sub.TeamName, "by", e.Actor)
	return c.JSON(out)
}

// setLock is POST (lock, with a reason) or DELETE (unlock)
// /api/v1/users/{user}/lock: a locked user's tokens are refused at once
// on this server, within seconds on the others.
func (s *Server) setLock(c *fiber.Ctx) error {
	lock := c.Method() == fiber.MethodPost
	req, err := reasonOf(c, lock)
	if err != nil {
		return err
	}
	name, err := url.PathUnescape(c.Params("user"))
	if err != nil {
		return apiError(fiber.StatusBadRequest, "invalid_name", "the user name in the path is not URL-encoded correctly")
	}
	u, err := s.Store.UserByName(c.UserContext(), name)
	if errors.Is(err, store.ErrNotFound) {
		return apiError(fiber.StatusNotFound, "user_not_found", "no user named %q", name)
	}
	if err != nil {
		return err
	}
	if u.Role == store.RoleOrganizer {
		return apiError(fiber.StatusForbidden, "organizer_only", "the organizer account cannot be locked through the API")
	}
	now := time.Now().UTC()
	e := store.AuditEntry{At: now, Actor: actor(c), Action: store.ActionUnlock, Target: u.Name, Reason: req.Reason}
	var l *store.Lock
	if lock {
		l = &store.Lock{Reason: req.Reason, By: actor(c), At: now}
		e.Action = store.ActionLock
	}
	changed, err := s.Store.SetLock(c.UserContext(), u.ID, l, e)
	if err != nil {
		return err
	}
	s.standings.forget(u.ID)
	if !changed && !lock {
		return apiError(fiber.StatusNotFound, "not_locked", "user %q is not locked", u.Name)
	}
	s.Log.Info("user "+e.Action+"ed", "user", u.Name, "by", e.Actor)
	return c.JSON(fiber.Map{"user": u.Name, "locked": l})
}

// auditLog is GET /api/v1/audit[?action=&challenge=&actor=&target=&before=&limit=].
func (s *Server) auditLog(c *fiber.Ctx) error {
	limit := 100
	if v := c.Query("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return apiError(fiber.StatusBadRequest, "invalid_limit", "limit must be 1..1000, got %q", v)
		}
		limit = n
	}
	before := c.Query("before")
	if before != "" && !validStreamID(before) {
		return apiError(fiber.StatusBadRequest, "invalid_before", "before must be an entry id like 1764950400000-0 (the \"id\" of the last entry of a page), got %q", before)
	}
	entries, err := s.Store.AuditLog(c.UserContext(), store.AuditFilter{Action: c.Query("action"), Challenge: c.Query("challenge"),
		Actor: c.Query("actor"), Target: c.Query("target"), Before: before, Limit: limit})
	if err != nil {
		return err
	}
	out := fiber.Map{"entries": entries}
	if len(entries) == limit {
		out["next"] = "/api/v1/audit?before=" + entries[len(entries)-1].ID
	}
	return c.JSON(out)
}

func validStreamID(id string) bool {
	ms, seq, ok := strings.Cut(id, "-")
	if _, err := strconv.ParseUint(ms, 10, 64); err != nil {
		return false
	}
	if !ok {
		return true
	}
	_, err := strconv.ParseUint(seq, 10, 64)
	return err == nil
}
