// Package api is the platform's HTTP API v1 (Fiber): users, teams,
// tokens, challenges, submissions, leaderboards, moderation and health
// checks.
package api

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/gofiber/fiber/v2/middleware/filesystem"
	"github.com/gofiber/fiber/v2/middleware/recover"
	"github.com/hackarena/hackarena/challenges"
	"github.com/hackarena/hackarena/frontend"
	"github.com/hackarena/hackarena/judge"
	"github.com/hackarena/hackarena/platform/auth"
	"github.com/hackarena/hackarena/platform/blob"
	"github.com/hackarena/hackarena/platform/events"
	"github.com/hackarena/hackarena/platform/receipts"
	"github.com/hackarena/hackarena/platform/retention"
	"github.com/hackarena/hackarena/platform/sdkmodule"
	"github.com/hackarena/hackarena/platform/store"
	"github.com/hackarena/hackarena/sdk/receipt"
)

// Server holds what the handlers need.
type Server struct {
	Store      *store.Store
	Challenges *challenges.Registry
	Blobs      *blob.Store
	Tokens     *auth.Tokens
	// MaxUpload caps a plugin upload in bytes, enforced while streaming.
	MaxUpload int64
	Log       *slog.Logger
	// RequireJudge makes /readyz fail while no judge worker is alive.
	RequireJudge bool
	// Env is where an organizer's new challenge finds its data.
	Env challenges.Env
	// Predictions are the judges' kept predictions, for rescoring; nil
	// disables rescoring.
	Predictions *judge.PredictionStore
	// SDK is the participant SDK served as a Go module under /goproxy/
	// (what `hackctl init` points go at); nil answers 404 with why.
	SDK *sdkmodule.Module
	// Metrics serves Prometheus metrics at /metrics when not nil.
	Metrics http.Handler
	// Observe counts requests and open event streams; nil counts none.
	Observe *Metrics
	// Receipts signs judged submissions' receipts; nil issues none.
	Receipts *receipts.Issuer
	// Events feeds /api/v1/events; nil answers 503 there.
	Events *events.Hub
	// Heartbeat is how often a quiet event stream gets a comment;
	// 0 means DefaultHeartbeat.
	Heartbeat time.Duration
	// Throttles bound failed logins and registrations; zero fields take
	// the defaults.
	Throttles Throttles
	// TrustedProxies are the addresses of load balancers whose
	// X-Forwarded-For names the client; empty trusts none.
	TrustedProxies []string

	// Storage collects released binaries and measures the data dir for
	// GET /api/v1/storage; nil answers 503 there.
	Storage *retention.Collector
	// DataDir's filesystem is checked by /readyz: under MinFreeDisk free
	// bytes it reports low disk space (0 checks nothing).
	DataDir     string
	MinFreeDisk int64

	standings standingCache
	loginGate nameGate
}

// pagePolicy keeps the page to its own files: nothing is fetched from
// elsewhere, and no inline script runs (a description that slipped past
// the sanitizer still could not run code).
const pagePolicy = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"

// jsonBodyLimit bounds the bodies of JSON calls; uploads are streamed past
// it and limited by MaxUpload instead.
const jsonBodyLimit = 1 << 20

// requestTimeout bounds a normal call; uploads get uploadTimeout.
const (
	requestTimeout = 30 * time.Second
	uploadTimeout  = 10 * time.Minute
)

