package store

import (
	"context"
	"errors"
	"sync"
	"testing"
)

// TestAnUploadSentAgainWithItsKeyIsOneSubmission: a client whose answer
// was dropped sends the same upload with the same Idempotency-Key, even
// from several connections at once; it gets the first submission back,
// and only one is queued, listed and charged to the quota. The same key
// with another binary is refused; no key, or another team's same key, is
// a new submission.
func TestAnUploadSentAgainWithItsKeyIsOneSubmission(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	team, _ := s.CreateTeam(ctx, "t", "h", RoleParticipant)
	other, _ := s.CreateTeam(ctx, "o", "h", RoleParticipant)
	_ = s.EnsureGroups(ctx, []string{"ch"})
	first, replayed, err := s.EnqueueOnce(ctx, "ch", team, "sha-a", 1, 5, "key-1")
	if err != nil || replayed {
		t.Fatalf("first: %+v %v %v", first, replayed, err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			again, replayed, err := s.EnqueueOnce(ctx, "ch", team, "sha-a", 1, 5, "key-1")
			if err != nil || !replayed || again.ID != first.ID {
				t.Errorf("sent again: %+v replayed %v, %v; want %s", again, replayed, err, first.ID)
			}
		}()
	}
	wg.Wait()
	queued, _ := s.rdb.XLen(ctx, queueKey("ch")).Result()
	listed, _ := s.rdb.ZCard(ctx, teamSubsKey(team.ID)).Result()
	used, _ := s.QuotaUsed(ctx, "ch", team.ID, first.QuotaDay)
	if queued != 1 || listed != 1 || used != 1 {
		t.Fatalf("queued %d, listed %d, quota used %d; want 1 each", queued, listed, used)
	}
	if _, _, err := s.EnqueueOnce(ctx, "ch", team, "sha-b", 1, 5, "key-1"); !errors.Is(err, ErrIdempotencyConflict) {
		t.Fatalf("the key with another binary: %v", err)
	}
	if sub, replayed, err := s.EnqueueOnce(ctx, "ch", other, "sha-a", 1, 5, "key-1"); err != nil || replayed || sub.ID == first.ID {
		t.Fatalf("another team's same key: %+v %v %v", sub, replayed, err)
	}
	if sub, replayed, err := s.EnqueueOnce(ctx, "ch", team, "sha-a", 1, 5, ""); err != nil || replayed || sub.ID == first.ID {
		t.Fatalf("no key: %+v %v %v", sub, replayed, err)
	}
}
