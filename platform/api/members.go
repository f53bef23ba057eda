package api

import (
	"errors"
	"net/url"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/hackarena/hackarena/challenges"
	"github.com/hackarena/hackarena/platform/store"
)

// Invites: a captain's code lets up to max_uses people join until it
// expires (default one use, seven days).
const (
	defaultInviteUses   = 1
	maxInviteUses       = 50
	defaultInviteExpiry = 7 * 24 * time.Hour
	maxInviteExpiry     = 90 * 24 * time.Hour
)

// teamDetailJSON is what anyone may see of a team: its people and where it
// was disqualified.
type teamDetailJSON struct {
	ID           string                     `json:"id"`
	Name         string                     `json:"name"`
	CreatedAt    time.Time                  `json:"created_at"`
	CaptainName  string                     `json:"captain"`
	Members      []store.Member             `json:"members"`
	Disqualified []teamDisqualificationJSON `json:"disqualified"`
}

type teamDisqualificationJSON struct {
	Challenge string    `json:"challenge"`
	Reason    string    `json:"reason"`
	At        time.Time `json:"at"`
}

func (s *Server) teamView(c *fiber.Ctx, teamID string) (teamDetailJSON, error) {
	ctx := c.UserContext()
	team, err := s.Store.Team(ctx, teamID)
	if err != nil {
		return teamDetailJSON{}, err
	}
	members, err := s.Store.Members(ctx, teamID)
	if err != nil {
		return teamDetailJSON{}, err
	}
	out := teamDetailJSON{ID: team.ID, Name: team.Name, CreatedAt: team.CreatedAt, Members: members, Disqualified: []teamDisqualificationJSON{}}
	for _, m := range members {
		if m.Captain {
			out.CaptainName = m.Name
		}
	}
	for _, slug := range s.Challenges.Slugs() {
		d, err := s.Store.Disqualified(ctx, slug, teamID)
		if err != nil {
			return teamDetailJSON{}, err
		}
		if d != nil {
			out.Disqualified = append(out.Disqualified, teamDisqualificationJSON{Challenge: slug, Reason: d.Reason, At: d.At})
		}
	}
	return out, nil
}

// teamByPath is the team a path's :name names ("me": the caller's). Team
// names have spaces: pages link to them escaped.
func (s *Server) teamByPath(c *fiber.Ctx) (store.Team, error) {
	name, err := url.PathUnescape(c.Params("name"))
	if err != nil {
		return store.Team{}, apiError(fiber.StatusBadRequest, "invalid_name", "the team name in the path is not URL-encoded correctly")
	}
	if name == "me" {
		claims, ok := claimsOf(c)
		if !ok || claims.TeamID == "" {
			return store.Team{}, apiError(fiber.StatusNotFound, "team_not_found", "\"me\" names the caller's team, and this call carries no token of a team")
		}
		return s.Store.Team(c.UserContext(), claims.TeamID)
	}
	team, err := s.Store.TeamByName(c.UserContext(), name)
	if errors.Is(err, store.ErrNotFound) || (err == nil && team.Role == store.RoleOrganizer) {
		return store.Team{}, apiError(fiber.StatusNotFound, "team_not_found", "no team named %q", name)
	}
	return team, err
}

// teamMembers is GET /api/v1/teams/{name}: the team's members, captain
// and disqualifications, public.
func (s *Server) teamMembers(c *fiber.Ctx) error {
	team, err := s.teamByPath(c)
	if err != nil {
		return err
	}
	// A team of the version before members shows its one member.
	if team.Captain == "" {
		if _, err := s.Store.LegacyUser(c.UserContext(), team.ID); err != nil {
			return err
		}
	}
	view, err := s.teamView(c, team.ID)
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"team": view})
}

// createTeam makes a team for the caller, who captains it; the answer
// carries a token of the team.
func (s *Server) createTeam(c *fiber.Ctx, name string) error {
	claims, ok, err := s.parseBearer(c)
	if err != nil {
		return err
	}
	if !ok {
		return apiError(fiber.StatusBadRequest, "invalid_password", "send a password to register a new team of one, or log in first (POST /api/v1/users, POST /api/v1/auth/token) and send only the name to create a team you captain")
	}
	if claims.Role == store.RoleOrganizer {
		return apiError(fiber.StatusForbidden, "organizer_only", "the organizer account cannot be in a team")
	}
	user, err := s.Store.User(c.UserContext(), claims.UserID)
	if err != nil {
		return err
	}
	team, err := s.Store.CreateTeamFor(c.UserContext(), user, name)
	var taken *store.TeamNameTakenError
	switch {
	case errors.As(err, &taken):
		return apiError(fiber.StatusConflict, "name_taken", "a team named %q exists; choose another name", name)
	case errors.Is(err, store.ErrInTeam):
		return apiError(fiber.StatusConflict, "already_in_team", "you are in team %q: leave it first (POST /api/v1/teams/me/leave, hackctl team leave)", claims.TeamName)
	case err != nil:
		return err
	}
	token, _, _, _, err := s.issueFresh(c, user.ID)
	if err != nil {
		return err
	}
	s.Log.Info("team created", "team", team.Name, "team_id", team.ID, "captain", user.Name)
	return c.Status(fiber.StatusCreated).JSON(fiber.Map{
		"team":  teamJSON{ID: team.ID, Name: team.Name, CreatedAt: team.CreatedAt},
		"token": token,
	})
}

