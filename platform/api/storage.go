package api

import (
	"github.com/gofiber/fiber/v2"
)

// storageUsage reports what the platform stores (binaries, predictions,
// logs), what a collection would free now, the disk, and the last
// collection.
func (s *Server) storageUsage(c *fiber.Ctx) error {
	if s.Storage == nil {
		return apiError(fiber.StatusServiceUnavailable, "storage_unavailable", "this server does not manage the data directory's storage (it was started without it)")
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
		return apiError(fiber.StatusServiceUnavailable, "storage_unavailable", "this server does not manage the data directory's storage (it was started without it)")
	}
	done, err := s.Storage.Collect(c.UserContext())
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"collection": done})
}
