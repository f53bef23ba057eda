// Package images builds Hackarena's container images from files on this
// machine, with no registry: a root filesystem written as a tar (static
// binaries, or dynamic programs with the shared libraries ldd names for
// them) and imported with docker import.
package images

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
)

// ContentLabel holds an image's content digest, so a rebuild with no
// change finds the image it would make and stops there.
const ContentLabel = "io.hackarena.content"

// Spec is one image.
type Spec struct {
	// Name is the repository, e.g. "hackarena-redis".
	Name string
	// Files maps a path in the image to a file on this machine.
	Files map[string]string
	// Trees maps a folder in the image to a folder on this machine, copied
	// whole (regular files and folders).
	Trees map[string]string
	// Contents maps a path in the image to its bytes (configuration).
	Contents map[string]string
	// Programs are dynamic executables (paths in the image, also in
	// Files): the shared libraries ldd lists for them come along.
	Programs []string
	// Dirs are empty folders, with their modes.
	Dirs map[string]fs.FileMode
	// Changes are the Dockerfile instructions docker import applies (CMD,
	// ENV, EXPOSE, USER, LABEL, HEALTHCHECK is not one of them).
	Changes []string
}

// Built says what Build did.
type Built struct {
	Tags    []string
	Digest  string
	Bytes   int64
	Skipped bool // an image with this content was there already
}

// entry is one file of the root filesystem.
type entry struct {
	mode fs.FileMode
	data []byte
	dir  bool
}

// rootfs collects the image's files, libraries included.
func (s *Spec) rootfs() (map[string]entry, error) {
	files := map[string]entry{}
	addDirs := func(p string) {
		for d := path.Dir(p); d != "/" && d != "."; d = path.Dir(d) {
			if _, ok := files[d]; !ok {
				files[d] = entry{dir: true, mode: 0o755}
			}
		}
	}
	add := func(p string, e entry) {
		addDirs(p)
		files[p] = e
	}
	for dst, src := range s.Files {
		data, err := os.ReadFile(src)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", s.Name, err)
		}
		fi, err := os.Stat(src)
		if err != nil {
			return nil, err
		}
		add(dst, entry{mode: fi.Mode().Perm(), data: data})
	}
	for dst, src := range s.Trees {
		err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(src, p)
			target := path.Join(dst, filepath.ToSlash(rel))
			switch {
			case d.IsDir():
				add(target, entry{dir: true, mode: 0o755})
			case d.Type().IsRegular():
				data, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				add(target, entry{mode: 0o644, data: data})
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("image %s: copy %s: %w", s.Name, src, err)
		}
	}
	for dst, content := range s.Contents {
		add(dst, entry{mode: 0o644, data: []byte(content)})
	}
	for dir, mode := range s.Dirs {
		add(dir, entry{dir: true, mode: mode})
	}
	for _, prog := range s.Programs {
		libs, err := sharedLibraries(s.Files[prog])
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", s.Name, err)
		}
		for _, lib := range libs {
			real, err := filepath.EvalSymlinks(lib)
			if err != nil {
				return nil, err
			}
			data, err := os.ReadFile(real)
			if err != nil {
				return nil, err
			}
			add(lib, entry{mode: 0o755, data: data})
		}
	}
	return files, nil
}

// sharedLibraries are the absolute paths ldd resolves for a dynamic
// program, the loader included; a static one has none.
func sharedLibraries(program string) ([]string, error) {
	out, err := exec.Command("ldd", program).CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "not a dynamic executable") {
			return nil, nil
		}
		return nil, fmt.Errorf("ldd %s: %v: %s", program, err, out)
	}
	var libs []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/"):
			libs = append(libs, f[2])
		case len(f) >= 1 && strings.HasPrefix(f[0], "/"):
			libs = append(libs, f[0]) // the loader
		case strings.Contains(line, "not found"):
			return nil, fmt.Errorf("ldd %s: %s", program, strings.TrimSpace(line))
		}
	}
	return libs, nil
}

// tarball writes files in name order with fixed times, so the same
// files make the same bytes and digest.
func tarball(files map[string]entry) ([]byte, error) {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0)
	for _, n := range names {
		e := files[n]
		h := &tar.Header{Name: strings.TrimPrefix(n, "/"), Mode: int64(e.mode), ModTime: epoch, Format: tar.FormatPAX}
		switch {
		case e.dir:
			h.Typeflag, h.Name = tar.TypeDir, h.Name+"/"
			h.Mode = int64(e.mode.Perm())
			if e.mode&fs.ModeSticky != 0 {
				h.Mode |= 0o1000
			}
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, err
		}
	}
	err := tw.Close()
	return buf.Bytes(), err
}

// Build makes the image and tags it name:version and name:local. When an
// image with the same content is tagged name:version already, nothing is
// imported.
func Build(ctx context.Context, cli *client.Client, s *Spec, version string) (Built, error) {
	files, err := s.rootfs()
	if err != nil {
		return Built{}, err
	}
	tarBytes, err := tarball(files)
	if err != nil {
		return Built{}, err
	}
	sum := sha256.New()
	sum.Write(tarBytes)
	for _, c := range s.Changes {
		io.WriteString(sum, c+"\n")
	}
	digest := hex.EncodeToString(sum.Sum(nil))[:16]
	tags := []string{s.Name + ":" + version, s.Name + ":local"}
	b := Built{Tags: tags, Digest: digest, Bytes: int64(len(tarBytes))}
	if inspect, err := cli.ImageInspect(ctx, tags[0]); err == nil && inspect.Config != nil && inspect.Config.Labels[ContentLabel] == digest {
		b.Skipped = true
		return b, cli.ImageTag(ctx, tags[0], tags[1])
	}
	changes := append([]string{"LABEL " + ContentLabel + "=" + digest}, s.Changes...)
	rc, err := cli.ImageImport(ctx, image.ImportSource{Source: bytes.NewReader(tarBytes), SourceName: "-"}, tags[0], image.ImportOptions{Changes: changes})
	if err != nil {
		return b, fmt.Errorf("import image %s: %w", tags[0], err)
	}
	defer rc.Close()
	if _, err := io.Copy(io.Discard, rc); err != nil {
		return b, fmt.Errorf("import image %s: %w", tags[0], err)
	}
	return b, cli.ImageTag(ctx, tags[0], tags[1])
}
