package api

import (
	"bytes"
	"debug/elf"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/hackarena/hackarena/challenges"
	"github.com/hackarena/hackarena/judge"
	"github.com/hackarena/hackarena/platform/auth"
	"github.com/hackarena/hackarena/platform/blob"
	"github.com/hackarena/hackarena/platform/store"
)

// multipartOverhead allows for the form's headers and boundaries around the
// file when comparing Content-Length with the upload limit.
const multipartOverhead = 64 << 10

func (s *Server) submit(c *fiber.Ctx) error {
	claims, _ := claimsOf(c)
	ch, err := s.challenge(c)
	if err != nil {
		return err
	}
	if ch.Status != challenges.StatusOpen {
		return apiError(fiber.StatusConflict, "challenge_unavailable", "challenge %q is unavailable (%s); submissions resume when the organizers fix it", ch.Slug, ch.StatusReason)
	}
	if !ch.Open(time.Now()) {
		return apiError(fiber.StatusConflict, "challenge_closed", "challenge %q is not accepting submissions now", ch.Slug)
	}
	if err := s.teamMaySubmit(c, claims.TeamID, ch); err != nil {
		return err
	}
	limit := s.MaxUpload
	if ch.Limits.MaxBinaryBytes > 0 && ch.Limits.MaxBinaryBytes < limit {
		limit = ch.Limits.MaxBinaryBytes
	}
	tooLarge := apiError(fiber.StatusRequestEntityTooLarge, "too_large", "the plugin is larger than the %d MiB limit: build it with `hackctl build` (stripped) or make the model smaller", limit>>20)
	if cl := c.Request().Header.ContentLength(); cl > 0 && int64(cl) > limit+multipartOverhead {
		return tooLarge
	}
	// A client that lost the answer sends the upload again with the same
	// key and gets the same submission (store.EnqueueOnce).
	idemKey := c.Get("Idempotency-Key")
	if len(idemKey) > 255 || strings.IndexFunc(idemKey, func(r rune) bool { return r < 0x21 || r > 0x7e }) >= 0 {
		return apiError(fiber.StatusBadRequest, "invalid_idempotency_key", "the Idempotency-Key header must be 1 to 255 printable ASCII characters without spaces, e.g. a UUID")
	}
	staged, err := s.receivePlugin(c, limit)
	if errors.Is(err, blob.ErrTooLarge) {
		return tooLarge
	}
	if blob.IsNoSpace(err) {
		return s.diskFull(err)
	}
	if err != nil {
		return err
	}
	defer staged.Discard()
	if err := checkExecutable(staged.TempPath()); err != nil {
		return err
	}
	team, err := s.Store.Team(c.UserContext(), claims.TeamID)
	if errors.Is(err, store.ErrNotFound) {
		return apiError(fiber.StatusUnauthorized, "unauthorized", "the team of this token no longer exists")
	}
	if err != nil {
		return err
	}
	team.ActingMember = claims.UserName
	if _, err := staged.Commit(); err != nil {
		if blob.IsNoSpace(err) {
			return s.diskFull(err)
		}
		return err
	}
	// The quota is taken with the enqueue, in one step: a crash between
	// the two can neither cost a submission nor queue one for free.
	sub, replayed, err := s.Store.EnqueueOnce(c.UserContext(), ch.Slug, team, staged.SHA256, staged.Size, ch.Limits.SubmissionsPerDay, idemKey)
	if errors.Is(err, store.ErrIdempotencyConflict) {
		return apiError(fiber.StatusUnprocessableEntity, "idempotency_key_reused", "this Idempotency-Key was used in the last day for another plugin: send a new key with a new upload")
	}
	if replayed {
		c.Set("Idempotent-Replayed", "true")
		body := s.submissionJSON(c, sub, false)
		return c.Status(fiber.StatusAccepted).JSON(fiber.Map{"submission": body})
	}
	var over *store.QuotaExceededError
	if errors.As(err, &over) {
		e := apiError(fiber.StatusTooManyRequests, "quota_exceeded", "your team used its %d submissions to %q for today (UTC); try again in %s", ch.Limits.SubmissionsPerDay, ch.Slug, over.Retry.Round(time.Minute))
		e.RetryAfter = int(over.Retry.Seconds()) + 1
		return e
	}
	if store.IsOutOfDisk(err) {
		return s.diskFull(err)
	}
	if err != nil {
		return err
	}
	s.Log.Info("submission queued", "submission_id", sub.ID, "team", team.Name, "challenge", ch.Slug, "bytes", staged.Size)
	body := s.submissionJSON(c, sub, false) // queued: no scores yet
	return c.Status(fiber.StatusAccepted).JSON(fiber.Map{"submission": body})
}

