package store

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// A team is two to five people, each a user with a login of their own; a
// user is in at most one team at a time. Teams of the version before
// users existed were one account with one password: they are adopted as
// teams of one (AdoptLegacyTeams), whose one member has the team's name
// and password.

func userKey(id string) string        { return prefix + "user:" + id }
func userNameKey(name string) string  { return prefix + "username:" + strings.ToLower(name) }
func membersKey(teamID string) string { return prefix + "team:" + teamID + ":members" }
func inviteKey(code string) string    { return prefix + "invite:" + code }

// adoptedTeamsKey lists the teams adopted from the version before members.
func adoptedTeamsKey() string { return prefix + "teams:adopted" }

func nowText(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func parseGen(s string) int64 {
	g, _ := strconv.ParseInt(s, 10, 64)
	return g
}

// Invites expire at a Unix second; 0 never.
func inviteExpiry(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }

// Errors of team membership callers branch on.
var (
	// ErrInTeam: the user is in a team already and must leave it first.
	ErrInTeam = errors.New("already in a team")
	// ErrNoTeam: the user is in no team.
	ErrNoTeam = errors.New("not in a team")
	// ErrInvalidInvite: no such invite, or it expired or was used up.
	ErrInvalidInvite = errors.New("the invite code is unknown, expired or used up")
	// ErrTeamFull: the team has as many members as it may have.
	ErrTeamFull = errors.New("the team is full")
	// ErrNotCaptain: only the team's captain may do this.
	ErrNotCaptain = errors.New("only the team's captain may do this")
	// ErrCaptainStays: a captain with other members must hand the role
	// over before leaving.
	ErrCaptainStays = errors.New("the captain must hand the role over before leaving")
	// ErrNotMember: the user named is not in the team.
	ErrNotMember = errors.New("not a member of the team")
)

// User is a person's account.
type User struct {
	ID           string
	Name         string
	PasswordHash string
	Role         string
	CreatedAt    time.Time
	// TeamID is the team the user is in ("" for none).
	TeamID string
	// TokenGeneration counts password changes and team departures: a
	// token issued for an earlier generation is revoked.
	TokenGeneration int64
	// Locked is set while an organizer has locked the login.
	Locked *Lock
}

// Lock is why and by whom a user's login was locked.
type Lock struct {
	Reason string    `json:"reason"`
	By     string    `json:"by"`
	At     time.Time `json:"at"`
}

func userFromHash(m map[string]string) User {
	u := User{ID: m["id"], Name: m["name"], PasswordHash: m["password_hash"], Role: m["role"], CreatedAt: parseTime(m["created_at"]),
		TeamID: m["team_id"], TokenGeneration: parseGen(m["token_gen"])}
	if raw := m["locked"]; raw != "" {
		var l Lock
		if json.Unmarshal([]byte(raw), &l) == nil {
			u.Locked = &l
		}
	}
	return u
}

// createUserScript claims the user's name and, when a team name is given,
// the team's too, and writes both in one step: a registration that finds
// either name taken writes nothing (-1: the user name, -2: the team name).
var createUserScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
if KEYS[2] ~= KEYS[1] and redis.call('EXISTS', KEYS[2]) == 1 then return -2 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[3], 'id', ARGV[1], 'name', ARGV[2], 'password_hash', ARGV[3], 'role', ARGV[4], 'created_at', ARGV[5], 'token_gen', ARGV[8])
if ARGV[6] ~= '' then
  redis.call('SET', KEYS[2], ARGV[6])
  redis.call('HSET', KEYS[4], 'id', ARGV[6], 'name', ARGV[7], 'role', ARGV[4], 'created_at', ARGV[5], 'captain', ARGV[1])
  redis.call('HSET', KEYS[5], ARGV[1], ARGV[5])
  redis.call('HSET', KEYS[3], 'team_id', ARGV[6])
