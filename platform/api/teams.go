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

// register is POST /api/v1/teams. With a password it registers a person
// and a team of one that share the name (what it did before teams had
// members). Without, it makes a team for the caller, who must be logged
// in and in no team, and captains it.
func (s *Server) register(c *fiber.Ctx) error {
	var req credentials
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	req.Name = strings.TrimSpace(req.Name)
	if err := checkName(req.Name, "team"); err != nil {
		return err
	}
	if req.Password == "" {
		return s.createTeam(c, req.Name)
	}
	hash, err := s.newPasswordHash(c, req.Password)
	if err != nil {
		return err
	}
	user, team, err := s.Store.RegisterTeamOfOne(c.UserContext(), req.Name, hash, store.RoleParticipant)
	if errors.Is(err, store.ErrNameTaken) {
		return apiError(fiber.StatusConflict, "name_taken", "a team or person named %q exists; choose another name, or log in with POST /api/v1/auth/token", req.Name)
	}
	if err != nil {
		return err
	}
	s.countRegistration(c)
	token, _, err := s.issue(user, team)
	if err != nil {
		return err
	}
	s.Log.Info("team registered", "team", team.Name, "team_id", team.ID)
	return c.Status(fiber.StatusCreated).JSON(fiber.Map{
		"team":  teamJSON{ID: team.ID, Name: team.Name, CreatedAt: team.CreatedAt},
		"user":  userJSON{ID: user.ID, Name: user.Name, CreatedAt: user.CreatedAt},
		"token": token,
	})
}

type userJSON struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
}

// registerUser is POST /api/v1/users: a person with a login of their own
// and no team yet; they create one or join one with an invite code.
func (s *Server) registerUser(c *fiber.Ctx) error {
	var req credentials
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	req.Name = strings.TrimSpace(req.Name)
	if err := checkName(req.Name, "user"); err != nil {
		return err
	}
	hash, err := s.newPasswordHash(c, req.Password)
	if err != nil {
		return err
	}
	user, err := s.Store.CreateUser(c.UserContext(), req.Name, hash, store.RoleParticipant)
	if errors.Is(err, store.ErrNameTaken) {
		return apiError(fiber.StatusConflict, "name_taken", "a person named %q exists; choose another name, or log in with POST /api/v1/auth/token", req.Name)
	}
	if err != nil {
		return err
	}
	s.countRegistration(c)
	token, _, err := s.issue(user, store.Team{})
	if err != nil {
		return err
	}
	s.Log.Info("user registered", "user", user.Name, "user_id", user.ID)
	return c.Status(fiber.StatusCreated).JSON(fiber.Map{
		"user":  userJSON{ID: user.ID, Name: user.Name, CreatedAt: user.CreatedAt},
		"token": token,
		"next":  "create a team with POST /api/v1/teams {\"name\"} or join one with POST /api/v1/teams/join {\"code\"}",
	})
}

func checkName(name, what string) error {
	if !teamNamePattern.MatchString(name) {
		return apiError(fiber.StatusBadRequest, "invalid_name", "%s name must be 2-40 characters of letters, digits, space, '_', '.' or '-', starting with a letter or digit", what)
	}
	// "me" and "join" name paths under /api/v1/teams/.
	for _, reserved := range []string{organizerName, "me", "join"} {
		if strings.EqualFold(name, reserved) {
			return apiError(fiber.StatusConflict, "name_taken", "the name %q is reserved; choose another", name)
		}
	}
	return nil
}

func checkPassword(password, field string) error {
	if len(password) < minPassword || len(password) > maxPassword {
		return apiError(fiber.StatusBadRequest, "invalid_password", "%s must be %d to %d bytes long", field, minPassword, maxPassword)
	}
	return nil
}

// newPasswordHash checks a registration's password and the address's
// registration throttle, then hashes the password.
func (s *Server) newPasswordHash(c *fiber.Ctx, password string) (string, error) {
	if err := checkPassword(password, "password"); err != nil {
		return "", err
	}
	th := s.throttles().RegisterPerAddress
	wait, err := s.Store.Locked(c.UserContext(), th, c.IP())
	if err != nil {
		return "", err
	}
	if wait > 0 {
		return "", throttled(wait, "too many registrations from your address (%d per %s)", th.Limit, th.Window)
	}
	hash, err := auth.HashPassword(c.UserContext(), password)
	if err != nil {
		return "", hashError(err)
	}
	return hash, nil
}

