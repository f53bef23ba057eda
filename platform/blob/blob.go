// Package blob stores uploaded plugin binaries content-addressed by sha256.
package blob

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
)

// ErrTooLarge means the content exceeded the size limit while streaming.
var ErrTooLarge = errors.New("content exceeds the size limit")

// ErrNoSpace means the store's filesystem is full (or the store's quota
// is used up): nothing was kept.
var ErrNoSpace = errors.New("the blob store's disk is full")

// IsNoSpace reports whether err is a filesystem out of space or quota.
func IsNoSpace(err error) bool {
	return errors.Is(err, ErrNoSpace) || errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// noSpace marks err as ErrNoSpace when it is one.
func noSpace(err error) error {
	if err != nil && IsNoSpace(err) && !errors.Is(err, ErrNoSpace) {
		return fmt.Errorf("%w: %w", ErrNoSpace, err)
	}
	return err
}

// Store is a directory of blobs named by their sha256.
type Store struct {
	dir string
}

// New returns a store rooted at dir (created on first Put).
func New(dir string) *Store { return &Store{dir: dir} }

// Dir is the store's directory: a folder per two-hex-digit prefix, and
// tmp/ for uploads being received.
func (s *Store) Dir() string { return s.dir }

// Path is where the blob with the given hex sha256 lives.
func (s *Store) Path(sum string) string {
	if len(sum) < 2 {
		return filepath.Join(s.dir, "invalid")
	}
	return filepath.Join(s.dir, sum[:2], sum)
}

// Stage streams r into a temporary file, at most limit bytes, hashing as it
// goes. The caller inspects the staged file and then Commits or Discards it.
func (s *Store) Stage(r io.Reader, limit int64) (*Staged, error) {
	if err := os.MkdirAll(filepath.Join(s.dir, "tmp"), 0o750); err != nil {
		return nil, noSpace(fmt.Errorf("create blob dir: %w", err))
	}
	f, err := os.CreateTemp(filepath.Join(s.dir, "tmp"), "upload-*")
	if err != nil {
		return nil, noSpace(fmt.Errorf("create upload file: %w", err))
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(r, limit+1))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		// Nothing partial is left behind, whatever broke the copy.
		_ = os.Remove(f.Name())
		return nil, noSpace(fmt.Errorf("receive upload: %w", err))
	}
	if n > limit {
		_ = os.Remove(f.Name())
		return nil, ErrTooLarge
	}
	return &Staged{store: s, tmp: f.Name(), SHA256: hex.EncodeToString(h.Sum(nil)), Size: n}, nil
}

// Staged is an upload received but not yet stored.
type Staged struct {
	store  *Store
	tmp    string
	SHA256 string
	Size   int64
}

// TempPath is the staged file, for inspection.
func (b *Staged) TempPath() string { return b.tmp }

// Commit moves the staged file to its content address. The same content
// uploaded twice is stored once.
func (b *Staged) Commit() (string, error) {
	dst := b.store.Path(b.SHA256)
	if err := os.MkdirAll(filepath.Dir(dst), 0o750); err != nil {
		return "", noSpace(fmt.Errorf("create blob dir: %w", err))
	}
	if err := os.Chmod(b.tmp, 0o555); err != nil {
		return "", fmt.Errorf("make blob executable: %w", err)
	}
	if err := os.Rename(b.tmp, dst); err != nil {
		return "", noSpace(fmt.Errorf("store blob %s: %w", b.SHA256, err))
	}
	return dst, nil
}

// Discard removes the staged file.
func (b *Staged) Discard() { _ = os.Remove(b.tmp) }
