package store

import (
	"context"
	"errors"
	"fmt"
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
}

// createTeamScript claims the name and writes the team in one step, so two
// concurrent registrations of one name cannot both succeed.
var createTeamScript = redis.NewScript(`
if redis.call('SETNX', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], 'id', ARGV[1], 'name', ARGV[2], 'password_hash', ARGV[3], 'role', ARGV[4], 'created_at', ARGV[5])
return 1
`)

// CreateTeam registers a team; ErrNameTaken if the name (case-insensitive)
// exists.
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
	return Team{ID: m["id"], Name: m["name"], PasswordHash: m["password_hash"], Role: m["role"], CreatedAt: created}, nil
}
