package challenges

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/hackarena/hackarena/judge/scoring"
)

// SpecFileName is the challenge definition inside a challenge's folder.
const SpecFileName = "challenge.json"

// Spec is a challenge definition as an organizer writes it: the
// challenge.json of a folder under challenges/, or the body of the
// organizer's PUT /api/v1/challenges/{slug}.
type Spec struct {
	Title string `json:"title"`
	// Description is markdown; in a folder it may instead live in the file
	// DescriptionFile names.
	Description     string      `json:"description,omitempty"`
	DescriptionFile string      `json:"description_file,omitempty"`
	Task            string      `json:"task"`
	Input           string      `json:"input"`
	Classes         int         `json:"classes,omitempty"`
	Dataset         DatasetSpec `json:"dataset"`
	Split           SplitSpec   `json:"split"`
	// Validation is the part of the public training data `hackctl eval`
	// judges a plugin on; zero values take the defaults.
	Validation    ValidationSpec `json:"validation"`
	Metrics       []string       `json:"metrics"`
	PrimaryMetric string         `json:"primary_metric"`
	Direction     string         `json:"direction"`
	Limits        LimitsSpec     `json:"limits"`
	Schedule      ScheduleSpec   `json:"schedule"`
	// FinalSubmissions is how many of a team's submissions count on the
	// private board: those it selects, or by default its best by public
	// score (0: DefaultFinalSubmissions).
	FinalSubmissions int `json:"final_submissions,omitempty"`
	// TieBreaker is the resource that ranks equal scores, before the
	// submission time does (a key of TieBreakers; "" for none).
	TieBreaker string `json:"tie_breaker,omitempty"`
	// TeamSize is the most members a team submitting to the challenge may
	// have (0: DefaultTeamSize).
	TeamSize int `json:"team_size,omitempty"`
	// KeepPredictions is how long the judges' kept predictions of its
	// submissions stay: KeepAlways (the default, "") or KeepUntilClose,
	// after which a rescore can no longer use them.
	KeepPredictions string `json:"keep_predictions,omitempty"`
}

// How long kept predictions stay (Spec.KeepPredictions).
const (
	KeepAlways     = "always"
	KeepUntilClose = "until_close"
)

// DefaultTeamSize is how many people a team may have when a spec does not
// say.
const DefaultTeamSize = 5

// MaxTeamSize bounds team_size.
const MaxTeamSize = 50

// Members is the most members a team submitting to the challenge may have.
func (s Spec) Members() int {
	if s.TeamSize == 0 {
		return DefaultTeamSize
	}
	return s.TeamSize
}

// TieBreakers are what a spec may break ties by after its primary metric:
// resources a run used, each true when higher is better.
var TieBreakers = map[string]bool{
	"judging_seconds": false, "peak_memory_bytes": false, "engine_seconds": false, "binary_bytes": false, "examples_per_second": true,
}

// DefaultFinalSubmissions is how many submissions count at the end when a
// spec does not say (Kaggle's default too).
const DefaultFinalSubmissions = 2

// Finals is how many submissions count on the private board.
func (s Spec) Finals() int {
	if s.FinalSubmissions == 0 {
		return DefaultFinalSubmissions
	}
	return s.FinalSubmissions
}

// DatasetSpec says where a challenge's data comes from and how to read it.
type DatasetSpec struct {
	// Format selects the reader: mnist-idx, imdb-jsonl or csv-table.
	Format string `json:"format"`
	// Source is "gomnist" (the pinned Go module) or "datasets" (the
	// HACKARENA_DATASETS directory, sub-directory Dir).
	Source string     `json:"source"`
	Dir    string     `json:"dir,omitempty"`
	Files  []FileSpec `json:"files"`
	// csv-table only: the target column, columns participants never see,
	// columns that look numeric but are codes, and how many rows become
	// public training data (the rest is the hidden test set).
	Target      string   `json:"target,omitempty"`
	Drop        []string `json:"drop,omitempty"`
	Categorical []string `json:"categorical,omitempty"`
	TrainRows   int      `json:"train_rows,omitempty"`
}

// FileSpec is one data file, pinned by its sha256.
type FileSpec struct {
	Name   string `json:"name"`
	Role   string `json:"role"`
	SHA256 string `json:"sha256"`
	// URL, when set, is where a missing file is fetched from.
	URL string `json:"url,omitempty"`
}

// SplitSpec defines the hidden set's public/private split.
type SplitSpec struct {
	Seed           uint64  `json:"seed"`
	PublicFraction float64 `json:"public_fraction"`
}

