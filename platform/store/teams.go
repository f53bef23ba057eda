package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// Roles a team account can have.
const (
	RoleParticipant = "participant"
	RoleOrganizer   = "organizer"
)

// Team is a registered team (or the organizer account).
type Team struct {
	ID           string
	Name         string
	PasswordHash string
	Role         string
	CreatedAt    time.Time
	// TokenGeneration counts password changes: a token issued for an
	// earlier generation is revoked. (Teams of the version before members
	// only; a member's tokens follow the member's generation.)
	TokenGeneration int64
	// Captain is the user who may invite and remove members ("" on a team
	// of the version before members, until it is adopted).
	Captain string
	// ActingMember is the member a request acts for (a user name); an
	// upload records it. It is not stored with the team.
	ActingMember string
}

// createTeamScript claims the name and writes the team in one step, so two
// concurrent registrations of one name cannot both succeed.
var createTeamScript = redis.NewScript(`
if redis.call('SETNX', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], 'id', ARGV[1], 'name', ARGV[2], 'password_hash', ARGV[3], 'role', ARGV[4], 'created_at', ARGV[5])
return 1
`)

// CreateTeam writes a team as the version before members did: one account,
// its password on the team, no people (AdoptLegacyTeams makes it a team
// of one). Tests use it to write that version's data; registrations use
// RegisterTeamOfOne. ErrNameTaken if the name (case-insensitive) exists.
func (s *Store) CreateTeam(ctx context.Context, name, passwordHash, role string) (Team, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return Team{}, fmt.Errorf("new team id: %w", err)
	}
	t := Team{ID: id.String(), Name: name, PasswordHash: passwordHash, Role: role, CreatedAt: time.Now().UTC()}
	ok, err := createTeamScript.Run(ctx, s.rdb, []string{teamNameKey(name), teamKey(t.ID)},
		t.ID, t.Name, t.PasswordHash, t.Role, t.CreatedAt.Format(time.RFC3339Nano)).Int()
	if err != nil {
		return Team{}, fmt.Errorf("create team %q: %w", name, err)
	}
	if ok == 0 {
		return Team{}, ErrNameTaken
	}
	return t, nil
}

// TeamByName looks a team up by name (case-insensitive).
func (s *Store) TeamByName(ctx context.Context, name string) (Team, error) {
	id, err := s.rdb.Get(ctx, teamNameKey(name)).Result()
	if errors.Is(err, redis.Nil) {
		return Team{}, ErrNotFound
	}
	if err != nil {
		return Team{}, fmt.Errorf("look up team %q: %w", name, err)
	}
	return s.Team(ctx, id)
}

// Team loads a team by id.
func (s *Store) Team(ctx context.Context, id string) (Team, error) {
	m, err := s.rdb.HGetAll(ctx, teamKey(id)).Result()
	if err != nil {
		return Team{}, fmt.Errorf("load team %s: %w", id, err)
	}
	if len(m) == 0 {
		return Team{}, ErrNotFound
	}
	created, _ := time.Parse(time.RFC3339Nano, m["created_at"])
	gen, _ := strconv.ParseInt(m["token_gen"], 10, 64) // absent on teams made before it existed: 0
	return Team{ID: m["id"], Name: m["name"], PasswordHash: m["password_hash"], Role: m["role"], CreatedAt: created, TokenGeneration: gen, Captain: m["captain"]}, nil
}

// changePasswordScript replaces the hash only if it is still the one the
// caller checked, and starts a new token generation.
var changePasswordScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return -2 end
if redis.call('HGET', KEYS[1], 'password_hash') ~= ARGV[1] then return -1 end
redis.call('HSET', KEYS[1], 'password_hash', ARGV[2])
return redis.call('HINCRBY', KEYS[1], 'token_gen', 1)
`)

// ErrPasswordChanged is a password change that lost a race with another.
var ErrPasswordChanged = errors.New("the password was changed meanwhile")

// ChangePassword sets a team's password hash as the version before
// members did (tests write that version's data with it; members change
// theirs with ChangeUserPassword), provided the old one is still oldHash,
// and returns the team's new token generation.
func (s *Store) ChangePassword(ctx context.Context, teamID, oldHash, newHash string) (int64, error) {
	gen, err := changePasswordScript.Run(ctx, s.rdb, []string{teamKey(teamID)}, oldHash, newHash).Int64()
	if err != nil {
		return 0, fmt.Errorf("change password of team %s: %w", teamID, err)
	}
	switch gen {
	case -2:
		return 0, ErrNotFound
	case -1:
		return 0, ErrPasswordChanged
	}
	return gen, nil
}
