// Package blob stores uploaded plugin binaries content-addressed by sha256.
package blob

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"
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

// Each calls fn with every stored blob's sha256 and file (not the uploads
// still being received), until fn fails.
func (s *Store) Each(fn func(sum string, info fs.FileInfo) error) error {
	shards, err := os.ReadDir(s.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list the blob store: %w", err)
	}
	for _, shard := range shards {
		if !shard.IsDir() || len(shard.Name()) != 2 {
			continue // tmp/, and anything that is not a shard
		}
		files, err := os.ReadDir(filepath.Join(s.dir, shard.Name()))
		if err != nil {
			return fmt.Errorf("list the blob store: %w", err)
		}
		for _, f := range files {
			info, err := f.Info()
			if err != nil || !info.Mode().IsRegular() {
				continue
			}
			if err := fn(f.Name(), info); err != nil {
				return err
			}
		}
	}
	return nil
}

// Remove deletes a stored blob; one already gone is no error.
func (s *Store) Remove(sum string) error {
	if err := os.Remove(s.Path(sum)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove blob %s: %w", sum, err)
	}
	return nil
}

// RemoveStaleUploads deletes the uploads still being received that were
// last written before cutoff (a crash's leftovers) and returns their
// sizes.
func (s *Store) RemoveStaleUploads(cutoff time.Time) []int64 {
	var removed []int64
	tmp := filepath.Join(s.dir, "tmp")
	files, _ := os.ReadDir(tmp)
	for _, f := range files {
		info, err := f.Info()
		if err != nil || !info.Mode().IsRegular() || !info.ModTime().Before(cutoff) {
			continue
		}
		if os.Remove(filepath.Join(tmp, f.Name())) == nil {
			removed = append(removed, info.Size())
		}
	}
	return removed
}

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