// ValidationSpec picks the training examples `hackctl eval` judges on:
// Rows of them (default: a sixth of the training data, at most 5,000),
// chosen by Seed (default 1). It is public: participants may hold these
// rows out of training.
type ValidationSpec struct {
	Rows int    `json:"rows,omitempty"`
	Seed uint64 `json:"seed,omitempty"`
}

// LimitsSpec bounds one team and one submission.
type LimitsSpec struct {
	SubmissionsPerDay int    `json:"submissions_per_day"`
	MaxBinaryMB       int64  `json:"max_binary_mb"`
	WallTime          string `json:"wall_time"`
	MemoryMB          int64  `json:"memory_mb"`
	// Logs is who sees what the plugin prints once it has hidden inputs:
	// "private" (default) or "full" (see LogsPrivate, LogsFull).
	Logs string `json:"logs,omitempty"`
}

// Log policies of a challenge (limits.logs).
const (
	// LogsPrivate: the team sees what its plugin printed before the first
	// hidden batch and the judge's failure message; everything after, which
	// may quote hidden inputs, is for organizers only.
	LogsPrivate = "private"
	// LogsFull: the team sees its plugin's whole (capped) log, for
	// practice challenges whose hidden inputs need not stay private.
	LogsFull = "full"
)

// ScheduleSpec is when a challenge opens, closes and reveals its private
// board; each is RFC 3339 or empty for "no such time".
type ScheduleSpec struct {
	Opens  string `json:"opens,omitempty"`
	Closes string `json:"closes,omitempty"`
	Reveal string `json:"reveal,omitempty"`
}

// SpecError is an invalid challenge definition; it names the file (or API
// call) and the field.
type SpecError struct {
	File  string
	Field string
	Msg   string
}

func (e *SpecError) Error() string {
	if e.Field == "" {
		return e.File + ": " + e.Msg
	}
	return e.File + ": " + e.Field + ": " + e.Msg
}

// DecodeSpec reads a spec strictly: unknown keys, trailing data and wrong
// types are errors naming file.
func DecodeSpec(file string, r io.Reader) (Spec, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var s Spec
	if err := dec.Decode(&s); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return Spec{}, &SpecError{File: file, Field: typeErr.Field, Msg: fmt.Sprintf("want a %s, got a JSON %s", typeErr.Type, typeErr.Value)}
		}
		msg := err.Error()
		if strings.HasPrefix(msg, "json: unknown field ") {
			msg = "unknown key " + strings.TrimPrefix(msg, "json: unknown field ") + " (check its spelling against the keys in challenges/README.md)"
		}
		return Spec{}, &SpecError{File: file, Msg: msg}
	}
	if dec.More() {
		return Spec{}, &SpecError{File: file, Msg: "trailing data after the JSON object"}
	}
	return s, nil
}

