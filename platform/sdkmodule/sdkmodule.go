// Package sdkmodule serves this repository's participant SDK as a Go
// module over the module proxy protocol, so a plugin folder made by
// `hackctl init` builds on a machine with only Go and hackctl: our module
// is on no public proxy.
package sdkmodule

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Path is the module path plugins import the SDK by.
const Path = "github.com/hackarena/hackarena"

// Module is one version of the SDK module, made from a source tree.
type Module struct {
	Version string
	Time    time.Time
	Mod     []byte
	Zip     []byte
}

// pseudoTime is the fixed time of every version's pseudo-version: the
// version is named by its content alone, so the same SDK is the same
// version on every server and after every restart.
var pseudoTime = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// FromSource makes the module from the repository at root: its go.mod
// and the packages under sdk/ (without commands and tests, which need the
// rest of the repository).
func FromSource(root string) (*Module, error) {
	mod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		return nil, fmt.Errorf("SDK source %s: %w", root, err)
	}
	if !bytes.HasPrefix(bytes.TrimSpace(mod), []byte("module "+Path+"\n")) {
		return nil, fmt.Errorf("SDK source %s: its go.mod is not module %s", root, Path)
	}
	var files []string
	err = filepath.WalkDir(filepath.Join(root, "sdk"), func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel == "sdk/cmd" || strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" {
				return filepath.SkipDir
			}
			return nil
		}
		if d.Type().IsRegular() && !strings.HasSuffix(rel, "_test.go") {
			files = append(files, rel)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("SDK source %s: %w", root, err)
	}
	slices.Sort(files)
	h := sha256.New()
	contents := map[string][]byte{"go.mod": mod}
	for _, rel := range append([]string{"go.mod"}, files...) {
		if contents[rel] == nil {
			if contents[rel], err = os.ReadFile(filepath.Join(root, rel)); err != nil {
				return nil, fmt.Errorf("SDK source: %w", err)
			}
		}
		fmt.Fprintf(h, "%s\x00%d\x00", rel, len(contents[rel]))
		h.Write(contents[rel])
	}
	m := &Module{Time: pseudoTime, Mod: mod,
		Version: "v0.0.0-" + pseudoTime.Format("20060102150405") + "-" + hex.EncodeToString(h.Sum(nil))[:12]}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, rel := range append([]string{"go.mod"}, files...) {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: Path + "@" + m.Version + "/" + rel, Method: zip.Deflate, Modified: pseudoTime})
		if err != nil {
			return nil, err
		}
		if _, err := w.Write(contents[rel]); err != nil {
			return nil, err
		}
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	m.Zip = buf.Bytes()
	return m, nil
}

// FindSource is the repository holding this SDK: dir given, else the
// nearest folder above the working directory or this executable whose
// go.mod is module Path.
func FindSource(dir string) (string, error) {
	if dir != "" {
		return dir, nil
	}
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if exe, err := os.Executable(); err == nil {
		starts = append(starts, filepath.Dir(exe))
	}
	for _, start := range starts {
		for d := start; ; d = filepath.Dir(d) {
			if raw, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && bytes.HasPrefix(raw, []byte("module "+Path+"\n")) {
				return d, nil
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	return "", errors.New("no checkout of " + Path + " above the working directory or the executable")
}

// Answer is the module proxy's answer to GET <prefix>/<rest>: rest is
// "<module path>/@v/list", "…/@v/<version>.info|.mod|.zip" or
// "…/@latest". ok is false for anything this proxy does not serve (another
// module, another version), which the go command then asks the next proxy
// in GOPROXY for.
func (m *Module) Answer(rest string) (body []byte, contentType string, ok bool) {
	after, found := strings.CutPrefix(rest, Path+"/")
	if !found {
		return nil, "", false
	}
	info, _ := json.Marshal(struct {
		Version string
		Time    time.Time
	}{m.Version, m.Time})
	switch after {
	case "@v/list":
		return []byte(m.Version + "\n"), "text/plain; charset=utf-8", true
	case "@latest", "@v/" + m.Version + ".info":
		return info, "application/json", true
	case "@v/" + m.Version + ".mod":
		return m.Mod, "text/plain; charset=utf-8", true
	case "@v/" + m.Version + ".zip":
		return m.Zip, "application/zip", true
	}
	return nil, "", false
}
