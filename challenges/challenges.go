// Package challenges defines the platform's challenges from organizers' spec
// files: metadata, public training files, and hidden test sets with a
// deterministic public/private split.
package challenges

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/hackarena/hackarena/sdk"
)

// Status values of a challenge.
const (
	StatusOpen        = "open"
	StatusUnavailable = "unavailable"
)

// Limits bound what one team and one submission may use.
type Limits struct {
	MaxBinaryBytes    int64         `json:"max_binary_bytes"`
	SubmissionsPerDay int           `json:"submissions_per_day"`
	WallTime          time.Duration `json:"-"`
	WallTimeSeconds   float64       `json:"wall_time_seconds"`
	MemoryBytes       int64         `json:"memory_bytes"`
	// Logs is the log policy, LogsPrivate or LogsFull.
	Logs string `json:"logs"`
}

// DataFile is a public training file participants can download: a file on
// disk (Path) or one made at load time (Content).
type DataFile struct {
	Name    string `json:"name"`
	Bytes   int64  `json:"bytes"`
	SHA256  string `json:"sha256"`
	Path    string `json:"-"`
	Content []byte `json:"-"`
}

// Challenge is one competition, built from a Spec.
type Challenge struct {
	Slug           string
	Title          string
	Description    string
	Task           string // classification | regression
	Input          string // image | text | table
	Metrics        []string
	PrimaryMetric  string
	HigherIsBetter bool
	// Finals is how many of a team's submissions count on the private
	// board (its selected ones, or by default its best by public score).
	Finals       int
	NumClasses   int
	Status       string
	StatusReason string
	OpensAt      time.Time
	ClosesAt     time.Time
	RevealAt     time.Time
	Limits       Limits
	Data         []DataFile
	// Spec is what the challenge was built from; Revision counts the
	// organizer's updates (0: the spec file).
	Spec     Spec
	Revision int64

	// evaluation is what its builder says a local evaluation reads.
	evaluation Evaluation

	loadHidden func() (*HiddenSet, error)
	// hiddenMu guards hidden, loaded once it succeeds: a failed load (a
	// transient read error) is tried again by the next run, not kept.
	hiddenMu sync.Mutex
	hidden   *HiddenSet
}

// Open reports whether submissions are accepted at t.
func (c *Challenge) Open(t time.Time) bool {
	if c.Status != StatusOpen {
		return false
	}
	if !c.OpensAt.IsZero() && t.Before(c.OpensAt) {
		return false
	}
	return c.ClosesAt.IsZero() || t.Before(c.ClosesAt)
}

// DataFile finds a public file by name.
func (c *Challenge) DataFile(name string) (DataFile, bool) {
	for _, f := range c.Data {
		if f.Name == name {
			return f, true
		}
	}
	return DataFile{}, false
}

// Hidden loads the hidden test set, and keeps it once loaded; it never
// leaves the judge. A load that fails is retried a few times at once and
// then left for the next call, so one transient error fails one run, not
// every run until a restart.
func (c *Challenge) Hidden() (*HiddenSet, error) {
	c.hiddenMu.Lock()
	defer c.hiddenMu.Unlock()
	if c.hidden != nil {
		return c.hidden, nil
	}
	if c.loadHidden == nil {
		return nil, fmt.Errorf("challenge %q has no hidden set: %s", c.Slug, c.StatusReason)
	}
	var err error
	for try := 0; try < 3; try++ {
		if try > 0 {
			time.Sleep(time.Duration(try) * 200 * time.Millisecond)
		}
		var h *HiddenSet
		if h, err = c.loadHidden(); err == nil {
			c.hidden = h
			return h, nil
		}
	}
	return nil, err
}

// HiddenSet is a challenge's test data with its answers. Exactly one of
// Images (row-major uint8 Count×Height×Width), Texts or Columns holds the
// inputs, and Labels (classification) or Targets (regression) the answers.
type HiddenSet struct {
	Count   int
	Height  int
	Width   int
	Images  []byte
	Texts   []string
	Columns []sdk.Column
	Labels  []int
	Targets []float64
	// Public marks the examples of the public part; the rest is private.
	Public []bool
	// Examples names each example by its place in the data set the hidden
	// set is drawn from (a test file's row), which the shuffle and the
	// split do not change: answers kept under one split can be matched to
	// the examples of another.
	Examples []int
}

