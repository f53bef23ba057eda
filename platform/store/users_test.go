package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestATeamOfTheVersionBeforeMembersIsAdoptedAsATeamOfOne(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	// Written as that version wrote it: the password on the team.
	old, err := s.CreateTeam(ctx, "Old Team", "hash-1", RoleParticipant)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ChangePassword(ctx, old.ID, "hash-1", "hash-2"); err != nil {
		t.Fatal(err)
	}
	sub, err := s.Enqueue(ctx, "ch", old, "sha", 1)
	if err != nil {
		t.Fatal(err)
	}
	n, err := s.AdoptLegacyTeams(ctx)
	if err != nil || n != 1 {
		t.Fatalf("adopted %d, %v; want 1", n, err)
	}
	if n, err := s.AdoptLegacyTeams(ctx); err != nil || n != 0 {
		t.Fatalf("adopted again %d, %v; want 0", n, err)
	}
	u, err := s.UserByName(ctx, "old team")
	if err != nil {
		t.Fatal(err)
	}
	if u.Name != "Old Team" || u.PasswordHash != "hash-2" || u.TokenGeneration != 1 || u.TeamID != old.ID || u.Role != RoleParticipant {
		t.Fatalf("adopted user %+v", u)
	}
	if id, err := s.LegacyUser(ctx, old.ID); err != nil || id != u.ID {
		t.Fatalf("legacy user %q, %v; want %q", id, err, u.ID)
	}
	members, err := s.Members(ctx, old.ID)
	if err != nil || len(members) != 1 || !members[0].Captain || members[0].Name != "Old Team" {
		t.Fatalf("members %+v, %v", members, err)
	}
	subs, err := s.TeamSubmissions(ctx, old.ID, 10)
	if err != nil || len(subs) != 1 || subs[0].ID != sub.ID {
		t.Fatalf("the team's submissions after adoption: %v, %v", subs, err)
	}
	// A team of this version is not adopted: it has people already.
	if _, _, err := s.RegisterTeamOfOne(ctx, "New", "h", RoleParticipant); err != nil {
		t.Fatal(err)
	}
	if n, err := s.AdoptLegacyTeams(ctx); err != nil || n != 0 {
		t.Fatalf("adopted a new team: %d, %v", n, err)
	}
}

func TestJoinsAtOnceNeverOverfillATeam(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	captain, team, err := s.RegisterTeamOfOne(ctx, "cap", "h", RoleParticipant)
	if err != nil {
		t.Fatal(err)
	}
	inv, err := s.CreateInvite(ctx, team, captain, 20, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	results := make([]error, 20)
	for i := range results {
		u, err := s.CreateUser(ctx, fmt.Sprintf("p%d", i), "h", RoleParticipant)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, results[i] = s.JoinTeam(ctx, u, inv.Code, 4)
		}()
	}
	wg.Wait()
	joined, full := 0, 0
	for _, err := range results {
		switch {
		case err == nil:
			joined++
		case errors.Is(err, ErrTeamFull):
			full++
		default:
			t.Fatalf("join: %v", err)
		}
	}
	if n, _ := s.MemberCount(ctx, team.ID); joined != 3 || full != 17 || n != 4 {
		t.Fatalf("%d joined, %d full, %d members; want 3, 17, 4", joined, full, n)
	}
	left, err := s.rdb.HGet(ctx, inviteKey(inv.Code), "uses_left").Int()
	if err != nil || left != 17 {
		t.Fatalf("uses left %d, %v; want 17 (a refused join spends none)", left, err)
	}
	// Not the captain: no invite.
	other, err := s.User(ctx, s.mustUserID(t, "p0"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateInvite(ctx, team, other, 1, time.Now().Add(time.Hour)); !errors.Is(err, ErrNotCaptain) {
		t.Fatalf("a member's invite: %v", err)
	}
}

func TestAnExpiredInviteLetsNoOneIn(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	captain, team, err := s.RegisterTeamOfOne(ctx, "cap", "h", RoleParticipant)
	if err != nil {
		t.Fatal(err)
	}
	inv, err := s.CreateInvite(ctx, team, captain, 5, time.Now().Add(-time.Second))
	if err != nil {
		t.Fatal(err)
	}
	u, err := s.CreateUser(ctx, "late", "h", RoleParticipant)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.JoinTeam(ctx, u, inv.Code, 5); !errors.Is(err, ErrInvalidInvite) {
		t.Fatalf("an expired invite: %v", err)
	}
}

func (s *Store) mustUserID(t *testing.T, name string) string {
	t.Helper()
	id, err := s.rdb.Get(context.Background(), userNameKey(name)).Result()
	if err != nil {
		t.Fatal(err)
	}
	return id
}
