package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Member is one person in a team.
type Member struct {
	Name     string    `json:"name"`
	Captain  bool      `json:"captain"`
	JoinedAt time.Time `json:"joined_at"`
}

// TeamInfo is a team's public page: its people and where it was
// disqualified.
type TeamInfo struct {
	ID           string    `json:"id"`
	Name         string    `json:"name"`
	CreatedAt    time.Time `json:"created_at"`
	Captain      string    `json:"captain"`
	Members      []Member  `json:"members"`
	Disqualified []struct {
		Challenge string    `json:"challenge"`
		Reason    string    `json:"reason"`
		At        time.Time `json:"at"`
	} `json:"disqualified"`
}

// Invite is a code people join a team with.
type Invite struct {
	Code      string    `json:"code"`
	Team      string    `json:"team"`
	UsesLeft  int       `json:"uses_left"`
	ExpiresAt time.Time `json:"expires_at"`
}

// RegisterUser creates a person's login, in no team yet, and returns a
// token.
func (c *Client) RegisterUser(ctx context.Context, name, password string) (string, error) {
	var out struct {
		Token string `json:"token"`
	}
	err := c.postJSON(ctx, "/api/v1/users", map[string]string{"name": name, "password": password}, &out)
	return out.Token, err
}

// CreateTeam makes a team the caller captains; the token returned acts
// for it (the caller's earlier ones no longer do).
func (c *Client) CreateTeam(ctx context.Context, name string) (Team, string, error) {
	var out struct {
		Team  Team   `json:"team"`
		Token string `json:"token"`
	}
	err := c.postJSON(ctx, "/api/v1/teams", map[string]string{"name": name}, &out)
	return out.Team, out.Token, err
}

// CreateInvite makes an invite to the caller's team (its captain only):
// uses people may join with it (0: one) until it expires (expiresIn like
// "48h"; "": seven days).
func (c *Client) CreateInvite(ctx context.Context, uses int, expiresIn string) (Invite, error) {
	var out struct {
		Invite Invite `json:"invite"`
	}
	err := c.postJSON(ctx, "/api/v1/teams/me/invites", map[string]any{"max_uses": uses, "expires_in": expiresIn}, &out)
	return out.Invite, err
}

// JoinTeam joins the team an invite code names; the token returned acts
// for it.
func (c *Client) JoinTeam(ctx context.Context, code string) (Team, string, error) {
	var out struct {
		Team  Team   `json:"team"`
		Token string `json:"token"`
	}
	err := c.postJSON(ctx, "/api/v1/teams/join", map[string]string{"code": code}, &out)
	return out.Team, out.Token, err
}

// TeamInfo reads a team's page ("me": the caller's).
func (c *Client) TeamInfo(ctx context.Context, name string) (TeamInfo, error) {
	var out struct {
		Team TeamInfo `json:"team"`
	}
	err := c.do(ctx, http.MethodGet, "/api/v1/teams/"+url.PathEscape(name), nil, "", &out)
	return out.Team, err
}

// LeaveTeam takes the caller out of their team and returns a token of no
// team.
func (c *Client) LeaveTeam(ctx context.Context) (string, error) {
	var out struct {
		Token string `json:"token"`
	}
	err := c.postJSON(ctx, "/api/v1/teams/me/leave", struct{}{}, &out)
	return out.Token, err
}

// RemoveMember is the captain's removal of a member.
func (c *Client) RemoveMember(ctx context.Context, user string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/teams/me/members/"+url.PathEscape(user), nil, "", nil)
}

// HandOver makes another member the team's captain.
func (c *Client) HandOver(ctx context.Context, user string) error {
	return c.postJSON(ctx, "/api/v1/teams/me/captain", map[string]string{"user": user}, nil)
}

// AuditEntry is one organizer action.
type AuditEntry struct {
	ID        string    `json:"id"`
	At        time.Time `json:"at"`
	Actor     string    `json:"actor"`
	Action    string    `json:"action"`
	Challenge string    `json:"challenge"`
	Target    string    `json:"target"`
	Reason    string    `json:"reason"`
}

// Disqualify takes a team off a challenge's boards (organizers only).
func (c *Client) Disqualify(ctx context.Context, slug, team, reason string) error {
	return c.postJSON(ctx, "/api/v1/challenges/"+url.PathEscape(slug)+"/disqualifications", map[string]string{"team": team, "reason": reason}, nil)
}

// Reinstate lifts a team's disqualification (organizers only).
func (c *Client) Reinstate(ctx context.Context, slug, team, reason string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/challenges/"+url.PathEscape(slug)+"/disqualifications/"+url.PathEscape(team)+"?reason="+url.QueryEscape(reason), nil, "", nil)
}

// SetExclusion excludes a submission from ranking with a reason, or with
// exclude false includes it again (organizers only).
func (c *Client) SetExclusion(ctx context.Context, id string, exclude bool, reason string) error {
	path := "/api/v1/submissions/" + url.PathEscape(id) + "/exclusion"
	if exclude {
		return c.postJSON(ctx, path, map[string]string{"reason": reason}, nil)
	}
	return c.do(ctx, http.MethodDelete, path+"?reason="+url.QueryEscape(reason), nil, "", nil)
}

// SetLock locks a user's login with a reason, or with lock false unlocks
// it (organizers only).
func (c *Client) SetLock(ctx context.Context, user string, lock bool, reason string) error {
	path := "/api/v1/users/" + url.PathEscape(user) + "/lock"
	if lock {
		return c.postJSON(ctx, path, map[string]string{"reason": reason}, nil)
	}
	return c.do(ctx, http.MethodDelete, path+"?reason="+url.QueryEscape(reason), nil, "", nil)
}

// Audit lists organizer actions, newest first (organizers only); action
// and challenge filter when not empty.
func (c *Client) Audit(ctx context.Context, action, challenge string, limit int) ([]AuditEntry, error) {
	q := url.Values{}
	if action != "" {
		q.Set("action", action)
	}
	if challenge != "" {
		q.Set("challenge", challenge)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var out struct {
		Entries []AuditEntry `json:"entries"`
	}
	err := c.do(ctx, http.MethodGet, "/api/v1/audit?"+q.Encode(), nil, "", &out)
	return out.Entries, err
}