// App builds the Fiber application.
func (s *Server) App() *fiber.App {
	app := fiber.New(fiber.Config{
		AppName:               "hackarena",
		BodyLimit:             jsonBodyLimit,
		StreamRequestBody:     true,
		DisableStartupMessage: true,
		ErrorHandler:          errorHandler(s.Log),
		ReadTimeout:           uploadTimeout,
		WriteTimeout:          time.Minute,
		IdleTimeout:           2 * time.Minute,
		// Throttles count per client address: behind a balancer that is
		// the one it forwards, and only from balancers named as trusted.
		EnableTrustedProxyCheck: len(s.TrustedProxies) > 0,
		TrustedProxies:          s.TrustedProxies,
		ProxyHeader:             proxyHeader(s.TrustedProxies),
		EnableIPValidation:      true,
	})
	if s.Observe != nil {
		// Outermost, so it sees every answer, a recovered panic's too.
		app.Use(s.Observe.observe)
	}
	// A panic in a handler (a bug, or a decoder tripping on hostile bytes)
	// answers 500 instead of taking the server down.
	app.Use(recover.New())
	app.Use(s.deadline)
	app.Get("/", func(c *fiber.Ctx) error {
		c.Set(fiber.HeaderContentSecurityPolicy, pagePolicy)
		c.Set(fiber.HeaderCacheControl, "no-cache")
		c.Type("html", "utf-8")
		return c.Send(frontend.IndexHTML)
	})
	app.Use("/static", func(c *fiber.Ctx) error {
		c.Set(fiber.HeaderCacheControl, "no-cache")
		c.Set(fiber.HeaderXContentTypeOptions, "nosniff")
		return c.Next()
	}, filesystem.New(filesystem.Config{Root: http.FS(frontend.Files)}))
	if s.Metrics != nil {
		app.Get("/metrics", adaptor.HTTPHandler(s.Metrics))
	}
	app.Get("/goproxy/*", s.goproxy)
	app.Get("/healthz", s.healthz)
	app.Get(receipt.WellKnownPath, s.receiptKey)
	app.Get("/readyz", s.readyz)

	v1 := app.Group("/api/v1")
	v1.Post("/teams", s.register)
	v1.Post("/users", s.registerUser)
	v1.Post("/auth/token", s.token)
	v1.Post("/teams/join", s.requireAuth, s.joinTeam)
	v1.Get("/challenges", s.listChallenges)
	v1.Get("/challenges/:slug", s.getChallenge)
	v1.Get("/challenges/:slug/data/:file", s.getDataFile)
	v1.Get("/challenges/:slug/leaderboard", s.optionalAuth, s.leaderboard)
	v1.Post("/challenges/:slug/submissions", s.requireAuth, s.requireTeam, s.submit)
	v1.Get("/submissions/:id", s.requireAuth, s.getSubmission)
	v1.Get("/submissions/:id/receipt", s.getReceipt)
	v1.Post("/submissions/:id/final", s.requireAuth, s.requireTeam, s.selectFinal)
	v1.Delete("/submissions/:id/final", s.requireAuth, s.requireTeam, s.unselectFinal)
	v1.Get("/challenges/:slug/finals", s.requireAuth, s.requireTeam, s.teamFinals)
	v1.Get("/challenges/:slug/disqualifications", s.disqualifications)
	v1.Get("/teams/me", s.requireAuth, s.whoami)
	v1.Get("/teams/me/submissions", s.requireAuth, s.requireTeam, s.mySubmissions)
	v1.Post("/teams/me/password", s.requireAuth, s.changePassword)
	v1.Post("/users/me/password", s.requireAuth, s.changePassword)
	v1.Post("/teams/me/leave", s.requireAuth, s.requireTeam, s.leaveTeam)
	v1.Post("/teams/me/captain", s.requireAuth, s.requireTeam, s.handOver)
	v1.Delete("/teams/me/members/:user", s.requireAuth, s.requireTeam, s.removeMember)
	v1.Post("/teams/:name/invites", s.requireAuth, s.requireTeam, s.createInvite)
	v1.Get("/teams/:name", s.optionalAuth, s.teamMembers)
	v1.Get("/teams/:name/members", s.optionalAuth, s.teamMembers)
	v1.Get("/teams/:name/submissions", s.teamSubmissions)
	v1.Get("/challenges/:slug/history", s.history)
	v1.Get("/events", s.events)

	v1.Put("/challenges/:slug", s.requireAuth, s.requireOrganizer, s.putChallenge)
	v1.Post("/challenges/:slug/reveal", s.requireAuth, s.requireOrganizer, s.reveal)
	v1.Post("/challenges/:slug/rejudge", s.requireAuth, s.requireOrganizer, s.rejudge)
	v1.Get("/queue", s.requireAuth, s.requireOrganizer, s.queue)
	v1.Post("/challenges/:slug/disqualifications", s.requireAuth, s.requireOrganizer, s.disqualify)
	v1.Delete("/challenges/:slug/disqualifications/:team", s.requireAuth, s.requireOrganizer, s.reinstate)
	v1.Post("/submissions/:id/exclusion", s.requireAuth, s.requireOrganizer, s.setExclusion)
	v1.Delete("/submissions/:id/exclusion", s.requireAuth, s.requireOrganizer, s.setExclusion)
	v1.Post("/users/:user/lock", s.requireAuth, s.requireOrganizer, s.setLock)
	v1.Delete("/users/:user/lock", s.requireAuth, s.requireOrganizer, s.setLock)
	v1.Get("/audit", s.requireAuth, s.requireOrganizer, s.auditLog)
	v1.Get("/storage", s.requireAuth, s.requireOrganizer, s.storageUsage)
	v1.Post("/storage/collect", s.requireAuth, s.requireOrganizer, s.storageCollect)
	v1.Post("/submissions/:id/rejudge", s.requireAuth, s.requireOrganizer, s.rejudgeSubmission)
	return app
}

