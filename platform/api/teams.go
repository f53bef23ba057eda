package api

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/hackarena/hackarena/platform/auth"
	"github.com/hackarena/hackarena/platform/store"
)

var teamNamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9 _.-]{1,39}$`)

const (
	minPassword = 8
	maxPassword = 72 // bcrypt ignores bytes past 72
)

type credentials struct {
	Name     string `json:"name"`
	Password string `json:"password"`
}

type teamJSON struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
}

func decodeJSON(c *fiber.Ctx, v any) error {
	if !strings.HasPrefix(c.Get(fiber.HeaderContentType), fiber.MIMEApplicationJSON) {
		return apiError(fiber.StatusBadRequest, "invalid_request", "send a JSON body with Content-Type: application/json")
	}
	if err := c.BodyParser(v); err != nil {
		return apiError(fiber.StatusBadRequest, "invalid_request", "the body is not valid JSON: %v", err)
	}
	return nil
}

func (s *Server) register(c *fiber.Ctx) error {
	var req credentials
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	req.Name = strings.TrimSpace(req.Name)
	if !teamNamePattern.MatchString(req.Name) {
		return apiError(fiber.StatusBadRequest, "invalid_name", "team name must be 2-40 characters of letters, digits, space, '_', '.' or '-', starting with a letter or digit")
	}
	if strings.EqualFold(req.Name, organizerName) {
		return apiError(fiber.StatusConflict, "name_taken", "the name %q is reserved; choose another", req.Name)
	}
	if len(req.Password) < minPassword || len(req.Password) > maxPassword {
		return apiError(fiber.StatusBadRequest, "invalid_password", "password must be %d to %d bytes long", minPassword, maxPassword)
	}
	th := s.throttles().RegisterPerAddress
	if wait, err := s.Store.Locked(c.UserContext(), th, c.IP()); err != nil {
		return err
	} else if wait > 0 {
		return throttled(wait, "too many teams were registered from your address (%d per %s)", th.Limit, th.Window)
	}
	hash, err := auth.HashPassword(c.UserContext(), req.Password)
	if err != nil {
		return hashError(err)
	}
	team, err := s.Store.CreateTeam(c.UserContext(), req.Name, hash, store.RoleParticipant)
	if errors.Is(err, store.ErrNameTaken) {
		return apiError(fiber.StatusConflict, "name_taken", "a team named %q exists; choose another name, or log in with POST /api/v1/auth/token", req.Name)
	}
	if err != nil {
		return err
	}
	if _, err := s.Store.Hit(c.UserContext(), th, c.IP()); err != nil {
		s.Log.Warn("count a registration", "err", err)
	}
	token, _, err := s.Tokens.Issue(team.ID, team.Name, team.Role, team.TokenGeneration)
	if err != nil {
		return err
	}
	s.Log.Info("team registered", "team", team.Name, "team_id", team.ID)
	return c.Status(fiber.StatusCreated).JSON(fiber.Map{
		"team":  teamJSON{ID: team.ID, Name: team.Name, CreatedAt: team.CreatedAt},
		"token": token,
	})
}

// throttled is a 429 that says when to come back.
func throttled(wait time.Duration, format string, args ...any) *Error {
	secs := int(math.Ceil(wait.Seconds()))
	e := apiError(fiber.StatusTooManyRequests, "too_many_attempts", "%s: try again in %d s", fmt.Sprintf(format, args...), secs)
	e.RetryAfter = secs
	return e
}

// hashError answers a password check that found no free hashing slot in
// time: the server is busy, not the caller wrong.
func hashError(err error) error {
	if errors.Is(err, auth.ErrBusy) {
		e := apiError(fiber.StatusServiceUnavailable, "busy", "the server is checking too many passwords at once; try again in a few seconds")
		e.RetryAfter = 2
		return e
	}
	return err
}

// checkLogin checks a team's password behind the login throttles: failed
// logins are counted per team name and per client address, in Redis so
// every API process shares them, and a locked name or address is answered
// 429 without spending a hash. Only checks that ran count, so a flood at
// one locked name does not lock its address.
func (s *Server) checkLogin(c *fiber.Ctx, name, password string) (store.Team, error) {
	ctx := c.UserContext()
	th := s.throttles()
	// A failed check counts against both; either one locked refuses.
	counted := []struct {
		th   store.Throttle
		key  string
		what string
	}{{th.LoginPerTeam, name, "too many failed logins for this team"}, {th.LoginPerAddress, c.IP(), "too many failed logins from your address"}}
	locked := func() error {
		for _, l := range counted {
			wait, err := s.Store.Locked(ctx, l.th, l.key)
			if err != nil {
				return err
			}
			if wait > 0 {
				return throttled(wait, "%s (%d per %s)", l.what, l.th.Limit, l.th.Window)
			}
		}
		return nil
	}
	if err := locked(); err != nil {
		return store.Team{}, err
	}
	leave, err := s.loginGate.enter(ctx, strings.ToLower(name))
	if err != nil {
		return store.Team{}, hashError(auth.ErrBusy)
	}
	defer leave()
	team, err := s.Store.TeamByName(ctx, name)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return store.Team{}, err
	}
	ok := false
	if err == nil {
		var checkErr error
		ok, checkErr = auth.CheckPassword(ctx, team.PasswordHash, password, locked)
		if checkErr != nil {
			return store.Team{}, hashError(checkErr)
		}
	}
	if ok {
		if err := s.Store.ResetThrottle(ctx, th.LoginPerTeam, name); err != nil {
			s.Log.Warn("reset login throttle", "err", err)
		}
		return team, nil
	}
	for _, l := range counted {
		if _, err := s.Store.Hit(ctx, l.th, l.key); err != nil {
			return store.Team{}, err
		}
	}
	// One message for an unknown name and a wrong password, so the API does
	// not reveal which team names exist.
	return store.Team{}, apiError(fiber.StatusUnauthorized, "invalid_credentials", "unknown team name or wrong password")
}

func (s *Server) token(c *fiber.Ctx) error {
	var req credentials
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	team, err := s.checkLogin(c, strings.TrimSpace(req.Name), req.Password)
	if err != nil {
		return err
	}
	token, exp, err := s.Tokens.Issue(team.ID, team.Name, team.Role, team.TokenGeneration)
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"token": token, "expires_at": exp})
}

type passwordChange struct {
	CurrentPassword string `json:"current_password"`
	NewPassword     string `json:"new_password"`
}

// changePassword sets the caller's team password and revokes every token
// issued before: the answer carries a new one.
func (s *Server) changePassword(c *fiber.Ctx) error {
	claims, _ := claimsOf(c)
	var req passwordChange
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if len(req.NewPassword) < minPassword || len(req.NewPassword) > maxPassword {
		return apiError(fiber.StatusBadRequest, "invalid_password", "new_password must be %d to %d bytes long", minPassword, maxPassword)
	}
	team, err := s.checkLogin(c, claims.TeamName, req.CurrentPassword)
	var apiErr *Error
	if errors.As(err, &apiErr) && apiErr.Code == "invalid_credentials" {
		return apiError(fiber.StatusUnauthorized, "wrong_password", "current_password is not your team's password: send the one you log in with")
	}
	if err != nil {
		return err
	}
	hash, err := auth.HashPassword(c.UserContext(), req.NewPassword)
	if err != nil {
		return hashError(err)
	}
	gen, err := s.Store.ChangePassword(c.UserContext(), team.ID, team.PasswordHash, hash)
	if errors.Is(err, store.ErrPasswordChanged) {
		return apiError(fiber.StatusConflict, "password_changed", "the password was changed by another request meanwhile: log in with the new one and try again")
	}
	if err != nil {
		return err
	}
	s.generations.set(team.ID, gen)
	token, exp, err := s.Tokens.Issue(team.ID, team.Name, team.Role, gen)
	if err != nil {
		return err
	}
	s.Log.Info("team password changed; older tokens revoked", "team", team.Name, "token_generation", gen)
	return c.JSON(fiber.Map{"token": token, "expires_at": exp})
}

const claimsKey = "claims"

func (s *Server) parseBearer(c *fiber.Ctx) (auth.Claims, bool, error) {
	h := c.Get(fiber.HeaderAuthorization)
	if h == "" {
		return auth.Claims{}, false, nil
	}
	token, ok := strings.CutPrefix(h, "Bearer ")
	if !ok {
		return auth.Claims{}, false, apiError(fiber.StatusUnauthorized, "unauthorized", "the Authorization header must be \"Bearer <token>\"")
	}
	claims, err := s.Tokens.Verify(strings.TrimSpace(token))
	if err != nil {
		return auth.Claims{}, false, apiError(fiber.StatusUnauthorized, "unauthorized", "the token is not valid (%v): log in again with POST /api/v1/auth/token", errors.Unwrap(err))
	}
	gen, err := s.generations.get(c.UserContext(), s.Store, claims.TeamID)
	if errors.Is(err, store.ErrNotFound) {
		return auth.Claims{}, false, apiError(fiber.StatusUnauthorized, "unauthorized", "the token's team no longer exists: register or log in again")
	}
	if err != nil {
		return auth.Claims{}, false, err
	}
	if claims.Generation < gen {
		return auth.Claims{}, false, apiError(fiber.StatusUnauthorized, "token_revoked", "this token was revoked when the team's password was changed: log in again with POST /api/v1/auth/token and the new password")
	}
	return claims, true, nil
}

func (s *Server) requireAuth(c *fiber.Ctx) error {
	claims, ok, err := s.parseBearer(c)
	if err != nil {
		return err
	}
	if !ok {
		return apiError(fiber.StatusUnauthorized, "unauthorized", "this call needs a token: send \"Authorization: Bearer <token>\" (get one with POST /api/v1/auth/token)")
	}
	c.Locals(claimsKey, claims)
	return c.Next()
}

func (s *Server) optionalAuth(c *fiber.Ctx) error {
	claims, ok, err := s.parseBearer(c)
	if err != nil {
		return err
	}
	if ok {
		c.Locals(claimsKey, claims)
	}
	return c.Next()
}

func claimsOf(c *fiber.Ctx) (auth.Claims, bool) {
	claims, ok := c.Locals(claimsKey).(auth.Claims)
	return claims, ok
}

// whoami says whose token the request carries, and until when it works.
func (s *Server) whoami(c *fiber.Ctx) error {
	claims, _ := claimsOf(c)
	return c.JSON(fiber.Map{"id": claims.TeamID, "name": claims.TeamName, "role": claims.Role, "expires_at": claims.ExpiresAt})
}