end
return 1
`)

// CreateUser registers a person with no team; ErrNameTaken if the name
// (case-insensitive) is a user's already.
func (s *Store) CreateUser(ctx context.Context, name, passwordHash, role string) (User, error) {
	u, _, err := s.createUser(ctx, name, passwordHash, role, "")
	return u, err
}

// RegisterTeamOfOne registers a person and a team they captain in one
// step: the registration of the version before members, and what
// `POST /api/v1/teams` with a password still does. The user and the team
// share the name. TeamNameTakenError or ErrNameTaken when either is taken.
func (s *Store) RegisterTeamOfOne(ctx context.Context, name, passwordHash, role string) (User, Team, error) {
	return s.createUser(ctx, name, passwordHash, role, name)
}

// TeamNameTakenError is a team name (not a user name) that is taken.
type TeamNameTakenError struct{ Name string }

func (e *TeamNameTakenError) Error() string { return fmt.Sprintf("a team named %q exists", e.Name) }

// Is makes a TeamNameTakenError an ErrNameTaken too.
func (e *TeamNameTakenError) Is(target error) bool { return target == ErrNameTaken }

func (s *Store) createUser(ctx context.Context, name, passwordHash, role, teamName string) (User, Team, error) {
	uid, err := uuid.NewV7()
	if err != nil {
		return User{}, Team{}, fmt.Errorf("new user id: %w", err)
	}
	now := time.Now().UTC()
	u := User{ID: uid.String(), Name: name, PasswordHash: passwordHash, Role: role, CreatedAt: now}
	var t Team
	teamID, teamNameK, teamK := "", userNameKey(name), userKey(u.ID)
	if teamName != "" {
		tid, err := uuid.NewV7()
		if err != nil {
			return User{}, Team{}, fmt.Errorf("new team id: %w", err)
		}
		teamID, teamNameK, teamK = tid.String(), teamNameKey(teamName), teamKey(tid.String())
		t = Team{ID: teamID, Name: teamName, Role: role, CreatedAt: now, Captain: u.ID}
		u.TeamID = teamID
	}
	res, err := createUserScript.Run(ctx, s.rdb, []string{userNameKey(name), teamNameK, userKey(u.ID), teamK, membersKey(teamID)},
		u.ID, name, passwordHash, role, nowText(now), teamID, teamName, 0).Int()
	if err != nil {
		return User{}, Team{}, fmt.Errorf("register %q: %w", name, err)
	}
	switch res {
	case -1:
		return User{}, Team{}, ErrNameTaken
	case -2:
		return User{}, Team{}, &TeamNameTakenError{Name: teamName}
	}
	return u, t, nil
}

// UserByName looks a user up by name (case-insensitive). A team of the
// version before members is adopted first, so its name and password log
// in as its one member.
func (s *Store) UserByName(ctx context.Context, name string) (User, error) {
	id, err := s.rdb.Get(ctx, userNameKey(name)).Result()
	if errors.Is(err, redis.Nil) {
		team, terr := s.TeamByName(ctx, name)
		if errors.Is(terr, ErrNotFound) {
			return User{}, ErrNotFound
		}
		if terr != nil {
			return User{}, terr
		}
		uid, aerr := s.adoptLegacyTeam(ctx, team.ID)
		if aerr != nil {
			return User{}, aerr
		}
		if uid == "" {
			return User{}, ErrNotFound
		}
		return s.User(ctx, uid)
	}
	if err != nil {
		return User{}, fmt.Errorf("look up user %q: %w", name, err)
	}
	return s.User(ctx, id)
}

// User loads a user by id.
func (s *Store) User(ctx context.Context, id string) (User, error) {
	m, err := s.rdb.HGetAll(ctx, userKey(id)).Result()
	if err != nil {
		return User{}, fmt.Errorf("load user %s: %w", id, err)
	}
	if len(m) == 0 {
		return User{}, ErrNotFound
	}
	return userFromHash(m), nil
}

// Standing is what a token's check needs of its user, read in one step.
type Standing struct {
	TeamID          string
	TokenGeneration int64
	Locked          *Lock
}

// UserStanding reads a user's team, token generation and lock.
func (s *Store) UserStanding(ctx context.Context, userID string) (Standing, error) {
	v, err := s.rdb.HMGet(ctx, userKey(userID), "id", "team_id", "token_gen", "locked").Result()
	if err != nil {
		return Standing{}, fmt.Errorf("read user %s: %w", userID, err)
	}
	if v[0] == nil {
		return Standing{}, ErrNotFound
	}
	text := func(i int) string { s, _ := v[i].(string); return s }
	st := Standing{TeamID: text(1), TokenGeneration: parseGen(text(2))}
	if raw := text(3); raw != "" {
		var l Lock
		if json.Unmarshal([]byte(raw), &l) == nil {
			st.Locked = &l
		}
	}
	return st, nil
}

// changeUserPasswordScript replaces the hash only if it is still the one
// the caller checked, and starts a new token generation.
var changeUserPasswordScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return -2 end
if redis.call('HGET', KEYS[1], 'password_hash') ~= ARGV[1] then return -1 end
redis.call('HSET', KEYS[1], 'password_hash', ARGV[2])
return redis.call('HINCRBY', KEYS[1], 'token_gen', 1)
`)