// identity is 0..n-1, the examples of a hidden set before its shuffle.
func identity(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

// Private is the complement of Public.
func (h *HiddenSet) Private() []bool {
	out := make([]bool, h.Count)
	for i, p := range h.Public {
		out[i] = !p
	}
	return out
}

// Batch is examples off..off+n as the plugin receives them.
func (h *HiddenSet) Batch(off, n int) sdk.Batch {
	b := sdk.Batch{Size: n}
	switch {
	case h.Images != nil:
		px := h.Height * h.Width
		b.Images = &sdk.Tensor{Shape: []int{n, h.Height, h.Width}, DType: sdk.Uint8, Data: h.Images[off*px : (off+n)*px]}
	case h.Texts != nil:
		b.Texts = h.Texts[off : off+n]
	default:
		b.Columns = make([]sdk.Column, len(h.Columns))
		for i, c := range h.Columns {
			b.Columns[i] = sdk.Column{Name: c.Name}
			if c.Numbers != nil {
				b.Columns[i].Numbers = c.Numbers[off : off+n]
			} else {
				b.Columns[i].Strings = c.Strings[off : off+n]
			}
		}
	}
	return b
}

// shuffle puts the examples in a seeded random order, keeping each one's
// inputs, answer and part together. Data sets stored by class (IMDB) would
// otherwise tell a plugin the label by the example's position.
func (h *HiddenSet) shuffle(seed uint64) {
	perm := permutation(h.Count, seed^0x5bd1e995)
	px := h.Height * h.Width
	var images []byte
	if h.Images != nil {
		images = make([]byte, len(h.Images))
	}
	texts := permuted(h.Texts, perm)
	for i, j := range perm {
		if images != nil {
			copy(images[i*px:(i+1)*px], h.Images[j*px:(j+1)*px])
		}
	}
	if images != nil {
		h.Images = images
	}
	h.Texts = texts
	for k := range h.Columns {
		h.Columns[k].Numbers = permuted(h.Columns[k].Numbers, perm)
		h.Columns[k].Strings = permuted(h.Columns[k].Strings, perm)
	}
	h.Labels = permuted(h.Labels, perm)
	h.Targets = permuted(h.Targets, perm)
	h.Public = permuted(h.Public, perm)
	h.Examples = permuted(h.Examples, perm)
}

func permuted[T any](xs []T, perm []int) []T {
	if xs == nil {
		return nil
	}
	out := make([]T, len(xs))
	for i, j := range perm {
		out[i] = xs[j]
	}
	return out
}

func permutation(n int, seed uint64) []int {
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	rng.Shuffle(n, func(i, j int) { idx[i], idx[j] = idx[j], idx[i] })
	return idx
}

// SplitPublic marks round(fraction·n) of n examples public, chosen by a
// seeded shuffle so the split is the same on every machine and every run.
func SplitPublic(n int, fraction float64, seed uint64) []bool {
	return SplitCount(n, int(fraction*float64(n)+0.5), seed)
}

// SplitCount marks k of n examples, chosen by a seeded shuffle.
func SplitCount(n, k int, seed uint64) []bool {
	marked := make([]bool, n)
	for _, i := range permutation(n, seed)[:k] {
		marked[i] = true
	}
	return marked
}

// Registry holds the loaded challenges by slug. It is safe for concurrent
// use: an organizer's update replaces a challenge while others read.
type Registry struct {
	mu     sync.RWMutex
	bySlug map[string]*Challenge
	order  []string
}

// NewRegistry indexes the given challenges.
func NewRegistry(cs ...*Challenge) *Registry {
	r := &Registry{bySlug: map[string]*Challenge{}}
	for _, c := range cs {
		r.Put(c)
	}
	return r
}

// Put adds a challenge or replaces the one with its slug.
func (r *Registry) Put(c *Challenge) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.bySlug[c.Slug]; !ok {
		r.order = append(r.order, c.Slug)
	}
	r.bySlug[c.Slug] = c
}

// PutNewer adds a challenge, or replaces the one with its slug when c is
// a later revision; it reports whether it did. Two updates that race (a
// slow Sync, an organizer's PUT) can then never put an older revision back.
func (r *Registry) PutNewer(c *Challenge) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	cur, ok := r.bySlug[c.Slug]
	if ok && cur.Revision >= c.Revision {
		return false
	}
	if !ok {
		r.order = append(r.order, c.Slug)
	}
	r.bySlug[c.Slug] = c
	return true
}

// Get finds a challenge by slug.
func (r *Registry) Get(slug string) (*Challenge, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	c, ok := r.bySlug[slug]
	return c, ok
}

// All lists the challenges in definition order.
func (r *Registry) All() []*Challenge {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]*Challenge, 0, len(r.order))
	for _, s := range r.order {
		out = append(out, r.bySlug[s])
	}
	return out
}

// Slugs lists the challenge slugs.
func (r *Registry) Slugs() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return append([]string(nil), r.order...)
}

// StoredSpec is an organizer's update of a challenge as it is kept in the
// platform's state.
type StoredSpec struct {
	Spec     Spec  `json:"spec"`
	Revision int64 `json:"revision"`
}

// SpecSource lists the organizer's updates by slug.
type SpecSource interface {
	ChallengeSpecs(ctx context.Context) (map[string]StoredSpec, error)
}

// Sync applies organizer updates newer than what the registry holds, so
// every API server and judge serves the same definition.
func (r *Registry) Sync(ctx context.Context, src SpecSource, env Env) error {
	specs, err := src.ChallengeSpecs(ctx)
	if err != nil {
		return fmt.Errorf("sync challenge specs: %w", err)
	}
	for slug, s := range specs {
		if cur, ok := r.Get(slug); ok && cur.Revision >= s.Revision {
			continue
		}
		c := Build(ctx, slug, s.Spec, env)
		c.Revision = s.Revision
		r.PutNewer(c)
	}
	return nil
}
