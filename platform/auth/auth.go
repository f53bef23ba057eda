// Package auth hashes team passwords and issues and verifies the platform's
// JWT bearer tokens.
package auth

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
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
	TeamID    string
	TeamName  string
	Role      string
	ExpiresAt time.Time
}

type jwtClaims struct {
	jwt.RegisteredClaims
	Name string `json:"name"`
	Role string `json:"role"`
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

// Issue mints a token for a team.
func (t *Tokens) Issue(teamID, name, role string) (string, time.Time, error) {
	now := time.Now()
	exp := now.Add(t.ttl).UTC().Truncate(time.Second)
	claims := jwtClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: Issuer, Audience: jwt.ClaimStrings{Audience}, Subject: teamID,
			IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(exp),
		},
		Name: name, Role: role,
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
	return Claims{TeamID: claims.Subject, TeamName: claims.Name, Role: claims.Role, ExpiresAt: claims.ExpiresAt.Time}, nil
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

// HashPassword hashes with bcrypt.
func HashPassword(password string) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(h), nil
}

// CheckPassword reports whether password matches hash.
func CheckPassword(hash, password string) bool {
	return bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) == nil
}