// diskFull answers an upload the platform could not store: 507, nothing
// kept, no quota taken (the quota goes with the enqueue, which did not
// happen), and the operator's log says why.
func (s *Server) diskFull(err error) error {
	s.Log.Error("an upload could not be stored: the disk is full", "err", err)
	return apiError(fiber.StatusInsufficientStorage, "insufficient_storage", "the platform's disk is full, so your plugin could not be stored; nothing was kept and your team's daily quota is untouched: send it again later (the organizers have been told)")
}

// teamMaySubmit refuses a team disqualified from ch, or larger than its
// team_size, before the upload is read.
func (s *Server) teamMaySubmit(c *fiber.Ctx, teamID string, ch *challenges.Challenge) error {
	d, err := s.Store.Disqualified(c.UserContext(), ch.Slug, teamID)
	if err != nil {
		return err
	}
	if d != nil {
		return apiError(fiber.StatusForbidden, "disqualified", "your team was disqualified from %q on %s: %s; ask the organizers if you think this is wrong", ch.Slug, d.At.UTC().Format("2006-01-02 15:04 UTC"), d.Reason)
	}
	n, err := s.Store.MemberCount(c.UserContext(), teamID)
	if err != nil {
		return err
	}
	if limit := ch.Spec.Members(); n > limit {
		return apiError(fiber.StatusConflict, "team_too_large", "your team has %d members and %q allows at most %d (team_size): a member must leave before the team submits here", n, ch.Slug, limit)
	}
	return nil
}

// receivePlugin streams the multipart field "plugin" into the blob store's
// staging area, never holding more than limit bytes.
func (s *Server) receivePlugin(c *fiber.Ctx, limit int64) (*blob.Staged, error) {
	mediaType, params, err := mime.ParseMediaType(c.Get(fiber.HeaderContentType))
	if err != nil || mediaType != fiber.MIMEMultipartForm || params["boundary"] == "" {
		return nil, apiError(fiber.StatusBadRequest, "invalid_request", "upload the plugin as multipart/form-data with the binary in the field \"plugin\" (curl -F plugin=@./model)")
	}
	var body io.Reader = c.Context().RequestBodyStream()
	if body == nil {
		body = bytes.NewReader(c.Body())
	}
	mr := multipart.NewReader(body, params["boundary"])
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return nil, apiError(fiber.StatusBadRequest, "missing_plugin", "the form has no field \"plugin\": send the binary as -F plugin=@./model")
		}
		if err != nil {
			return nil, apiError(fiber.StatusBadRequest, "invalid_request", "could not read the multipart body: %v", err)
		}
		if part.FormName() != "plugin" {
			_ = part.Close()
			continue
		}
		staged, err := s.Blobs.Stage(part, limit)
		_ = part.Close()
		if err != nil && !errors.Is(err, blob.ErrTooLarge) && !blob.IsNoSpace(err) {
			return nil, apiError(fiber.StatusBadRequest, "upload_interrupted", "the upload broke off (%v); send it again", err)
		}
		// Read the form's tail (closing boundary, chunk terminator) so the
		// connection can serve the next request; if more than a form's
		// overhead is left, the client is sending junk: close instead.
		if n, _ := io.Copy(io.Discard, io.LimitReader(body, multipartOverhead+1)); n > multipartOverhead || err != nil {
			c.Set(fiber.HeaderConnection, "close")
		}
		return staged, err
	}
}

