// Package auth hashes users' passwords and issues and verifies the platform's
// JWT bearer tokens.
package auth

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/crypto/bcrypt"
)

// Token claims are checked against these, so a token minted for another
// service with the same secret is refused.
const (
	Issuer   = "hackarena"
	Audience = "hackarena-api"
)

// ErrInvalidToken is returned for any token that does not verify; the
// wrapped error says why.
var ErrInvalidToken = errors.New("invalid token")

// Claims are what a token says about its bearer.
type Claims struct {
	// UserID and UserName are the person the token was issued to; empty in
	// a token of the version before members, which names its team only.
	UserID   string
	UserName string
	// TeamID and TeamName are the team the token acts for ("" for a user
	// in no team yet).
	TeamID    string
	TeamName  string
	Role      string
	ExpiresAt time.Time
	// Generation is the user's (in a token of the version before members,
	// the team's) token generation when the token was issued; a password
	// change or leaving the team starts a new one and revokes the older.
	Generation int64
}

// Identity is whom a token is issued to.
type Identity struct {
	UserID, UserName, TeamID, TeamName, Role string
}

// jwtClaims: the subject is the user; the version before members made it
// the team and had no "uid".
type jwtClaims struct {
	jwt.RegisteredClaims
	Name string `json:"name"`
	Role string `json:"role"`
	Gen  int64  `json:"gen,omitempty"`
	UID  string `json:"uid,omitempty"`
	User string `json:"user,omitempty"`
	Team string `json:"tid,omitempty"`
}

// Tokens issues and verifies HS256 tokens.
type Tokens struct {
	secret []byte
	ttl    time.Duration
}

// NewTokens uses secret (at least 32 bytes) and a token lifetime.
func NewTokens(secret []byte, ttl time.Duration) (*Tokens, error) {
	if len(secret) < 32 {
		return nil, fmt.Errorf("JWT secret has %d bytes; use at least 32", len(secret))
	}
	return &Tokens{secret: secret, ttl: ttl}, nil
}

// Issue mints a token for a user acting for their team, at the user's
// token generation gen.
func (t *Tokens) Issue(who Identity, gen int64) (string, time.Time, error) {
	now := time.Now()
	exp := now.Add(t.ttl).UTC().Truncate(time.Second)
	claims := jwtClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: Issuer, Audience: jwt.ClaimStrings{Audience}, Subject: who.UserID,
			IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(exp),
		},
		Name: who.TeamName, Role: who.Role, Gen: gen, UID: who.UserID, User: who.UserName, Team: who.TeamID,
	}
	signed, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(t.secret)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("sign token: %w", err)
	}
	return signed, exp, nil
}

// Verify checks signature (HS256 only), expiry, issuer and audience.
func (t *Tokens) Verify(token string) (Claims, error) {
	var claims jwtClaims
	_, err := jwt.ParseWithClaims(token, &claims, func(*jwt.Token) (any, error) { return t.secret, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithIssuer(Issuer), jwt.WithAudience(Audience), jwt.WithExpirationRequired(),
		jwt.WithLeeway(5*time.Second))
	if err != nil {
		return Claims{}, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	if claims.Subject == "" {
		return Claims{}, fmt.Errorf("%w: no subject", ErrInvalidToken)
	}
	out := Claims{TeamName: claims.Name, Role: claims.Role, ExpiresAt: claims.ExpiresAt.Time, Generation: claims.Gen}
	if claims.UID == "" {
		out.TeamID = claims.Subject // the version before members
	} else {
		out.UserID, out.UserName, out.TeamID = claims.UID, claims.User, claims.Team
	}
	return out, nil
}

// LoadOrCreateSecret reads the secret kept at path, or generates one and
// keeps it there with mode 0600, so tokens survive a restart.
func LoadOrCreateSecret(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err == nil {
		secret := []byte(strings.TrimSpace(string(data)))
		if len(secret) < 32 {
			return nil, fmt.Errorf("JWT secret in %s is too short: delete the file to generate a new one", path)
		}
		return secret, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read JWT secret: %w", err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, fmt.Errorf("generate JWT secret: %w", err)
	}
	secret := []byte(hex.EncodeToString(raw))
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create data dir for JWT secret: %w", err)
	}
	if err := os.WriteFile(path, append(secret, '\n'), 0o600); err != nil {
		return nil, fmt.Errorf("write JWT secret: %w", err)
	}
	return secret, nil
}

// ErrBusy is a password hash that could not start before its caller's
// deadline: every hashing slot was taken.
var ErrBusy = errors.New("too many password checks at once")

// hashSlots bounds concurrent bcrypt hashes in this process: each takes a
// core for tens of milliseconds, and a flood of logins must leave the
// other cores to health checks, uploads and event streams.
var hashSlots = make(chan struct{}, max(1, runtime.NumCPU()/2))

// withHashSlot runs f in a hashing slot; before, when set, runs once the
// slot is taken and may refuse (a throttle that locked while the caller
// waited), so a queued flood costs no hashes.
func withHashSlot(ctx context.Context, before func() error, f func()) error {
	select {
	case hashSlots <- struct{}{}:
	case <-ctx.Done():
		return ErrBusy
	}
	defer func() { <-hashSlots }()
	if before != nil {
		if err := before(); err != nil {
			return err
		}
	}
	f()
	return nil
}

// hashCost is the bcrypt cost of new hashes; a check uses the cost its
// hash was made with.
var hashCost atomic.Int32

func init() { hashCost.Store(int32(bcrypt.DefaultCost)) }

// SetHashCost sets the bcrypt cost of passwords hashed from now on
// (HACKARENA_PASSWORD_COST): each step doubles the work of a check.
func SetHashCost(cost int) error {
	if cost < bcrypt.MinCost || cost > bcrypt.MaxCost {
		return fmt.Errorf("password hash cost must be %d to %d, got %d", bcrypt.MinCost, bcrypt.MaxCost, cost)
	}
	hashCost.Store(int32(cost))
	return nil
}

// HashPassword hashes with bcrypt, in one of the process's hashing slots.
func HashPassword(ctx context.Context, password string) (string, error) {
	var h []byte
	var err error
	if slotErr := withHashSlot(ctx, nil, func() { h, err = bcrypt.GenerateFromPassword([]byte(password), int(hashCost.Load())) }); slotErr != nil {
		return "", slotErr
	}
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(h), nil
}

// CheckPassword reports whether password matches hash, checked in one of
// the process's hashing slots; ErrBusy if none came free before ctx ended.
// refuse, when set, runs once a slot is taken, and an error from it is
// returned instead of checking.
func CheckPassword(ctx context.Context, hash, password string, refuse func() error) (bool, error) {
	var ok bool
	if err := withHashSlot(ctx, refuse, func() { ok = bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) == nil }); err != nil {
		return false, err
	}
	return ok, nil
}
