// Package receipt is the signed record of a judged submission: what was
// judged (submission, team, plugin, challenge revision and data), by what
// (judge version, sandbox) and with what result. The platform signs it with
// ed25519; anyone can check one offline with the platform's public key
// (hackctl verify), and a changed byte fails the check.
package receipt

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Version is the receipt format this package writes and reads.
const Version = 1

// Body is what a receipt says. It is signed as the exact bytes of its JSON
// (the envelope's payload), so no verifier has to re-encode it.
type Body struct {
	Version int `json:"version"`
	// ID names this receipt; Replaces, the receipt a rescore replaced.
	ID           string `json:"id"`
	Replaces     string `json:"replaces,omitempty"`
	SubmissionID string `json:"submission_id"`
	Team         string `json:"team"`
	Challenge    string `json:"challenge"`
	// SpecRevision is the challenge's spec revision the result was computed
	// under, SpecSHA256 the hash of that spec (canonical JSON).
	SpecRevision int64         `json:"spec_revision"`
	SpecSHA256   string        `json:"spec_sha256"`
	Datasets     []DatasetFile `json:"datasets"`
	PluginSHA256 string        `json:"plugin_sha256"`
	JudgeVersion string        `json:"judge_version"`
	Sandbox      string        `json:"sandbox"`
	Status       string        `json:"status"`
	Reason       string        `json:"reason,omitempty"`
	// Public are the metrics on the public half. The private half's stay
	// secret until the reveal; PrivateCommitment binds them now (the
	// sha256 of the disclosure's salt and metrics, see Disclosure).
	Public            map[string]float64 `json:"public_metrics,omitempty"`
	PrivateCommitment string             `json:"private_commitment,omitempty"`
	FinishedAt        time.Time          `json:"finished_at"`
	IssuedAt          time.Time          `json:"issued_at"`
}

// DatasetFile is one data file of the challenge, pinned by its hash.
type DatasetFile struct {
	Name   string `json:"name"`
	Role   string `json:"role"`
	SHA256 string `json:"sha256"`
}

// Envelope is a receipt as it travels: the body's JSON, its signature and
// which key made it, and after the reveal the private metrics that open
// the body's commitment.
type Envelope struct {
	Payload    string      `json:"payload"`
	Signature  string      `json:"signature"`
	KeyID      string      `json:"key_id"`
	Disclosure *Disclosure `json:"disclosure,omitempty"`
}

// Disclosure opens a receipt's private commitment once the private board
// is revealed: sha256(salt || Metrics) must be the commitment, Metrics
// being the private metrics' JSON exactly as committed to (so a verifier
// hashes these bytes and need not encode numbers as Go does).
type Disclosure struct {
	Salt    string `json:"salt"`
	Metrics string `json:"private_metrics"`
}

// Private decodes the disclosed metrics.
func (d Disclosure) Private() (map[string]float64, error) {
	var m map[string]float64
	if err := json.Unmarshal([]byte(d.Metrics), &m); err != nil {
		return nil, fmt.Errorf("the disclosed private metrics are not a JSON object of numbers: %w", err)
	}
	return m, nil
}

// KeyID names a public key: the first 16 bytes of its sha256, in hex.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:16])
}

// Commit is the commitment to private metrics under salt, and the
// disclosure that opens it.
func Commit(salt string, private map[string]float64) (string, Disclosure, error) {
	raw, err := json.Marshal(private)
	if err != nil {
		return "", Disclosure{}, fmt.Errorf("encode private metrics: %w", err)
	}
	d := Disclosure{Salt: salt, Metrics: string(raw)}
	return d.commitment(), d, nil
}

func (d Disclosure) commitment() string {
	sum := sha256.Sum256([]byte(d.Salt + d.Metrics))
	return hex.EncodeToString(sum[:])
}

// Sign makes an envelope of body with key.
func Sign(key ed25519.PrivateKey, body Body) (Envelope, error) {
	body.Version = Version
	payload, err := json.Marshal(body)
	if err != nil {
		return Envelope{}, fmt.Errorf("encode receipt: %w", err)
	}
	return Envelope{
		Payload:   base64.StdEncoding.EncodeToString(payload),
		Signature: base64.StdEncoding.EncodeToString(ed25519.Sign(key, payload)),
		KeyID:     KeyID(key.Public().(ed25519.PublicKey)),
	}, nil
}

// Errors of a check.
var (
	// ErrBadSignature: the receipt was not signed by the key, or was
	// changed after it was signed.
	ErrBadSignature = errors.New("the signature does not match: the receipt was changed, or another key signed it")
	// ErrWrongKey: the receipt names another key than the one given.
	ErrWrongKey = errors.New("the receipt was signed by another key than the one given")
	// ErrBadDisclosure: the disclosed private metrics are not those the
	// receipt committed to.
	ErrBadDisclosure = errors.New("the disclosed private metrics do not match the receipt's commitment")
)

// Verify checks env against pub and returns its body: the signature over
// the payload, then, when the envelope discloses private metrics, that
// they open the body's commitment.
func Verify(env Envelope, pub ed25519.PublicKey) (Body, error) {
	if len(pub) != ed25519.PublicKeySize {
		return Body{}, fmt.Errorf("the public key is %d bytes, not an ed25519 key's %d", len(pub), ed25519.PublicKeySize)
	}
	if env.KeyID != KeyID(pub) {
		return Body{}, fmt.Errorf("%w (the receipt names key %s, the one given is %s)", ErrWrongKey, env.KeyID, KeyID(pub))
	}
	payload, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		return Body{}, fmt.Errorf("the payload is not base64: %w", err)
	}
	sig, err := base64.StdEncoding.DecodeString(env.Signature)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return Body{}, ErrBadSignature
	}
	if !ed25519.Verify(pub, payload, sig) {
		return Body{}, ErrBadSignature
	}
	var body Body
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		return Body{}, fmt.Errorf("the signed payload is not a receipt: %w", err)
	}
	if body.Version != Version {
		return Body{}, fmt.Errorf("receipt format %d; this verifier reads format %d", body.Version, Version)
	}
	if d := env.Disclosure; d != nil {
		if _, err := d.Private(); err != nil || d.commitment() != body.PrivateCommitment {
			return Body{}, ErrBadDisclosure
		}
	}
	return body, nil
}

// PublicKey is the platform's published key, as its well-known path
// serves it.
type PublicKey struct {
	Algorithm string `json:"algorithm"`
	Key       string `json:"public_key"`
	KeyID     string `json:"key_id"`
}

// Parse decodes a published key.
func (p PublicKey) Parse() (ed25519.PublicKey, error) {
	if p.Algorithm != "ed25519" {
		return nil, fmt.Errorf("key algorithm %q, not ed25519", p.Algorithm)
	}
	raw, err := base64.StdEncoding.DecodeString(p.Key)
	if err != nil || len(raw) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("the public key is not a base64 ed25519 key")
	}
	return ed25519.PublicKey(raw), nil
}

// WellKnownPath is where the platform serves its PublicKey.
const WellKnownPath = "/.well-known/hackarena-receipt-key"