// checkExecutable accepts only static linux/amd64 ELF executables: the
// sandbox holds nothing but the binary, so anything else cannot run there.
func checkExecutable(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return apiError(fiber.StatusBadRequest, "invalid_binary", "the upload is not an ELF executable: submit the compiled plugin (hackctl build ./your-plugin), not source code or an archive")
	}
	defer f.Close()
	if f.Class != elf.ELFCLASS64 || f.Machine != elf.EM_X86_64 {
		return apiError(fiber.StatusBadRequest, "invalid_binary", "the plugin is built for %s/%s; build it for linux/amd64 (GOOS=linux GOARCH=amd64, or hackctl build)", f.Class, f.Machine)
	}
	if f.OSABI != elf.ELFOSABI_NONE && f.OSABI != elf.ELFOSABI_LINUX {
		return apiError(fiber.StatusBadRequest, "invalid_binary", "the plugin is built for %s; build it for linux (GOOS=linux, or hackctl build)", f.OSABI)
	}
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return apiError(fiber.StatusBadRequest, "invalid_binary", "the upload is an ELF %s, not an executable: build the plugin's main package", f.Type)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return apiError(fiber.StatusBadRequest, "invalid_binary", "the plugin is dynamically linked, and the sandbox has no shared libraries: build it statically with CGO_ENABLED=0 (hackctl build does)")
		}
	}
	return nil
}

type submissionJSON struct {
	ID        string `json:"id"`
	Challenge string `json:"challenge"`
	Team      string `json:"team"`
	// Member is who in the team sent it (absent for submissions made
	// before teams had members).
	Member string `json:"member,omitempty"`
	// Excluded says why the organizers excluded it from ranking.
	Excluded      *store.Exclusion `json:"excluded,omitempty"`
	Status        string           `json:"status"`
	Reason        string           `json:"reason,omitempty"`
	Message       string           `json:"message,omitempty"`
	Metrics       *store.Metrics   `json:"metrics,omitempty"`
	QueuePosition *int             `json:"queue_position,omitempty"`
	QueuedAt      time.Time        `json:"queued_at"`
	StartedAt     *time.Time       `json:"started_at"`
	FinishedAt    *time.Time       `json:"finished_at"`
	SHA256        string           `json:"sha256"`
	Log           string           `json:"log,omitempty"`
	// Progress is how many of the hidden examples a running submission's
	// plugin has answered.
	Progress *progressJSON `json:"progress,omitempty"`
	// Final says whether it counts on the private board: "selected" by its
	// team, or "default" (its team selected none, and it is among its best
	// by public score).
	Final string `json:"final,omitempty"`
	// Resources are what its run used, once judged.
	Resources *store.Resources `json:"resources,omitempty"`
	// Interval is the primary metric's 95% bootstrap interval on each half
	// the caller may see.
	Interval map[string][2]float64 `json:"interval,omitempty"`
	// BinaryReleasedAt: the storage retention removed its plugin binary
	// (its scores and kept predictions stay; it cannot run again).
	BinaryReleasedAt *time.Time `json:"binary_released_at,omitempty"`
}

type progressJSON struct {
	Done  int `json:"done"`
	Total int `json:"total"`
}

// privateShownFor answers showPrivate for one caller over many
// submissions, with one reveal lookup per challenge, not per submission.
func (s *Server) privateShownFor(c *fiber.Ctx, claims auth.Claims) func(slug string) bool {
	shown := map[string]bool{}
	return func(slug string) bool {
		v, ok := shown[slug]
		if !ok {
			v = s.showPrivate(c, slug, claims)
			shown[slug] = v
		}
		return v
	}
}

// showPrivate reports whether the caller may see a challenge's private
// scores; a challenge no longer loaded, or an error, hides them.
func (s *Server) showPrivate(c *fiber.Ctx, slug string, claims auth.Claims) bool {
	ch, ok := s.Challenges.Get(slug)
	if !ok {
		return false
	}
	visible, err := s.privateVisible(c.UserContext(), ch, claims, true)
	return visible && err == nil
}

