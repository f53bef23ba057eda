// Package challenges defines the platform's challenges: their metadata,
// public training files and hidden test sets with a deterministic
// public/private split.
package challenges

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
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
}

// DataFile is a public training file participants can download.
type DataFile struct {
	Name   string `json:"name"`
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"`
	Path   string `json:"-"`
}

// Challenge is one competition.
type Challenge struct {
	Slug           string
	Title          string
	Description    string
	Task           string // classification | regression
	Input          string // image | text | table
	Metrics        []string
	PrimaryMetric  string
	HigherIsBetter bool
	NumClasses     int
	Status         string
	StatusReason   string
	OpensAt        time.Time
	ClosesAt       time.Time
	RevealAt       time.Time
	Limits         Limits
	Data           []DataFile

	loadHidden func() (*HiddenSet, error)
	hiddenOnce sync.Once
	hidden     *HiddenSet
	hiddenErr  error
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

// Hidden loads the hidden test set once; it never leaves the judge.
func (c *Challenge) Hidden() (*HiddenSet, error) {
	c.hiddenOnce.Do(func() {
		if c.loadHidden == nil {
			c.hiddenErr = fmt.Errorf("challenge %q has no hidden set", c.Slug)
			return
		}
		c.hidden, c.hiddenErr = c.loadHidden()
	})
	return c.hidden, c.hiddenErr
}

// HiddenSet is a challenge's test data with labels. Images are stored as
// one row-major uint8 block of Count×Height×Width.
type HiddenSet struct {
	Count  int
	Height int
	Width  int
	Images []byte
	Labels []int
	// Public marks the examples of the public part; the rest is private.
	Public []bool
}

// SplitPublic marks round(fraction·n) of n examples public, chosen by a
// seeded shuffle so the split is the same on every machine and every run.
func SplitPublic(n int, fraction float64, seed uint64) []bool {
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	rng.Shuffle(n, func(i, j int) { idx[i], idx[j] = idx[j], idx[i] })
	public := make([]bool, n)
	k := int(fraction*float64(n) + 0.5)
	for _, i := range idx[:k] {
		public[i] = true
	}
	return public
}

// Registry holds the loaded challenges by slug.
type Registry struct {
	bySlug map[string]*Challenge
	order  []string
}

// NewRegistry indexes the given challenges.
func NewRegistry(cs ...*Challenge) *Registry {
	r := &Registry{bySlug: map[string]*Challenge{}}
	for _, c := range cs {
		r.bySlug[c.Slug] = c
		r.order = append(r.order, c.Slug)
	}
	return r
}

// Get finds a challenge by slug.
func (r *Registry) Get(slug string) (*Challenge, bool) {
	c, ok := r.bySlug[slug]
	return c, ok
}

// All lists the challenges in definition order.
func (r *Registry) All() []*Challenge {
	out := make([]*Challenge, 0, len(r.order))
	for _, s := range r.order {
		out = append(out, r.bySlug[s])
	}
	return out
}

// Slugs lists the challenge slugs.
func (r *Registry) Slugs() []string { return append([]string(nil), r.order...) }
