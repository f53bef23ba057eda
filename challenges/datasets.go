package challenges

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// Env is where a challenge's data files are found.
type Env struct {
	// Datasets is the data mirror directory (HACKARENA_DATASETS); a
	// spec's dataset.dir is looked up under it.
	Datasets string
	// Cache receives files fetched from a spec's URL; it is searched after
	// Datasets.
	Cache string
	// MNISTDir overrides the GoMNIST module's data directory.
	MNISTDir string
	// HTTP fetches missing files; nil means a client with a 10-minute
	// timeout.
	HTTP *http.Client
}

// ChecksumError is a data file whose content is not the pinned one.
type ChecksumError struct {
	Path      string
	Got, Want string
}

func (e *ChecksumError) Error() string {
	return fmt.Sprintf("data file %s has sha256 %s, but the challenge pins %s: replace it with the original (or fix the sha256 in the spec if the data changed on purpose)", e.Path, e.Got, e.Want)
}

// hashFile returns a file's size and sha256.
func hashFile(path string) (int64, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return 0, "", fmt.Errorf("read data file %s: %w", path, err)
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

// checkFile verifies a file against its pinned sha256.
func checkFile(path, wantSHA string) (DataFile, error) {
	n, got, err := hashFile(path)
	if err != nil {
		return DataFile{}, fmt.Errorf("data file %s: %w", path, err)
	}
	if got != wantSHA {
		return DataFile{}, &ChecksumError{Path: path, Got: got, Want: wantSHA}
	}
	return DataFile{Name: filepath.Base(path), Bytes: n, SHA256: got, Path: path}, nil
}

// resolve finds a spec's file under dir in the mirror or the cache, and
// fetches it into the cache from its URL when it is in neither. The file
// it returns has the pinned sha256.
func (e Env) resolve(ctx context.Context, dir string, f FileSpec) (DataFile, error) {
	var tried []string
	for _, root := range []string{e.Datasets, e.Cache} {
		if root == "" {
			continue
		}
		p := filepath.Join(root, dir, f.Name)
		if _, err := os.Stat(p); err == nil {
			return checkFile(p, f.SHA256)
		}
		tried = append(tried, p)
	}
	if f.URL == "" || e.Cache == "" {
		return DataFile{}, fmt.Errorf("data file %s is missing (looked in %v): set HACKARENA_DATASETS to the directory that holds %s/%s", f.Name, tried, dir, f.Name)
	}
	dst := filepath.Join(e.Cache, dir, f.Name)
	if err := e.fetch(ctx, f.URL, dst, f.SHA256); err != nil {
		return DataFile{}, fmt.Errorf("data file %s is missing (looked in %v) and fetching it failed: %w", f.Name, tried, err)
	}
	return checkFile(dst, f.SHA256)
}

// fetch downloads url to dst, checking length and sha256 before the file
// takes its name, so a truncated or wrong download never looks like data.
func (e Env) fetch(ctx context.Context, url, dst, wantSHA string) error {
	client := e.HTTP
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Minute}
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("create dataset cache: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("fetch %s: %w", url, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("fetch %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetch %s: server answered %s", url, resp.Status)
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".fetch-*")
	if err != nil {
		return fmt.Errorf("fetch %s: %w", url, err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), resp.Body)
	if err != nil {
		// net/http reports a body shorter than Content-Length as
		// io.ErrUnexpectedEOF.
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("fetch %s: download truncated after %d of %d bytes; try again", url, n, resp.ContentLength)
		}
		return fmt.Errorf("fetch %s: %w", url, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != wantSHA {
		return fmt.Errorf("fetch %s: downloaded %d bytes with sha256 %s, but the challenge pins %s: the mirror serves other data (or a truncated file)", url, n, got, wantSHA)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("fetch %s: %w", url, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("fetch %s: %w", url, err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return fmt.Errorf("fetch %s: %w", url, err)
	}
	return nil
}

// FindDatasets returns the data mirror directory: HACKARENA_DATASETS when
// set, else the first "shared/datasets" found beside the working directory
// or one of its parents (the layout of a development checkout), else "".
func FindDatasets() string {
	if dir := os.Getenv("HACKARENA_DATASETS"); dir != "" {
		return dir
	}
	wd, err := os.Getwd()
	if err != nil {
		return ""
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		candidate := filepath.Join(filepath.Dir(dir), "shared", "datasets")
		if st, err := os.Stat(candidate); err == nil && st.IsDir() {
			return candidate
		}
		if filepath.Dir(dir) == dir {
			return ""
		}
	}
}
