package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/hackarena/hackarena/challenges"
	"github.com/hackarena/hackarena/judge"
	"github.com/hackarena/hackarena/platform/auth"
	"github.com/hackarena/hackarena/platform/store"
)

// organizerName is the account HACKARENA_ORGANIZER_PASSWORD bootstraps.
const organizerName = "organizer"

// EnsureOrganizer creates the organizer account with password if it does not
// exist yet. An existing account keeps its password.
func EnsureOrganizer(ctx context.Context, st *store.Store, password string) error {
	if len(password) < minPassword {
		return fmt.Errorf("HACKARENA_ORGANIZER_PASSWORD must be at least %d characters", minPassword)
	}
	// An organizer account of the version before members is adopted as a
	// user by the lookup.
	if _, err := st.UserByName(ctx, organizerName); err == nil {
		return nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	hash, err := auth.HashPassword(ctx, password)
	if err != nil {
		return err
	}
	_, _, err = st.RegisterTeamOfOne(ctx, organizerName, hash, store.RoleOrganizer)
	if errors.Is(err, store.ErrNameTaken) {
		return nil
	}
	return err
}

// requireOrganizer admits organizer tokens only; it runs after requireAuth.
func (s *Server) requireOrganizer(c *fiber.Ctx) error {
	claims, _ := claimsOf(c)
	if claims.Role != store.RoleOrganizer {
		return apiError(fiber.StatusForbidden, "organizer_only", "only the organizers may call %s %s", c.Method(), c.Path())
	}
	return c.Next()
}

// putChallenge creates or replaces a challenge from a spec. The data must
// be in place: a spec whose files are missing or wrong is refused, so a
// typo never takes a running challenge down. A change of ranking metric
// rebuilds the boards at once.
func (s *Server) putChallenge(c *fiber.Ctx) error {
	// The slug outlives the request (it keys the registry): a copy, not
	// fasthttp's buffer, which the next request reuses.
	slug := strings.Clone(c.Params("slug"))
	if !challenges.ValidSlug(slug) {
		return apiError(fiber.StatusBadRequest, "invalid_slug", "challenge slug %q must be 1-40 lower-case letters, digits and dashes", slug)
	}
	where := "PUT /api/v1/challenges/" + slug
	spec, err := challenges.DecodeSpec(where, bytes.NewReader(c.Body()))
	if err != nil {
		return apiError(fiber.StatusBadRequest, "invalid_spec", "%v", err)
	}
	if spec.DescriptionFile != "" {
		return apiError(fiber.StatusBadRequest, "invalid_spec", "%s: description_file: send the markdown in \"description\" instead; the API has no folder to read files from", where)
	}
	if err := spec.Validate(where); err != nil {
		return apiError(fiber.StatusBadRequest, "invalid_spec", "%v", err)
	}
	ch := challenges.Build(c.UserContext(), slug, spec, s.Env)
	if ch.Status != challenges.StatusOpen {
		return apiError(fiber.StatusUnprocessableEntity, "dataset_unavailable", "%s: the spec is valid but its data is not usable, so nothing was changed: %s", where, ch.StatusReason)
	}
	_, existed := s.Challenges.Get(slug)
	rev, err := s.Store.PutChallengeSpec(c.UserContext(), slug, spec)
	if err != nil {
		return err
	}
	ch.Revision = rev
	if !s.Challenges.PutNewer(ch) {
		// A later revision (another organizer's PUT, through another
		// server) reached this server first; it stands.
		if cur, ok := s.Challenges.Get(slug); ok {
			ch = cur
		}
	}
	s.Log.Info("challenge updated by the organizers", "challenge", slug, "revision", rev)
	s.auditAfter(c, store.AuditEntry{Action: store.ActionSpecChange, Challenge: slug}, fiber.Map{"revision": rev, "created": !existed})
	detail, err := s.detail(ch)
	if err != nil {
		return err
	}
	out := fiber.Map{"challenge": detail, "revision": rev}
	// Whether the boards need a rebuild is decided against the rules Redis
	// records for them, not this server's old view: a repeated PUT after a
	// crash between the spec write and the rebuild still rebuilds.
	rebuilt, rep, err := s.Store.ReconcileBoards(c.UserContext(), slug, store.RulesOf(ch))
	if err != nil {
		return err
	}
	if rebuilt {
		out["rebuild"] = rep
	}
	status := fiber.StatusOK
	if !existed {
		status = fiber.StatusCreated
	}
	return c.Status(status).JSON(out)
}

func (s *Server) reveal(c *fiber.Ctx) error {
	ch, err := s.challenge(c)
	if err != nil {
		return err
	}
	at, err := s.Store.Reveal(c.UserContext(), ch.Slug, time.Now())
	if err != nil {
		return err
	}
	s.auditAfter(c, store.AuditEntry{Action: store.ActionReveal, Challenge: ch.Slug}, fiber.Map{"private_revealed_at": at})
	return c.JSON(fiber.Map{"challenge": ch.Slug, "private_revealed_at": at})
}

// rejudge rescores every scored submission from its kept predictions with
// the challenge's current metrics and hidden set ("rescore", the default),
// or only re-ranks from the stored scores ("rerank"); both rebuild the
// boards and report what changed.
func (s *Server) rejudge(c *fiber.Ctx) error {
	// Rescore under the challenge's latest revision, which another server
	// may have written.
	if err := s.Challenges.Sync(c.UserContext(), s.Store, s.Env); err != nil {
		return err
	}
	ch, err := s.challenge(c)
	if err != nil {
		return err
	}
	var req struct {
		Mode string `json:"mode"`
	}
	if len(c.Body()) > 0 {
		if err := decodeJSON(c, &req); err != nil {
			return err
		}
	}
	out := fiber.Map{"challenge": ch.Slug}
	switch req.Mode {
	case "", "rescore":
		if s.Predictions == nil {
			return apiError(fiber.StatusConflict, "rescore_unavailable", "this server keeps no predictions; use {\"mode\":\"rerank\"}")
		}
		ctx, cancel := context.WithTimeout(context.Background(), rejudgeTimeout)
		defer cancel()
		rep, err := judge.Rescore(ctx, s.Store, s.Predictions, ch)
		if errors.Is(err, store.ErrRevisionChanged) {
			return apiError(fiber.StatusConflict, "challenge_changed", "%v", err)
		}
		if err != nil {
			return err
		}
		// A rescored submission's receipt is replaced by one of its new
		// result, naming the old.
		if s.Receipts != nil {
			for _, id := range rep.RescoredIDs {
				sub, err := s.Store.Submission(ctx, id)
				if err == nil {
					err = s.Receipts.Reissue(ctx, sub)
				}
				if err != nil {
					return err
				}
			}
		}
		out["mode"], out["rescore"] = "rescore", rep
	case "rerank":
		out["mode"] = "rerank"
	default:
		return apiError(fiber.StatusBadRequest, "invalid_mode", "mode %q is not \"rescore\" or \"rerank\"", req.Mode)
	}
	rep, err := s.Store.RebuildBoards(c.UserContext(), ch.Slug, store.RulesOf(ch))
	if err != nil {
		return err
	}
	out["rebuild"] = rep
	s.auditAfter(c, store.AuditEntry{Action: store.ActionRejudge, Challenge: ch.Slug}, out)
	return c.JSON(out)
}

// rejudgeTimeout bounds a rescore, which reads every kept prediction.
const rejudgeTimeout = 5 * time.Minute

func (s *Server) queue(c *fiber.Ctx) error {
	views := []store.QueueView{}
	for _, slug := range s.Challenges.Slugs() {
		v, err := s.Store.Queue(c.UserContext(), slug)
		if err != nil {
			return err
		}
		views = append(views, v)
	}
	alive, err := s.Store.JudgesAlive(c.UserContext())
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"queues": views, "judges_alive": alive})
}
