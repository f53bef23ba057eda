package api

import (
	"errors"
	"os"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/hackarena/hackarena/challenges"
	"github.com/hackarena/hackarena/platform/store"
)

// noStorage answers the storage endpoints of a server started without
// a collector.
func noStorage() error {
	return apiError(fiber.StatusServiceUnavailable, "storage_unavailable", "this server does not manage the data directory's storage (it was started without it)")
}

// storageUsage reports what the platform stores (binaries, predictions,
// logs), what a collection would free now, the disk, and the last
// collection.
func (s *Server) storageUsage(c *fiber.Ctx) error {
	if s.Storage == nil {
		return noStorage()
	}
	u, err := s.Storage.Usage(c.UserContext())
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"storage": u})
}

// storageCollect runs a collection now and reports what it removed.
func (s *Server) storageCollect(c *fiber.Ctx) error {
	if s.Storage == nil {
		return noStorage()
	}
	done, err := s.Storage.Collect(c.UserContext())
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"collection": done})
}

// rejudgeSubmission runs a judged submission's plugin again: a new
// submission of the same binary for the same team, queued without taking
// a daily submission, so the first result and its history stay as they
// were and the new one is ranked like any other. A binary the storage
// retention released cannot run again, and the answer says so and what
// still works.
func (s *Server) rejudgeSubmission(c *fiber.Ctx) error {
	ctx := c.UserContext()
	sub, err := s.Store.Submission(ctx, c.Params("id"))
	if errors.Is(err, store.ErrNotFound) {
		return apiError(fiber.StatusNotFound, "submission_not_found", "no submission %q", c.Params("id"))
	}
	if err != nil {
		return err
	}
	if !sub.Final() {
		return apiError(fiber.StatusConflict, "not_judged_yet", "submission %s is %s: it will be judged anyway; rejudge it once it has a result", sub.ID, sub.Status)
	}
	if !sub.BinaryReleasedAt.IsZero() {
		return apiError(fiber.StatusConflict, "binary_released", "the plugin binary of submission %s was released by the storage retention on %s (it was not queued, a final, a board entry or among its team's latest), so it cannot run again; its scores stand, a rescore from its kept predictions still works (POST /api/v1/challenges/%s/rejudge), and the team can submit the plugin again",
			sub.ID, sub.BinaryReleasedAt.UTC().Format("2006-01-02 15:04 UTC"), sub.Challenge)
	}
	ch, ok := s.Challenges.Get(sub.Challenge)
	if !ok || ch.Status != challenges.StatusOpen {
		return apiError(fiber.StatusConflict, "challenge_unavailable", "challenge %q of submission %s is not loaded and open on this server, so no judge can run it", sub.Challenge, sub.ID)
	}
	// Fresh for the retention's grace: a collection that read the records
	// before the new submission was queued leaves the file alone.
	now := time.Now()
	if err := os.Chtimes(s.Blobs.Path(sub.SHA256), now, now); err != nil {
		return apiError(fiber.StatusConflict, "binary_missing", "the plugin binary of submission %s (sha256 %s) is not in this server's blob store, so it cannot run again: %v", sub.ID, sub.SHA256, err)
	}
	team, err := s.Store.Team(ctx, sub.TeamID)
	if errors.Is(err, store.ErrNotFound) {
		return apiError(fiber.StatusConflict, "team_gone", "the team of submission %s no longer exists", sub.ID)
	}
	if err != nil {
		return err
	}
	again, err := s.Store.Enqueue(ctx, sub.Challenge, team, sub.SHA256, sub.Size)
	if err != nil {
		return err
	}
	s.auditAfter(c, store.AuditEntry{Action: store.ActionRejudge, Challenge: sub.Challenge, Target: sub.ID}, fiber.Map{"runs_again_as": again.ID})
	return c.Status(fiber.StatusAccepted).JSON(fiber.Map{"rejudge_of": sub.ID, "submission": s.submissionJSON(c, again, false)})
}
