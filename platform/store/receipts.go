package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

func receiptKey(id string) string        { return prefix + "receipt:" + id }
func receiptHistoryKey(id string) string { return prefix + "receipt:" + id + ":replaced" }

// StoredReceipt is a submission's current receipt: its id, the envelope as
// issued (JSON), and the salt of its private commitment (secret until the
// reveal).
type StoredReceipt struct {
	ID, Envelope, Salt string
}

// ErrReceiptChanged: another process replaced the receipt first.
var ErrReceiptChanged = errors.New("the receipt was replaced meanwhile")

// putReceiptScript keeps the first receipt issued for a submission (a
// second issuer gets the first's back), or, replacing, swaps the current
// one for the new only while it is the one the caller read, keeping the
// old in the submission's list of replaced receipts.
var putReceiptScript = redis.NewScript(`
local cur = redis.call('HGET', KEYS[1], 'id')
if ARGV[4] == '' then
  if cur then return redis.call('HMGET', KEYS[1], 'id', 'envelope', 'salt') end
elseif cur ~= ARGV[4] then
  return false
else
  redis.call('RPUSH', KEYS[2], redis.call('HGET', KEYS[1], 'envelope'))
end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'envelope', ARGV[2], 'salt', ARGV[3])
return {ARGV[1], ARGV[2], ARGV[3]}
`)

// PutReceipt stores r as the submission's receipt. With replaces empty it
// is the first one, unless one was stored already: that one is returned.
// Otherwise it replaces the receipt named replaces (ErrReceiptChanged when
// that is not the current one any more).
func (s *Store) PutReceipt(ctx context.Context, submissionID string, r StoredReceipt, replaces string) (StoredReceipt, error) {
	out, err := putReceiptScript.Run(ctx, s.rdb, []string{receiptKey(submissionID), receiptHistoryKey(submissionID)}, r.ID, r.Envelope, r.Salt, replaces).StringSlice()
	if errors.Is(err, redis.Nil) {
		return StoredReceipt{}, ErrReceiptChanged
	}
	if err != nil || len(out) != 3 {
		return StoredReceipt{}, fmt.Errorf("store the receipt of submission %s: %v %w", submissionID, out, err)
	}
	return StoredReceipt{ID: out[0], Envelope: out[1], Salt: out[2]}, nil
}

// Receipt is the submission's current receipt; ErrNotFound before one was
// issued.
func (s *Store) Receipt(ctx context.Context, submissionID string) (StoredReceipt, error) {
	m, err := s.rdb.HGetAll(ctx, receiptKey(submissionID)).Result()
	if err != nil {
		return StoredReceipt{}, fmt.Errorf("read the receipt of submission %s: %w", submissionID, err)
	}
	if m["id"] == "" {
		return StoredReceipt{}, ErrNotFound
	}
	return StoredReceipt{ID: m["id"], Envelope: m["envelope"], Salt: m["salt"]}, nil
}

// ReplacedReceipts are the envelopes a submission's receipts replaced,
// oldest first.
func (s *Store) ReplacedReceipts(ctx context.Context, submissionID string) ([]string, error) {
	out, err := s.rdb.LRange(ctx, receiptHistoryKey(submissionID), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("read the replaced receipts of submission %s: %w", submissionID, err)
	}
	return out, nil
}