// ChangeUserPassword sets a user's password hash, provided the old one is
// still oldHash, and returns the new token generation: every token issued
// before it is revoked.
func (s *Store) ChangeUserPassword(ctx context.Context, userID, oldHash, newHash string) (int64, error) {
	gen, err := changeUserPasswordScript.Run(ctx, s.rdb, []string{userKey(userID)}, oldHash, newHash).Int64()
	if err != nil {
		return 0, fmt.Errorf("change password of user %s: %w", userID, err)
	}
	switch gen {
	case -2:
		return 0, ErrNotFound
	case -1:
		return 0, ErrPasswordChanged
	}
	return gen, nil
}

// createTeamForScript makes a team captained by a user who is in none.
var createTeamForScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return -3 end
if (redis.call('HGET', KEYS[1], 'team_id') or '') ~= '' then return -1 end
if redis.call('EXISTS', KEYS[2]) == 1 then return -2 end
redis.call('SET', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[3], 'id', ARGV[1], 'name', ARGV[2], 'role', ARGV[5], 'created_at', ARGV[3], 'captain', ARGV[4])
redis.call('HSET', KEYS[4], ARGV[4], ARGV[3])
redis.call('HSET', KEYS[1], 'team_id', ARGV[1])
return 1
`)

// CreateTeamFor makes a team named name with the user as its captain and
// only member: ErrInTeam when the user is in one, ErrNameTaken when the
// name is a team's.
func (s *Store) CreateTeamFor(ctx context.Context, u User, name string) (Team, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return Team{}, fmt.Errorf("new team id: %w", err)
	}
	now := time.Now().UTC()
	t := Team{ID: id.String(), Name: name, Role: RoleParticipant, CreatedAt: now, Captain: u.ID}
	res, err := createTeamForScript.Run(ctx, s.rdb, []string{userKey(u.ID), teamNameKey(name), teamKey(t.ID), membersKey(t.ID)},
		t.ID, name, nowText(now), u.ID, RoleParticipant).Int()
	if err != nil {
		return Team{}, fmt.Errorf("create team %q: %w", name, err)
	}
	switch res {
	case -1:
		return Team{}, ErrInTeam
	case -2:
		return Team{}, &TeamNameTakenError{Name: name}
	case -3:
		return Team{}, ErrNotFound
	}
	return t, nil
}

// Member is one person in a team.
type Member struct {
	UserID   string    `json:"-"`
	Name     string    `json:"name"`
	Captain  bool      `json:"captain"`
	JoinedAt time.Time `json:"joined_at"`
}

// Members lists a team's members, the captain first, then by joining.
func (s *Store) Members(ctx context.Context, teamID string) ([]Member, error) {
	joined, err := s.rdb.HGetAll(ctx, membersKey(teamID)).Result()
	if err != nil {
		return nil, fmt.Errorf("list members of team %s: %w", teamID, err)
	}
	captain, err := s.rdb.HGet(ctx, teamKey(teamID), "captain").Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("read the captain of team %s: %w", teamID, err)
	}
	ids := make([]string, 0, len(joined))
	for id := range joined {
		ids = append(ids, id)
	}
	names := make([]*redis.StringCmd, len(ids))
	if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			names[i] = p.HGet(ctx, userKey(id), "name")
		}
		return nil
	}); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("read members of team %s: %w", teamID, err)
	}
	out := make([]Member, 0, len(ids))
	for i, id := range ids {
		out = append(out, Member{UserID: id, Name: names[i].Val(), Captain: id == captain, JoinedAt: parseTime(joined[id])})
	}
	slices.SortFunc(out, func(a, b Member) int {
		if a.Captain != b.Captain {
			if a.Captain {
				return -1
			}
			return 1
		}
		return a.JoinedAt.Compare(b.JoinedAt)
	})
	return out, nil
}

// MemberCount is how many people a team has.
func (s *Store) MemberCount(ctx context.Context, teamID string) (int, error) {
	n, err := s.rdb.HLen(ctx, membersKey(teamID)).Result()
	if err != nil {
		return 0, fmt.Errorf("count members of team %s: %w", teamID, err)
	}
	return int(n), nil
}

// Invite is a code that lets people join a team.
type Invite struct {
	Code      string    `json:"code"`
	Team      string    `json:"team"`
	UsesLeft  int       `json:"uses_left"`
	ExpiresAt time.Time `json:"expires_at"`
	CreatedBy string    `json:"created_by"`
}

// newInviteCode is 80 random bits, readable aloud.
func newInviteCode() (string, error) {
	raw := make([]byte, 10)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("new invite code: %w", err)
	}
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(raw)), nil
}

// CreateInvite makes a code that up to uses people may join the team with
// until expires. Only its captain, by, may.
func (s *Store) CreateInvite(ctx context.Context, team Team, by User, uses int, expires time.Time) (Invite, error) {
	code, err := newInviteCode()
	if err != nil {
		return Invite{}, err
	}
	inv := Invite{Code: code, Team: team.Name, UsesLeft: uses, ExpiresAt: expires.UTC().Truncate(time.Second), CreatedBy: by.Name}
	res, err := createInviteScript.Run(ctx, s.rdb, []string{teamKey(team.ID), inviteKey(code)},
		by.ID, team.ID, uses, inviteExpiry(inv.ExpiresAt), by.Name, nowText(time.Now())).Int()
	if err != nil {
		return Invite{}, fmt.Errorf("create an invite to team %q: %w", team.Name, err)
	}
	if res == -1 {
		return Invite{}, ErrNotCaptain
	}
	return inv, nil
}

var createInviteScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'captain') ~= ARGV[1] then return -1 end
redis.call('HSET', KEYS[2], 'team_id', ARGV[2], 'uses_left', ARGV[3], 'expires_at', ARGV[4], 'created_by', ARGV[5], 'created_at', ARGV[6])
redis.call('EXPIREAT', KEYS[2], tonumber(ARGV[4]) + 60)
return 1
`)

