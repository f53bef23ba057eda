package api

import (
	"errors"
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
	hash, err := auth.HashPassword(req.Password)
	if err != nil {
		return err
	}
	team, err := s.Store.CreateTeam(c.UserContext(), req.Name, hash, store.RoleParticipant)
	if errors.Is(err, store.ErrNameTaken) {
		return apiError(fiber.StatusConflict, "name_taken", "a team named %q exists; choose another name, or log in with POST /api/v1/auth/token", req.Name)
	}
	if err != nil {
		return err
	}
	token, _, err := s.Tokens.Issue(team.ID, team.Name, team.Role)
	if err != nil {
		return err
	}
	s.Log.Info("team registered", "team", team.Name, "team_id", team.ID)
	return c.Status(fiber.StatusCreated).JSON(fiber.Map{
		"team":  teamJSON{ID: team.ID, Name: team.Name, CreatedAt: team.CreatedAt},
		"token": token,
	})
}

func (s *Server) token(c *fiber.Ctx) error {
	var req credentials
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	team, err := s.Store.TeamByName(c.UserContext(), strings.TrimSpace(req.Name))
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	// One message for an unknown name and a wrong password, so the API does
	// not reveal which team names exist.
	if err != nil || !auth.CheckPassword(team.PasswordHash, req.Password) {
		return apiError(fiber.StatusUnauthorized, "invalid_credentials", "unknown team name or wrong password")
	}
	token, exp, err := s.Tokens.Issue(team.ID, team.Name, team.Role)
	if err != nil {
		return err
	}
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