var (
	slugPattern   = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,39}$`)
	sha256Pattern = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// ValidSlug reports whether s can name a challenge (URL path and Redis key
// safe).
func ValidSlug(s string) bool { return slugPattern.MatchString(s) }

// formatRoles are the file roles each dataset format reads.
var formatRoles = map[string][]string{
	"mnist-idx":  {"train_images", "train_labels", "test_images", "test_labels"},
	"imdb-jsonl": {"train", "test"},
	"csv-table":  {"all"},
}

// formatInput is the input kind each format produces.
var formatInput = map[string]string{"mnist-idx": "image", "imdb-jsonl": "text", "csv-table": "table"}

// Validate checks a decoded spec; every error names file and field.
func (s Spec) Validate(file string) error {
	bad := func(field, format string, args ...any) error {
		return &SpecError{File: file, Field: field, Msg: fmt.Sprintf(format, args...)}
	}
	if strings.TrimSpace(s.Title) == "" {
		return bad("title", "must not be empty")
	}
	if s.Description == "" && s.DescriptionFile == "" {
		return bad("description", "give a markdown description or a description_file")
	}
	switch s.Task {
	case scoring.TaskClassification:
		if s.Classes < 2 {
			return bad("classes", "a classification task needs at least 2 classes, got %d", s.Classes)
		}
	case scoring.TaskRegression:
		if s.Classes != 0 {
			return bad("classes", "a regression task has no classes; remove the key")
		}
	default:
		return bad("task", "%q is not classification or regression", s.Task)
	}
	roles, ok := formatRoles[s.Dataset.Format]
	if !ok {
		return bad("dataset.format", "%q is not one of mnist-idx, imdb-jsonl, csv-table", s.Dataset.Format)
	}
	if s.Input != formatInput[s.Dataset.Format] {
		return bad("input", "%q does not match dataset format %s, which gives %q input", s.Input, s.Dataset.Format, formatInput[s.Dataset.Format])
	}
	switch s.Dataset.Source {
	case "gomnist":
		if s.Dataset.Format != "mnist-idx" {
			return bad("dataset.source", "gomnist only has mnist-idx data")
		}
	case "datasets":
		if s.Dataset.Dir == "" || path.Clean(s.Dataset.Dir) != s.Dataset.Dir || strings.HasPrefix(s.Dataset.Dir, "/") || strings.HasPrefix(s.Dataset.Dir, "..") {
			return bad("dataset.dir", "%q must be a relative directory under HACKARENA_DATASETS", s.Dataset.Dir)
		}
	default:
		return bad("dataset.source", "%q is not gomnist or datasets", s.Dataset.Source)
	}
	seenRoles := map[string]bool{}
	for i, f := range s.Dataset.Files {
		field := fmt.Sprintf("dataset.files[%d]", i)
		if f.Name == "" || path.Base(f.Name) != f.Name || f.Name == "." || f.Name == ".." {
			return bad(field+".name", "%q must be a plain file name", f.Name)
		}
		if !slices.Contains(roles, f.Role) {
			return bad(field+".role", "%q is not a role of format %s (roles: %v)", f.Role, s.Dataset.Format, roles)
		}
		if seenRoles[f.Role] {
			return bad(field+".role", "role %q is given twice", f.Role)
		}
		seenRoles[f.Role] = true
		if !sha256Pattern.MatchString(f.SHA256) {
			return bad(field+".sha256", "%q is not 64 lower-case hex digits", f.SHA256)
		}
		if f.URL != "" && !strings.HasPrefix(f.URL, "http://") && !strings.HasPrefix(f.URL, "https://") {
			return bad(field+".url", "%q is not an http(s) URL", f.URL)
		}
	}
	for _, r := range roles {
		if !seenRoles[r] {
			return bad("dataset.files", "format %s needs a file with role %q", s.Dataset.Format, r)
		}
	}
	if s.Dataset.Format == "csv-table" {
		if s.Dataset.Target == "" {
			return bad("dataset.target", "a csv-table needs the target column")
		}
		if s.Dataset.TrainRows <= 0 {
			return bad("dataset.train_rows", "must be positive, got %d", s.Dataset.TrainRows)
		}
	} else if s.Dataset.Target != "" || len(s.Dataset.Drop) > 0 || len(s.Dataset.Categorical) > 0 || s.Dataset.TrainRows != 0 {
		return bad("dataset", "target, drop, categorical and train_rows apply to csv-table only")
	}
	if s.Validation.Rows < 0 {
		return bad("validation.rows", "must not be negative, got %d", s.Validation.Rows)
	}
	if s.Split.PublicFraction <= 0 || s.Split.PublicFraction >= 1 {
		return bad("split.public_fraction", "must be between 0 and 1 (exclusive), got %v", s.Split.PublicFraction)
	}
	if len(s.Metrics) == 0 {
		return bad("metrics", "list at least one metric")
	}
	for i, m := range s.Metrics {
		info, ok := scoring.Metrics[m]
		field := fmt.Sprintf("metrics[%d]", i)
		switch {
		case !ok || info.Task != s.Task:
			return bad(field, "%q is not a %s metric (known: %v)", m, s.Task, scoring.MetricNames(s.Task))
		case info.BinaryOnly && s.Classes != 2:
			return bad(field, "%q needs two classes; use its macro_ form for %d classes", m, s.Classes)
		case slices.Index(s.Metrics, m) != i:
			return bad(field, "%q is listed twice", m)
		}
	}
	if !slices.Contains(s.Metrics, s.PrimaryMetric) {
		return bad("primary_metric", "%q is not one of metrics %v", s.PrimaryMetric, s.Metrics)
	}
	want := "lower_is_better"
	if scoring.Metrics[s.PrimaryMetric].HigherIsBetter {
		want = "higher_is_better"
	}
	if s.Direction != want {
		return bad("direction", "%q is wrong for %s, which is %s", s.Direction, s.PrimaryMetric, want)
	}
	if _, ok := TieBreakers[s.TieBreaker]; s.TieBreaker != "" && !ok {
		names := slices.Sorted(maps.Keys(TieBreakers))
		return bad("tie_breaker", "%q is not a resource a board can break ties by: one of %v, or leave it out", s.TieBreaker, names)
	}
	if s.KeepPredictions != "" && s.KeepPredictions != KeepAlways && s.KeepPredictions != KeepUntilClose {
		return bad("keep_predictions", "%q is not %q or %q (or left out for %q)", s.KeepPredictions, KeepAlways, KeepUntilClose, KeepAlways)
	}
	if s.KeepPredictions == KeepUntilClose && s.Schedule.Closes == "" {
		return bad("keep_predictions", "%q needs schedule.closes: the challenge never closes", KeepUntilClose)
	}
	if s.TeamSize < 0 || s.TeamSize > MaxTeamSize {
		return bad("team_size", "must be 1..%d (or left out for %d), got %d", MaxTeamSize, DefaultTeamSize, s.TeamSize)
	}
	if s.FinalSubmissions < 0 || s.FinalSubmissions > 20 {
		return bad("final_submissions", "must be 1..20 (or left out for %d), got %d", DefaultFinalSubmissions, s.FinalSubmissions)
	}
	if s.Limits.SubmissionsPerDay <= 0 {
		return bad("limits.submissions_per_day", "must be positive, got %d", s.Limits.SubmissionsPerDay)
	}
	if s.Limits.MaxBinaryMB <= 0 || s.Limits.MaxBinaryMB > 1024 {
		return bad("limits.max_binary_mb", "must be 1..1024, got %d", s.Limits.MaxBinaryMB)
	}
	if d, err := time.ParseDuration(s.Limits.WallTime); err != nil || d <= 0 {
		return bad("limits.wall_time", "%q is not a positive duration such as \"5m\"", s.Limits.WallTime)
	}
	switch s.Limits.Logs {
	case "", LogsPrivate, LogsFull:
	default:
		return bad("limits.logs", "%q is not a log policy: use \"private\" (the default: teams see only what their plugin printed before the first hidden batch) or \"full\"", s.Limits.Logs)
	}
	// A Go plugin needs about 600 MiB of address space just to start.
	if s.Limits.MemoryMB < 256 {
		return bad("limits.memory_mb", "must be at least 256, got %d", s.Limits.MemoryMB)
	}
	var opens, closes time.Time
	for _, t := range []struct {
		field, value string
		into         *time.Time
	}{{"schedule.opens", s.Schedule.Opens, &opens}, {"schedule.closes", s.Schedule.Closes, &closes}, {"schedule.reveal", s.Schedule.Reveal, nil}} {
		if t.value == "" {
			continue
		}
		parsed, err := time.Parse(time.RFC3339, t.value)
		if err != nil {
			return bad(t.field, "%q is not an RFC 3339 time such as 2026-12-01T00:00:00Z", t.value)
		}
		if t.into != nil {
			*t.into = parsed
		}
	}
	if !opens.IsZero() && !closes.IsZero() && !closes.After(opens) {
		return bad("schedule.closes", "%s is not after opens %s", s.Schedule.Closes, s.Schedule.Opens)
	}
	return nil
}

// HigherIsBetter is the primary metric's direction.
func (s Spec) HigherIsBetter() bool { return s.Direction == "higher_is_better" }

// SHA256 is the hash of the spec's JSON (Go's encoding: fields in their
// declared order), which a receipt pins the challenge by.
func (s Spec) SHA256() string {
	raw, _ := json.Marshal(s)
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:])
}

// ReadSpecDir reads and validates the spec in fsys/dir, inlining the
// description file.
func ReadSpecDir(fsys fs.FS, dir, displayDir string) (Spec, error) {
	file := path.Join(displayDir, SpecFileName)
	raw, err := fs.ReadFile(fsys, path.Join(dir, SpecFileName))
	if err != nil {
		return Spec{}, &SpecError{File: file, Msg: fmt.Sprintf("cannot read: %v", err)}
	}
	spec, err := DecodeSpec(file, bytes.NewReader(raw))
	if err != nil {
		return Spec{}, err
	}
	if err := spec.Validate(file); err != nil {
		return Spec{}, err
	}
	if spec.DescriptionFile != "" {
		if path.Base(spec.DescriptionFile) != spec.DescriptionFile {
			return Spec{}, &SpecError{File: file, Field: "description_file", Msg: fmt.Sprintf("%q must be a file in the challenge's folder", spec.DescriptionFile)}
		}
		desc, err := fs.ReadFile(fsys, path.Join(dir, spec.DescriptionFile))
		if err != nil {
			return Spec{}, &SpecError{File: file, Field: "description_file", Msg: fmt.Sprintf("cannot read %s: %v", spec.DescriptionFile, err)}
		}
		spec.Description, spec.DescriptionFile = string(desc), ""
	}
	return spec, nil
}