func proxyHeader(trusted []string) string {
	if len(trusted) == 0 {
		return ""
	}
	return fiber.HeaderXForwardedFor
}

// deadline gives every request a context with a deadline.
func (s *Server) deadline(c *fiber.Ctx) error {
	d := requestTimeout
	if c.Method() == fiber.MethodPost && strings.HasSuffix(c.Path(), "/submissions") {
		d = uploadTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	c.SetUserContext(ctx)
	return c.Next()
}

func (s *Server) healthz(c *fiber.Ctx) error {
	return c.JSON(fiber.Map{"status": "ok"})
}

func (s *Server) readyz(c *fiber.Ctx) error {
	checks := fiber.Map{}
	ready := true
	if err := s.Store.Redis().Ping(c.UserContext()).Err(); err != nil {
		checks["redis"] = "unreachable: " + err.Error()
		ready = false
	} else {
		checks["redis"] = "ok"
	}
	if s.RequireJudge {
		n, err := s.Store.JudgesAlive(c.UserContext())
		switch {
		case err != nil:
			checks["judge"] = "unknown: " + err.Error()
			ready = false
		case n == 0:
			checks["judge"] = "no judge worker alive: start `hackarena judge` or `hackarena serve` with workers"
			ready = false
		default:
			checks["judge"] = "ok"
		}
	}
	if s.DataDir != "" && s.MinFreeDisk > 0 {
		d, err := retention.DiskOf(s.DataDir)
		switch {
		case err != nil:
			checks["disk"] = "unknown: " + err.Error()
			ready = false
		case d.FreeBytes < s.MinFreeDisk:
			checks["disk"] = fmt.Sprintf("low: %d MiB free of %d MiB on %s, under the %d MiB kept free (HACKARENA_MIN_FREE_DISK); uploads are refused with 507 once it is full: free space (POST /api/v1/storage/collect) or grow the volume",
				d.FreeBytes>>20, d.TotalBytes>>20, s.DataDir, s.MinFreeDisk>>20)
			ready = false
		default:
			checks["disk"] = "ok"
		}
	}
	status := fiber.StatusOK
	if !ready {
		status = fiber.StatusServiceUnavailable
	}
	return c.Status(status).JSON(fiber.Map{"ready": ready, "checks": checks})
}

// goproxy serves the SDK module over the Go module proxy protocol. The go
// command sends no token, and the SDK is public, so it needs none.
func (s *Server) goproxy(c *fiber.Ctx) error {
	if s.SDK == nil {
		return apiError(fiber.StatusNotFound, "sdk_unavailable", "this server was started without the SDK source, so it serves no Go module: start it from a checkout or set HACKARENA_SDK_SOURCE")
	}
	body, contentType, ok := s.SDK.Answer(c.Params("*"))
	if !ok {
		return apiError(fiber.StatusNotFound, "module_not_found", "this proxy serves only %s@%s", sdkmodule.Path, s.SDK.Version)
	}
	c.Set(fiber.HeaderContentType, contentType)
	return c.Send(body)
}
