package api

import (
	"errors"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/hackarena/hackarena/platform/auth"
	"github.com/hackarena/hackarena/platform/receipts"
	"github.com/hackarena/hackarena/platform/store"
)

// getReceipt answers a judged submission's signed receipt, to anyone: it
// holds public fields only (the private metrics are a commitment, opened
// by a disclosure once the private board is revealed).
func (s *Server) getReceipt(c *fiber.Ctx) error {
	if s.Receipts == nil {
		return apiError(fiber.StatusServiceUnavailable, "receipts_unavailable", "this server issues no receipts")
	}
	id := strings.Clone(c.Params("id"))
	sub, err := s.Store.Submission(c.UserContext(), id)
	if errors.Is(err, store.ErrNotFound) {
		return apiError(fiber.StatusNotFound, "submission_not_found", "no submission %q", id)
	}
	if err != nil {
		return err
	}
	disclose := false
	if ch, ok := s.Challenges.Get(sub.Challenge); ok {
		// As anyone sees it: the organizers' view discloses nothing more.
		if disclose, err = s.privateVisible(c.UserContext(), ch, auth.Claims{}, false); err != nil {
			return err
		}
	}
	env, err := s.Receipts.Current(c.UserContext(), sub, disclose)
	if errors.Is(err, receipts.ErrNotFinal) {
		return apiError(fiber.StatusNotFound, "receipt_not_ready", "submission %s is %s: its receipt is issued once it is judged", sub.ID, sub.Status)
	}
	if err != nil {
		return err
	}
	return c.JSON(env)
}

// receiptKey is the public key receipts are checked with.
func (s *Server) receiptKey(c *fiber.Ctx) error {
	if s.Receipts == nil {
		return apiError(fiber.StatusServiceUnavailable, "receipts_unavailable", "this server issues no receipts")
	}
	c.Set(fiber.HeaderCacheControl, "public, max-age=3600")
	return c.JSON(s.Receipts.PublicKey())
}