// joinScript spends one use of an invite and makes the user a member of
// its team, if the user is in no team and the team has fewer than
// ARGV[2] members, all in one step.
var joinScript = redis.NewScript(`
local team = redis.call('HGET', KEYS[2], 'team_id')
if not team then return {-1, ''} end
local exp = tonumber(redis.call('HGET', KEYS[2], 'expires_at') or '0')
if (exp > 0 and tonumber(ARGV[3]) >= exp) or tonumber(redis.call('HGET', KEYS[2], 'uses_left') or '0') <= 0 then return {-1, ''} end
if redis.call('EXISTS', KEYS[1]) == 0 then return {-4, ''} end
if (redis.call('HGET', KEYS[1], 'team_id') or '') ~= '' then return {-2, ''} end
local members = ARGV[5] .. team .. ':members'
if redis.call('HLEN', members) >= tonumber(ARGV[2]) then return {-3, team} end
redis.call('HINCRBY', KEYS[2], 'uses_left', -1)
redis.call('HSET', members, ARGV[1], ARGV[4])
-- A team whose captain left it alone is captained by whoever joins it.
if (redis.call('HGET', ARGV[5] .. team, 'captain') or '') == '' then redis.call('HSET', ARGV[5] .. team, 'captain', ARGV[1]) end
redis.call('HSET', KEYS[1], 'team_id', team)
return {1, team}
`)