// teamCap is how many members a team may have: the smallest team_size of
// the challenges still open or to come (a team too large for one could
// not submit to it), and the challenge that sets it ("" for none).
func (s *Server) teamCap() (int, string) {
	limit, by := challenges.MaxTeamSize, ""
	now := time.Now()
	for _, ch := range s.Challenges.All() {
		if !ch.ClosesAt.IsZero() && !now.Before(ch.ClosesAt) {
			continue
		}
		if n := ch.Spec.Members(); n < limit {
			limit, by = n, ch.Slug
		}
	}
	return limit, by
}

// inviteRequest: max_uses (or uses) people may join until expires_in
// from now (a duration like "48h") or expires_at (RFC 3339).
type inviteRequest struct {
	MaxUses   int        `json:"max_uses"`
	Uses      int        `json:"uses"`
	ExpiresIn string     `json:"expires_in"`
	ExpiresAt *time.Time `json:"expires_at"`
}

// createInvite is POST /api/v1/teams/{name}/invites, the captain's.
func (s *Server) createInvite(c *fiber.Ctx) error {
	claims, _ := claimsOf(c)
	team, err := s.teamByPath(c)
	if err != nil {
		return err
	}
	if team.ID != claims.TeamID {
		return apiError(fiber.StatusForbidden, "not_captain", "only team %q's captain may invite to it", team.Name)
	}
	if team.Role == store.RoleOrganizer {
		return apiError(fiber.StatusForbidden, "organizer_only", "the organizer account is not a team: no one can join it")
	}
	var req inviteRequest
	if len(c.Body()) > 0 {
		if err := decodeJSON(c, &req); err != nil {
			return err
		}
	}
	if req.MaxUses == 0 {
		req.MaxUses = req.Uses
	}
	if req.MaxUses == 0 {
		req.MaxUses = defaultInviteUses
	}
	if req.MaxUses < 1 || req.MaxUses > maxInviteUses {
		return apiError(fiber.StatusBadRequest, "invalid_invite", "max_uses must be 1..%d, got %d", maxInviteUses, req.MaxUses)
	}
	ttl := defaultInviteExpiry
	switch {
	case req.ExpiresIn != "" && req.ExpiresAt != nil:
		return apiError(fiber.StatusBadRequest, "invalid_invite", "send expires_in or expires_at, not both")
	case req.ExpiresIn != "":
		if ttl, err = time.ParseDuration(req.ExpiresIn); err != nil || ttl < time.Minute || ttl > maxInviteExpiry {
			return apiError(fiber.StatusBadRequest, "invalid_invite", "expires_in must be a duration from 1m to %s like \"48h\", got %q", maxInviteExpiry, req.ExpiresIn)
		}
	case req.ExpiresAt != nil:
		if ttl = time.Until(*req.ExpiresAt); ttl < time.Minute || ttl > maxInviteExpiry {
			return apiError(fiber.StatusBadRequest, "invalid_invite", "expires_at must be 1 minute to %s from now, got %s", maxInviteExpiry, req.ExpiresAt.Format(time.RFC3339))
		}
	}
	user, err := s.Store.User(c.UserContext(), claims.UserID)
	if err != nil {
		return err
	}
	inv, err := s.Store.CreateInvite(c.UserContext(), team, user, req.MaxUses, time.Now().Add(ttl))
	if errors.Is(err, store.ErrNotCaptain) {
		return apiError(fiber.StatusForbidden, "not_captain", "only team %q's captain may invite to it; ask them, or have them hand the role over", team.Name)
	}
	if err != nil {
		return err
	}
	return c.Status(fiber.StatusCreated).JSON(fiber.Map{"invite": inv,
		"join": "each invited person runs: hackctl team join " + inv.Code})
}

// joinTeam is POST /api/v1/teams/join {"code"}: the caller joins the team
// the invite names; the answer carries a token of that team.
func (s *Server) joinTeam(c *fiber.Ctx) error {
	claims, _ := claimsOf(c)
	var req struct {
		Code string `json:"code"`
	}
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if claims.Role == store.RoleOrganizer {
		return apiError(fiber.StatusForbidden, "organizer_only", "the organizer account cannot be in a team")
	}
	user, err := s.Store.User(c.UserContext(), claims.UserID)
	if err != nil {
		return err
	}
	limit, by := s.teamCap()
	team, err := s.Store.JoinTeam(c.UserContext(), user, req.Code, limit)
	switch {
	case errors.Is(err, store.ErrInvalidInvite):
		return apiError(fiber.StatusNotFound, "invalid_invite", "the invite code is unknown, expired or used up: ask the team's captain for a new one")
	case errors.Is(err, store.ErrInTeam):
		return apiError(fiber.StatusConflict, "already_in_team", "you are in team %q: leave it first (POST /api/v1/teams/me/leave, hackctl team leave)", claims.TeamName)
	case errors.Is(err, store.ErrTeamFull):
		return apiError(fiber.StatusConflict, "team_full", "team %q has %d members, the most challenge %q allows (team_size); the invite was not used", team.Name, limit, by)
	case err != nil:
		return err
	}
	token, _, _, _, err := s.issueFresh(c, user.ID)
	if err != nil {
		return err
	}
	s.Log.Info("member joined a team", "team", team.Name, "user", user.Name)
	return c.JSON(fiber.Map{"team": teamJSON{ID: team.ID, Name: team.Name, CreatedAt: team.CreatedAt}, "token": token})
}

