package challenges

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"time"
)

// Builtin holds the platform's own challenge folders (mnist, imdb, houses),
// embedded so the server runs from any directory.
//
//go:embed */challenge.json */*.md
var Builtin embed.FS

// Build makes a challenge from a valid spec. Data that is missing or does
// not match its sha256 makes the challenge unavailable, with the reason,
// rather than failing: the other challenges keep working.
func Build(ctx context.Context, slug string, spec Spec, env Env) *Challenge {
	c := &Challenge{
		Slug: slug, Title: spec.Title, Description: spec.Description, Task: spec.Task, Input: spec.Input,
		Metrics: append([]string(nil), spec.Metrics...), PrimaryMetric: spec.PrimaryMetric,
		HigherIsBetter: spec.HigherIsBetter(), Finals: spec.Finals(), NumClasses: spec.Classes, Status: StatusOpen, Spec: spec,
	}
	wall, _ := time.ParseDuration(spec.Limits.WallTime)
	c.Limits = Limits{
		MaxBinaryBytes: spec.Limits.MaxBinaryMB << 20, SubmissionsPerDay: spec.Limits.SubmissionsPerDay,
		WallTime: wall, WallTimeSeconds: wall.Seconds(), MemoryBytes: spec.Limits.MemoryMB << 20,
		Logs: spec.Limits.Logs,
	}
	if c.Limits.Logs == "" {
		c.Limits.Logs = LogsPrivate
	}
	c.OpensAt, _ = parseOptionalTime(spec.Schedule.Opens)
	c.ClosesAt, _ = parseOptionalTime(spec.Schedule.Closes)
	c.RevealAt, _ = parseOptionalTime(spec.Schedule.Reveal)

	files, err := resolveFiles(ctx, spec.Dataset, env)
	if err == nil {
		switch spec.Dataset.Format {
		case "mnist-idx":
			err = buildMNIST(c, files)
		case "imdb-jsonl":
			err = buildIMDB(c, files)
		case "csv-table":
			err = buildTable(c, files)
		default:
			err = fmt.Errorf("unknown dataset format %q", spec.Dataset.Format)
		}
	}
	if err != nil {
		c.Status, c.StatusReason, c.Data, c.loadHidden = StatusUnavailable, err.Error(), nil, nil
	}
	return c
}

// Unavailable is a challenge whose spec could not be read; it is listed with
// the reason so organizers see what to fix.
func Unavailable(slug string, err error) *Challenge {
	return &Challenge{Slug: slug, Title: slug, Status: StatusUnavailable, StatusReason: err.Error(), Metrics: []string{}}
}

func parseOptionalTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	return time.Parse(time.RFC3339, s)
}

// resolveFiles finds and checks every file of a dataset, by role.
func resolveFiles(ctx context.Context, ds DatasetSpec, env Env) (map[string]DataFile, error) {
	out := map[string]DataFile{}
	dir := ds.Dir
	if ds.Source == "gomnist" {
		mnistDir, err := LocateMNIST(ctx, env.MNISTDir)
		if err != nil {
			return nil, err
		}
		env = Env{Datasets: mnistDir}
		dir = ""
	}
	for _, f := range ds.Files {
		df, err := env.resolve(ctx, dir, f)
		if err != nil {
			return nil, err
		}
		out[f.Role] = df
	}
	return out, nil
}

// LoadAll builds a registry from every challenge folder in fsys (display
// names the folder root in errors). A folder whose spec is invalid gives an
// unavailable challenge naming the problem; the others load normally.
func LoadAll(ctx context.Context, fsys fs.FS, display string, env Env) (*Registry, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("read challenge folders in %s: %w", display, err)
	}
	var slugs []string
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		if _, err := fs.Stat(fsys, path.Join(e.Name(), SpecFileName)); err != nil {
			continue // not a challenge folder (testdata, say)
		}
		slugs = append(slugs, e.Name())
	}
	if len(slugs) == 0 {
		return nil, fmt.Errorf("no challenge folders (with %s) in %s", SpecFileName, display)
	}
	sort.Strings(slugs)
	reg := NewRegistry()
	for _, slug := range slugs {
		folder := path.Join(display, slug)
		if !ValidSlug(slug) {
			reg.Put(Unavailable(slug, &SpecError{File: folder, Msg: "a challenge folder name must be lower-case letters, digits and dashes"}))
			continue
		}
		spec, err := ReadSpecDir(fsys, slug, folder)
		if err != nil {
			reg.Put(Unavailable(slug, err))
			continue
		}
		reg.Put(Build(ctx, slug, spec, env))
	}
	return reg, nil
}
