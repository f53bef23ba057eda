// Package receipts issues the platform's signed receipts of judged
// submissions, and keeps the ed25519 key that signs them.
package receipts

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hackarena/hackarena/platform/store"
	"github.com/hackarena/hackarena/sdk/receipt"
)

// LoadKey is the signing key: from value (HACKARENA_RECEIPT_KEY: a base64
// ed25519 seed of 32 bytes) when set, else from the file at path, which is
// created (mode 0600) when missing. Processes sharing a data dir that start
// at once end up with the same key: the file is made whole under a
// temporary name and linked into place, and whoever loses that race reads
// the winner's.
func LoadKey(value, path string) (ed25519.PrivateKey, error) {
	if value != "" {
		key, err := parseSeed(value)
		if err != nil {
			return nil, fmt.Errorf("HACKARENA_RECEIPT_KEY: %w", err)
		}
		return key, nil
	}
	raw, err := os.ReadFile(path)
	if err == nil {
		key, err := parseSeed(string(raw))
		if err != nil {
			return nil, fmt.Errorf("receipt key %s: %w (restore it from a backup: receipts signed with it can no longer be checked against a new one)", path, err)
		}
		return key, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read receipt key: %w", err)
	}
	seed := make([]byte, ed25519.SeedSize)
	if _, err := rand.Read(seed); err != nil {
		return nil, fmt.Errorf("generate receipt key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create data dir for the receipt key: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".receipt-key-*")
	if err != nil {
		return nil, fmt.Errorf("write receipt key: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.WriteString(base64.StdEncoding.EncodeToString(seed) + "\n")
	if err == nil {
		err = tmp.Chmod(0o600)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("write receipt key: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("write receipt key: %w", err)
	}
	return LoadKey("", path)
}

func parseSeed(s string) (ed25519.PrivateKey, error) {
	seed, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("not a base64 ed25519 seed of %d bytes", ed25519.SeedSize)
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// Issuer signs and keeps receipts.
type Issuer struct {
	Key   ed25519.PrivateKey
	Store *store.Store
}

// PublicKey is the key anyone checks receipts with.
func (i *Issuer) PublicKey() receipt.PublicKey {
	pub := i.Key.Public().(ed25519.PublicKey)
	return receipt.PublicKey{Algorithm: "ed25519", Key: base64.StdEncoding.EncodeToString(pub), KeyID: receipt.KeyID(pub)}
}

// ErrNotFinal: a submission gets its receipt once it is judged.
var ErrNotFinal = errors.New("the submission has not been judged yet")

// Current returns sub's receipt, issuing its first when it has none. With
// disclose (the private board is revealed) the envelope carries the
// private metrics that open its commitment.
func (i *Issuer) Current(ctx context.Context, sub store.Submission, disclose bool) (receipt.Envelope, error) {
	if !sub.Final() {
		return receipt.Envelope{}, ErrNotFinal
	}
	stored, err := i.Store.Receipt(ctx, sub.ID)
	if errors.Is(err, store.ErrNotFound) {
		var fresh store.StoredReceipt
		if fresh, err = i.issue(sub, ""); err == nil {
			stored, err = i.Store.PutReceipt(ctx, sub.ID, fresh, "")
		}
	}
	if err != nil {
		return receipt.Envelope{}, err
	}
	return open(stored, sub, disclose)
}

// Reissue replaces sub's receipt, when it has one, with a receipt of its
// record as it is now (after a rescore) that names the one it replaces.
func (i *Issuer) Reissue(ctx context.Context, sub store.Submission) error {
	for try := 0; try < 5; try++ {
		old, err := i.Store.Receipt(ctx, sub.ID)
		if errors.Is(err, store.ErrNotFound) {
			return nil // the first one will be issued from the new record
		}
		if err != nil {
			return err
		}
		fresh, err := i.issue(sub, old.ID)
		if err != nil {
			return err
		}
		if _, err = i.Store.PutReceipt(ctx, sub.ID, fresh, old.ID); !errors.Is(err, store.ErrReceiptChanged) {
			return err
		}
	}
	return fmt.Errorf("reissue the receipt of submission %s: it kept changing", sub.ID)
}

func (i *Issuer) issue(sub store.Submission, replaces string) (store.StoredReceipt, error) {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return store.StoredReceipt{}, fmt.Errorf("issue a receipt: %w", err)
	}
	id, salt := hex.EncodeToString(raw[:16]), hex.EncodeToString(raw[16:])
	body := receipt.Body{
		ID: id, Replaces: replaces, SubmissionID: sub.ID, Team: sub.TeamName, Challenge: sub.Challenge,
		SpecRevision: sub.Revision, SpecSHA256: sub.Stamp.SpecSHA256, Datasets: []receipt.DatasetFile{},
		PluginSHA256: sub.SHA256, JudgeVersion: sub.JudgeVersion, Sandbox: sub.Sandbox,
		Status: sub.Status, Reason: sub.Reason, FinishedAt: sub.FinishedAt.UTC(), IssuedAt: time.Now().UTC(),
	}
	for _, f := range sub.Stamp.Datasets {
		body.Datasets = append(body.Datasets, receipt.DatasetFile{Name: f.Name, Role: f.Role, SHA256: f.SHA256})
	}
	if m := sub.Metrics; m != nil {
		body.Public = m.Public
		if len(m.Private) > 0 {
			commitment, _, err := receipt.Commit(salt, m.Private)
			if err != nil {
				return store.StoredReceipt{}, err
			}
			body.PrivateCommitment = commitment
		}
	}
	env, err := receipt.Sign(i.Key, body)
	if err != nil {
		return store.StoredReceipt{}, err
	}
	raw, err = json.Marshal(env)
	if err != nil {
		return store.StoredReceipt{}, fmt.Errorf("encode a receipt: %w", err)
	}
	return store.StoredReceipt{ID: id, Envelope: string(raw), Salt: salt}, nil
}

// open decodes a stored envelope, adding the disclosure when asked: the
// private metrics the receipt committed to, from the record.
func open(stored store.StoredReceipt, sub store.Submission, disclose bool) (receipt.Envelope, error) {
	var env receipt.Envelope
	if err := json.Unmarshal([]byte(stored.Envelope), &env); err != nil {
		return env, fmt.Errorf("decode the receipt of submission %s: %w", sub.ID, err)
	}
	if disclose && sub.Metrics != nil && len(sub.Metrics.Private) > 0 {
		_, d, err := receipt.Commit(stored.Salt, sub.Metrics.Private)
		if err != nil {
			return env, err
		}
		env.Disclosure = &d
	}
	return env, nil
}