// leaveTeam is POST /api/v1/teams/me/leave: the caller's tokens of the
// team stop working, and the answer carries one of no team.
func (s *Server) leaveTeam(c *fiber.Ctx) error {
	claims, _ := claimsOf(c)
	user, err := s.Store.User(c.UserContext(), claims.UserID)
	if err != nil {
		return err
	}
	_, err = s.Store.LeaveTeam(c.UserContext(), user, claims.TeamID)
	switch {
	case errors.Is(err, store.ErrCaptainStays):
		return apiError(fiber.StatusConflict, "captain_must_hand_over", "you captain team %q and it has other members: hand the role over first (POST /api/v1/teams/me/captain {\"user\"}, hackctl team captain NAME)", claims.TeamName)
	case errors.Is(err, store.ErrNoTeam):
		return apiError(fiber.StatusConflict, "no_team", "you are not in team %q", claims.TeamName)
	case err != nil:
		return err
	}
	token, _, _, _, err := s.issueFresh(c, user.ID)
	if err != nil {
		return err
	}
	s.Log.Info("member left a team", "team", claims.TeamName, "user", user.Name)
	return c.JSON(fiber.Map{"left": claims.TeamName, "token": token})
}

// memberByPath is the user a path's :user names, who must be in the
// caller's team.
func (s *Server) memberByPath(c *fiber.Ctx) (store.User, error) {
	name, err := url.PathUnescape(c.Params("user"))
	if err != nil {
		return store.User{}, apiError(fiber.StatusBadRequest, "invalid_name", "the user name in the path is not URL-encoded correctly")
	}
	return s.member(c, name)
}

// member is the user named name, who must be in the caller's team.
func (s *Server) member(c *fiber.Ctx, name string) (store.User, error) {
	claims, _ := claimsOf(c)
	u, err := s.Store.UserByName(c.UserContext(), name)
	if errors.Is(err, store.ErrNotFound) || (err == nil && u.TeamID != claims.TeamID) {
		return store.User{}, apiError(fiber.StatusNotFound, "not_member", "%q is not a member of team %q", name, claims.TeamName)
	}
	return u, err
}

// removeMember is DELETE /api/v1/teams/me/members/{user}, the captain's:
// the member's tokens stop working at once.
func (s *Server) removeMember(c *fiber.Ctx) error {
	claims, _ := claimsOf(c)
	member, err := s.memberByPath(c)
	if err != nil {
		return err
	}
	captain := store.User{ID: claims.UserID}
	_, err = s.Store.RemoveMember(c.UserContext(), captain, claims.TeamID, member.ID)
	switch {
	case errors.Is(err, store.ErrNotCaptain):
		return apiError(fiber.StatusForbidden, "not_captain", "only team %q's captain may remove members", claims.TeamName)
	case errors.Is(err, store.ErrCaptainStays):
		return apiError(fiber.StatusConflict, "captain_must_hand_over", "the captain cannot remove themselves: hand the role over, then leave")
	case errors.Is(err, store.ErrNotMember):
		return apiError(fiber.StatusNotFound, "not_member", "%q is not a member of team %q", member.Name, claims.TeamName)
	case err != nil:
		return err
	}
	s.standings.forget(member.ID)
	s.Log.Info("member removed from a team", "team", claims.TeamName, "user", member.Name, "by", claims.UserName)
	return c.JSON(fiber.Map{"removed": member.Name, "team": claims.TeamName})
}

// handOver is POST /api/v1/teams/me/captain {"user"}, the captain's.
func (s *Server) handOver(c *fiber.Ctx) error {
	claims, _ := claimsOf(c)
	var req struct {
		User string `json:"user"`
	}
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	u, err := s.member(c, req.User)
	if err != nil {
		return err
	}
	err = s.Store.HandOver(c.UserContext(), store.User{ID: claims.UserID}, claims.TeamID, u.ID)
	switch {
	case errors.Is(err, store.ErrNotCaptain):
		return apiError(fiber.StatusForbidden, "not_captain", "only team %q's captain may hand the role over", claims.TeamName)
	case errors.Is(err, store.ErrNotMember):
		return apiError(fiber.StatusNotFound, "not_member", "%q is not a member of team %q", u.Name, claims.TeamName)
	case err != nil:
		return err
	}
	s.Log.Info("captaincy handed over", "team", claims.TeamName, "from", claims.UserName, "to", u.Name)
	return c.JSON(fiber.Map{"team": claims.TeamName, "captain": u.Name})
}