// JoinTeam spends one use of an invite code and makes the user a member
// of its team, which may have at most maxMembers. It returns the team;
// ErrInvalidInvite, ErrInTeam or ErrTeamFull (with the team) when it
// cannot.
func (s *Store) JoinTeam(ctx context.Context, u User, code string, maxMembers int) (Team, error) {
	code = strings.ToLower(strings.TrimSpace(code))
	if code == "" {
		return Team{}, ErrInvalidInvite
	}
	now := time.Now()
	res, err := joinScript.Run(ctx, s.rdb, []string{userKey(u.ID), inviteKey(code)},
		u.ID, maxMembers, now.Unix(), nowText(now), prefix+"team:").Slice()
	if err != nil {
		return Team{}, fmt.Errorf("join a team: %w", err)
	}
	status, _ := res[0].(int64)
	teamID, _ := res[1].(string)
	switch status {
	case -1:
		return Team{}, ErrInvalidInvite
	case -2:
		return Team{}, ErrInTeam
	case -4:
		return Team{}, ErrNotFound
	case -3:
		t, err := s.Team(ctx, teamID)
		if err != nil {
			return Team{}, err
		}
		return t, ErrTeamFull
	}
	return s.Team(ctx, teamID)
}

// leaveScript takes a user out of their team (KEYS[2]'s members) and
// starts a new token generation for them, so tokens scoped to the team
// stop working. ARGV[1] is the captain acting (a removal), or ” for the
// user leaving of their own accord.
var leaveScript = redis.NewScript(`
local team = redis.call('HGET', KEYS[1], 'team_id') or ''
if team == '' or team ~= ARGV[3] then return -1 end
local captain = redis.call('HGET', KEYS[2], 'captain')
if ARGV[1] ~= '' then
  if captain ~= ARGV[1] then return -2 end
  if ARGV[1] == ARGV[2] then return -3 end
elseif captain == ARGV[2] and redis.call('HLEN', KEYS[3]) > 1 then
  return -3
end
redis.call('HDEL', KEYS[3], ARGV[2])
redis.call('HSET', KEYS[1], 'team_id', '')
if captain == ARGV[2] then redis.call('HSET', KEYS[2], 'captain', '') end
return redis.call('HINCRBY', KEYS[1], 'token_gen', 1)
`)

// LeaveTeam takes the user out of their team teamID and returns their new
// token generation. A captain with other members must hand the role over
// first (ErrCaptainStays). The team, its submissions and its boards stay.
func (s *Store) LeaveTeam(ctx context.Context, u User, teamID string) (int64, error) {
	return s.leave(ctx, "", u.ID, teamID)
}

// RemoveMember is the captain's removal of member from the team: their
// tokens stop working at once.
func (s *Store) RemoveMember(ctx context.Context, captain User, teamID, memberID string) (int64, error) {
	return s.leave(ctx, captain.ID, memberID, teamID)
}

func (s *Store) leave(ctx context.Context, captainID, userID, teamID string) (int64, error) {
	gen, err := leaveScript.Run(ctx, s.rdb, []string{userKey(userID), teamKey(teamID), membersKey(teamID)}, captainID, userID, teamID).Int64()
	if err != nil {
		return 0, fmt.Errorf("take user %s out of team %s: %w", userID, teamID, err)
	}
	switch gen {
	case -1:
		if captainID != "" {
			return 0, ErrNotMember
		}
		return 0, ErrNoTeam
	case -2:
		return 0, ErrNotCaptain
	case -3:
		return 0, ErrCaptainStays
	}
	return gen, nil
}

var handOverScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'captain') ~= ARGV[1] then return -1 end
if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 0 then return -2 end
redis.call('HSET', KEYS[1], 'captain', ARGV[2])
return 1
`)

// HandOver makes member the team's captain; only its captain may.
func (s *Store) HandOver(ctx context.Context, captain User, teamID, memberID string) error {
	res, err := handOverScript.Run(ctx, s.rdb, []string{teamKey(teamID), membersKey(teamID)}, captain.ID, memberID).Int()
	if err != nil {
		return fmt.Errorf("hand over the captaincy of team %s: %w", teamID, err)
	}
	switch res {
	case -1:
		return ErrNotCaptain
	case -2:
		return ErrNotMember
	}
	return nil
}

// adoptScript makes a team of the version before members a team of one:
// a user with the team's name, password, role and token generation, its
// captain and only member. A team adopted already (or made by this
// version: it has a captain field) is left as it is, and its adopted
// user's id returned.
var adoptScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return '' end
local adopted = redis.call('HGET', KEYS[1], 'legacy_user')
if adopted then return adopted end
if redis.call('HEXISTS', KEYS[1], 'captain') == 1 then return '' end
local t = redis.call('HMGET', KEYS[1], 'name', 'password_hash', 'role', 'created_at', 'token_gen')
if not t[2] then return '' end
local name = t[1]
if redis.call('EXISTS', KEYS[3]) == 1 then return '!' end
redis.call('SET', KEYS[3], ARGV[1])
redis.call('HSET', KEYS[2], 'id', ARGV[1], 'name', name, 'password_hash', t[2], 'role', t[3] or 'participant',
  'created_at', t[4] or ARGV[3], 'token_gen', t[5] or '0', 'team_id', ARGV[2])
redis.call('HSET', KEYS[4], ARGV[1], t[4] or ARGV[3])
redis.call('HSET', KEYS[1], 'captain', ARGV[1], 'legacy_user', ARGV[1])
redis.call('SADD', KEYS[5], ARGV[2])
return ARGV[1]
`)

// adoptLegacyTeam adopts one team (see adoptScript) and returns the id of
// its one member; "" for a team that is not of the old version.
func (s *Store) adoptLegacyTeam(ctx context.Context, teamID string) (string, error) {
	name, err := s.rdb.HGet(ctx, teamKey(teamID), "name").Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read team %s: %w", teamID, err)
	}
	uid, err := uuid.NewV7()
	if err != nil {
		return "", fmt.Errorf("new user id: %w", err)
	}
	res, err := adoptScript.Run(ctx, s.rdb, []string{teamKey(teamID), userKey(uid.String()), userNameKey(name), membersKey(teamID), adoptedTeamsKey()},
		uid.String(), teamID, nowText(time.Now())).Text()
	if err != nil {
		return "", fmt.Errorf("adopt team %q as a team of one: %w", name, err)
	}
	if res == "!" {
		return "", fmt.Errorf("adopt team %q as a team of one: a user named %q exists already; rename one of them", name, name)
	}
	return res, nil
}

// LegacyUser is the member a team of the version before members was
// adopted as ("" for a team made by this version): tokens that version
// issued name the team only, and act as this user.
func (s *Store) LegacyUser(ctx context.Context, teamID string) (string, error) {
	id, err := s.rdb.HGet(ctx, teamKey(teamID), "legacy_user").Result()
	if errors.Is(err, redis.Nil) {
		if _, err := s.adoptLegacyTeam(ctx, teamID); err != nil {
			return "", err
		}
		id, err = s.rdb.HGet(ctx, teamKey(teamID), "legacy_user").Result()
		if errors.Is(err, redis.Nil) {
			return "", nil
		}
	}
	if err != nil {
		return "", fmt.Errorf("read team %s: %w", teamID, err)
	}
	return id, nil
}

// AdoptLegacyTeams adopts every team of the version before members as a
// team of one, and returns how many it adopted now. It is safe to run
// again, and from several processes at once.
func (s *Store) AdoptLegacyTeams(ctx context.Context) (int, error) {
	adopted := 0
	iter := s.rdb.Scan(ctx, 0, prefix+"team:*", 500).Iterator()
	for iter.Next(ctx) {
		key := iter.Val()
		id := strings.TrimPrefix(key, prefix+"team:")
		if strings.Contains(id, ":") {
			continue // a team's submissions, members or invites
		}
		has, err := s.rdb.HExists(ctx, key, "captain").Result()
		if err != nil {
			return adopted, fmt.Errorf("read team %s: %w", id, err)
		}
		if has {
			continue
		}
		uid, err := s.adoptLegacyTeam(ctx, id)
		if err != nil {
			return adopted, err
		}
		if uid != "" {
			adopted++
		}
	}
	if err := iter.Err(); err != nil {
		return adopted, fmt.Errorf("list teams: %w", err)
	}
	return adopted, nil
}