func (s *Server) submissionJSON(c *fiber.Ctx, sub store.Submission, showPrivate bool) submissionJSON {
	out := submissionJSON{
		ID: sub.ID, Challenge: sub.Challenge, Team: sub.TeamName, Member: sub.Member, Excluded: sub.Excluded, Status: sub.Status,
		Reason: sub.Reason, Message: sub.Message, QueuedAt: sub.QueuedAt,
		StartedAt: optionalTime(sub.StartedAt), FinishedAt: optionalTime(sub.FinishedAt),
		SHA256: sub.SHA256, Log: sub.Log, Resources: sub.Resources,
		BinaryReleasedAt: optionalTime(sub.BinaryReleasedAt),
	}
	if sub.Metrics != nil {
		m := *sub.Metrics
		if !showPrivate {
			m.Private, m.PrivateConfusion = nil, nil
		}
		out.Metrics = &m
	}
	out.Interval = intervalView(sub.Interval, showPrivate)
	if sub.Status == store.StatusRunning && sub.ProgressTotal > 0 {
		out.Progress = &progressJSON{Done: sub.ProgressDone, Total: sub.ProgressTotal}
	}
	if sub.Status == store.StatusQueued && sub.StreamID != "" {
		if pos, err := s.Store.QueuePosition(c.UserContext(), sub.Challenge, sub.StreamID); err == nil && pos > 0 {
			out.QueuePosition = &pos
		}
	}
	return out
}

func (s *Server) getSubmission(c *fiber.Ctx) error {
	claims, _ := claimsOf(c)
	notFound := apiError(fiber.StatusNotFound, "submission_not_found", "no submission %q of your team: list yours with GET /api/v1/teams/me/submissions", c.Params("id"))
	sub, err := s.Store.Submission(c.UserContext(), c.Params("id"))
	if errors.Is(err, store.ErrNotFound) {
		return notFound
	}
	if err != nil {
		return err
	}
	// Another team's submission is reported as absent, not forbidden, so ids
	// cannot be probed.
	if sub.TeamID != claims.TeamID && claims.Role != store.RoleOrganizer {
		return notFound
	}
	out := s.submissionJSON(c, sub, s.showPrivate(c, sub.Challenge, claims))
	out.Final = s.finalsOf(c)(sub)
	if claims.Role != store.RoleOrganizer {
		out.Log = judge.TeamLog(s.logPolicy(sub.Challenge), out.Log)
	}
	return c.JSON(fiber.Map{"submission": out})
}

// logPolicy is a challenge's log policy; one no longer loaded keeps its
// logs private.
func (s *Server) logPolicy(slug string) string {
	if ch, ok := s.Challenges.Get(slug); ok {
		return ch.Limits.Logs
	}
	return challenges.LogsPrivate
}

func (s *Server) mySubmissions(c *fiber.Ctx) error {
	claims, _ := claimsOf(c)
	subs, err := s.Store.TeamSubmissions(c.UserContext(), claims.TeamID, 200)
	if err != nil {
		return err
	}
	out := make([]submissionJSON, 0, len(subs))
	showPrivate := s.privateShownFor(c, claims)
	final := s.finalsOf(c)
	for _, sub := range subs {
		j := s.submissionJSON(c, sub, showPrivate(sub.Challenge))
		j.Final = final(sub)
		j.Log = "" // logs only on the single-submission call
		out = append(out, j)
	}
	return c.JSON(fiber.Map{"submissions": out})
}

// intervalView is a run's bootstrap intervals by half, the private one
// only when its scores may be seen.
func intervalView(b *store.Bootstrap, showPrivate bool) map[string][2]float64 {
	if b == nil || b.Public == nil {
		return nil
	}
	out := map[string][2]float64{store.BoardPublic: {b.Public.Lo, b.Public.Hi}}
	if showPrivate && b.Private != nil {
		out[store.BoardPrivate] = [2]float64{b.Private.Lo, b.Private.Hi}
	}
	return out
}