func (s *Server) countRegistration(c *fiber.Ctx) {
	if _, err := s.Store.Hit(c.UserContext(), s.throttles().RegisterPerAddress, c.IP()); err != nil {
		s.Log.Warn("count a registration", "err", err)
	}
}

// issue mints a token for a user acting for team (zero: none).
func (s *Server) issue(u store.User, team store.Team) (string, time.Time, error) {
	s.standings.forget(u.ID)
	return s.Tokens.Issue(auth.Identity{UserID: u.ID, UserName: u.Name, TeamID: team.ID, TeamName: team.Name, Role: u.Role}, u.TokenGeneration)
}

// issueFresh reads the user again and mints a token for their team now.
func (s *Server) issueFresh(c *fiber.Ctx, userID string) (string, time.Time, store.User, store.Team, error) {
	u, err := s.Store.User(c.UserContext(), userID)
	if err != nil {
		return "", time.Time{}, u, store.Team{}, err
	}
	var team store.Team
	if u.TeamID != "" {
		if team, err = s.Store.Team(c.UserContext(), u.TeamID); err != nil {
			return "", time.Time{}, u, team, err
		}
	}
	token, exp, err := s.issue(u, team)
	return token, exp, u, team, err
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
func (s *Server) checkLogin(c *fiber.Ctx, name, password string) (store.User, error) {
	ctx := c.UserContext()
	th := s.throttles()
	// A failed check counts against both; either one locked refuses.
	counted := []struct {
		th   store.Throttle
		key  string
		what string
	}{{th.LoginPerTeam, name, "too many failed logins for this name"}, {th.LoginPerAddress, c.IP(), "too many failed logins from your address"}}
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
		return store.User{}, err
	}
	leave, err := s.loginGate.enter(ctx, strings.ToLower(name))
	if err != nil {
		return store.User{}, hashError(auth.ErrBusy)
	}
	defer leave()
	// A team of the version before members logs in by its name as its one
	// member (UserByName adopts it).
	user, err := s.Store.UserByName(ctx, name)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return store.User{}, err
	}
	ok := false
	if err == nil {
		var checkErr error
		ok, checkErr = auth.CheckPassword(ctx, user.PasswordHash, password, locked)
		if checkErr != nil {
			return store.User{}, hashError(checkErr)
		}
	}
	if ok {
		if err := s.Store.ResetThrottle(ctx, th.LoginPerTeam, name); err != nil {
			s.Log.Warn("reset login throttle", "err", err)
		}
		// Only who knows the password learns why the login is locked.
		if user.Locked != nil {
			return store.User{}, lockedError(user.Locked)
		}
		return user, nil
	}
	for _, l := range counted {
		if _, err := s.Store.Hit(ctx, l.th, l.key); err != nil {
			return store.User{}, err
		}
	}
	// One message for an unknown name and a wrong password, so the API does
	// not reveal which names exist.
	return store.User{}, apiError(fiber.StatusUnauthorized, "invalid_credentials", "unknown name or wrong password")
}

func (s *Server) token(c *fiber.Ctx) error {
	var req credentials
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	user, err := s.checkLogin(c, strings.TrimSpace(req.Name), req.Password)
	if err != nil {
		return err
	}
	token, exp, _, team, err := s.issueFresh(c, user.ID)
	if err != nil {
		return err
	}
	out := fiber.Map{"token": token, "expires_at": exp, "user": user.Name}
	if team.ID != "" {
		out["team"] = team.Name
	}
	return c.JSON(out)
}

type passwordChange struct {
	CurrentPassword string `json:"current_password"`
	NewPassword     string `json:"new_password"`
}

// changePassword sets the caller's password and revokes every token
// issued to them before: the answer carries a new one.
func (s *Server) changePassword(c *fiber.Ctx) error {
	claims, _ := claimsOf(c)
	var req passwordChange
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if err := checkPassword(req.NewPassword, "new_password"); err != nil {
		return err
	}
	user, err := s.checkLogin(c, claims.UserName, req.CurrentPassword)
	var apiErr *Error
	if errors.As(err, &apiErr) && apiErr.Code == "invalid_credentials" {
		return apiError(fiber.StatusUnauthorized, "wrong_password", "current_password is not your password: send the one you log in with")
	}
	if err != nil {
		return err
	}
	hash, err := auth.HashPassword(c.UserContext(), req.NewPassword)
	if err != nil {
		return hashError(err)
	}
	gen, err := s.Store.ChangeUserPassword(c.UserContext(), user.ID, user.PasswordHash, hash)
	if errors.Is(err, store.ErrPasswordChanged) {
		return apiError(fiber.StatusConflict, "password_changed", "the password was changed by another request meanwhile: log in with the new one and try again")
	}
	if err != nil {
		return err
	}
	token, exp, _, _, err := s.issueFresh(c, user.ID)
	if err != nil {
		return err
	}
	s.Log.Info("password changed; older tokens revoked", "user", user.Name, "token_generation", gen)
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
	ctx := c.UserContext()
	if claims.UserID == "" {
		// A token of the version before members names its team: it acts as
		// the team's one member, as whom the team was adopted.
		uid, err := s.Store.LegacyUser(ctx, claims.TeamID)
		if err != nil {
			return auth.Claims{}, false, err
		}
		if uid == "" {
			return auth.Claims{}, false, apiError(fiber.StatusUnauthorized, "unauthorized", "the token's team no longer exists: register or log in again")
		}
		claims.UserID = uid
		if u, err := s.Store.User(ctx, uid); err == nil {
			claims.UserName = u.Name
		}
	}
	st, err := s.standings.get(ctx, s.Store, claims.UserID)
	if errors.Is(err, store.ErrNotFound) {
		return auth.Claims{}, false, apiError(fiber.StatusUnauthorized, "unauthorized", "the token's account no longer exists: register or log in again")
	}
	if err != nil {
		return auth.Claims{}, false, err
	}
	if st.Locked != nil {
		return auth.Claims{}, false, lockedError(st.Locked)
	}
	if st.TeamID != claims.TeamID {
		if claims.TeamID != "" {
			return auth.Claims{}, false, apiError(fiber.StatusUnauthorized, "token_revoked", "this token is for team %q, which you are no longer a member of: log in again with POST /api/v1/auth/token", claims.TeamName)
		}
		return auth.Claims{}, false, apiError(fiber.StatusUnauthorized, "token_revoked", "you joined a team since this token was issued: log in again with POST /api/v1/auth/token for a token of your team")
	}
	if claims.Generation < st.TokenGeneration {
		return auth.Claims{}, false, apiError(fiber.StatusUnauthorized, "token_revoked", "this token was revoked when your password was changed or you left a team: log in again with POST /api/v1/auth/token")
	}
	return claims, true, nil
}

// lockedError is a refusal of a locked login, with the organizers' reason.
func lockedError(l *store.Lock) *Error {
	return apiError(fiber.StatusForbidden, "account_locked", "the organizers locked this account on %s: %s; contact them to have it unlocked", l.At.UTC().Format("2006-01-02 15:04 UTC"), l.Reason)
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

// requireTeam admits a caller in a team; it runs after requireAuth.
func (s *Server) requireTeam(c *fiber.Ctx) error {
	claims, _ := claimsOf(c)
	if claims.TeamID == "" {
		return apiError(fiber.StatusForbidden, "no_team", "you are not in a team yet: create one with POST /api/v1/teams {\"name\"} (hackctl team create NAME) or join one with POST /api/v1/teams/join {\"code\"} (hackctl team join CODE)")
	}
	return c.Next()
}

func claimsOf(c *fiber.Ctx) (auth.Claims, bool) {
	claims, ok := c.Locals(claimsKey).(auth.Claims)
	return claims, ok
}

// whoami says whose token the request carries, for which team, and until
// when it works; "id" and "name" are the team's (empty in none).
func (s *Server) whoami(c *fiber.Ctx) error {
	claims, _ := claimsOf(c)
	out := fiber.Map{"id": claims.TeamID, "name": claims.TeamName, "role": claims.Role, "expires_at": claims.ExpiresAt,
		"user": fiber.Map{"id": claims.UserID, "name": claims.UserName}}
	if claims.TeamID != "" {
		team, err := s.teamView(c, claims.TeamID)
		if err != nil {
			return err
		}
		out["team"] = team
		out["captain"] = team.CaptainName == claims.UserName
	}
	return c.JSON(out)
}
