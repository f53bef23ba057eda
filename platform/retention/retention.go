// Package retention keeps the data directory within bounds: it decides
// which plugin binaries can still matter, releases the rest, and reports
// what the disk holds.
package retention

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/hackarena/hackarena/challenges"
	"github.com/hackarena/hackarena/judge"
	"github.com/hackarena/hackarena/platform/blob"
	"github.com/hackarena/hackarena/platform/store"
)

// DefaultKeepLast is how many of each team's latest submissions per
// challenge keep their binaries (for a rejudge that runs them again).
const DefaultKeepLast = 3

// uploadGrace protects a binary stored just now whose submission may not
// be recorded yet: an upload is committed to the blob store a moment
// before it is queued, so a collection that read the records in between
// must not take its file.
const uploadGrace = 10 * time.Minute

// Policy says which binaries are kept. Besides the last KeepLast per team
// and challenge, the binaries of queued and running submissions, of each
// team's finals and of the entries on both boards are always kept; a
// negative KeepLast keeps every binary.
type Policy struct {
	KeepLast int `json:"keep_last"`
}

// Collector releases the binaries the policy does not keep.
type Collector struct {
	Store       *store.Store
	Blobs       *blob.Store
	Challenges  *challenges.Registry
	Policy      Policy
	Predictions *judge.PredictionStore // the judges' kept predictions (nil: none here)
	DataDir     string                 // whose filesystem's free space is reported
	Log         *slog.Logger
	Metrics     *Metrics

	mu   sync.Mutex // one collection at a time
	last *Collection
}

// Count is a number of files and their bytes.
type Count struct {
	Files int64 `json:"files"`
	Bytes int64 `json:"bytes"`
}

func (c *Count) add(bytes int64) { c.Files++; c.Bytes += bytes }

// Disk is the data directory's filesystem.
type Disk struct {
	Path       string `json:"path"`
	FreeBytes  int64  `json:"free_bytes"`
	TotalBytes int64  `json:"total_bytes"`
}

// Usage is what the platform stores and what a collection would free.
type Usage struct {
	Binaries    Count `json:"binaries"`
	Predictions Count `json:"predictions"`
	// Logs are the plugins' logs kept in the submission records (files:
	// the submissions with one).
	Logs Count `json:"logs"`
	// Reclaimable are the binaries a collection would remove now.
	Reclaimable Count `json:"reclaimable"`
	// Released counts the submissions whose binaries were released.
	Released       int64       `json:"released_submissions"`
	Submissions    int64       `json:"submissions"`
	Disk           *Disk       `json:"disk,omitempty"`
	Policy         Policy      `json:"policy"`
	LastCollection *Collection `json:"last_collection,omitempty"`
}

// Collection is what one collection did.
type Collection struct {
	At time.Time `json:"at"`
	// Released: submissions whose binaries were released by this one.
	Released int `json:"released_submissions"`
	// Removed: binary files deleted; Kept: binary files still stored.
	Removed Count `json:"removed"`
	Kept    Count `json:"kept"`
	// StaleUploads are half-received uploads left by a crash, removed.
	StaleUploads Count `json:"stale_uploads"`
	// PredictionsRemoved are the kept predictions of challenges that keep
	// them only until they close (keep_predictions: until_close), once
	// closed.
	PredictionsRemoved Count   `json:"predictions_removed"`
	TookSeconds        float64 `json:"took_seconds"`
}

// plan is which submissions and binaries the policy keeps now.
type plan struct {
	refs       []store.BinaryRef
	keptIDs    map[string]bool
	keptSHA256 map[string]bool
}

// plan reads every submission and marks what the policy keeps.
func (c *Collector) plan(ctx context.Context) (*plan, error) {
	refs, err := c.Store.BinaryRefs(ctx)
	if err != nil {
		return nil, err
	}
	p := &plan{refs: refs, keptIDs: map[string]bool{}, keptSHA256: map[string]bool{}}
	keep := func(id string) { p.keptIDs[id] = true }
	type teamIn struct{ challenge, team string }
	byTeam := map[teamIn][]store.BinaryRef{}
	for _, r := range refs {
		byTeam[teamIn{r.Challenge, r.TeamID}] = append(byTeam[teamIn{r.Challenge, r.TeamID}], r)
		if r.Status == store.StatusQueued || r.Status == store.StatusRunning || c.Policy.KeepLast < 0 {
			keep(r.ID)
		}
	}
	for key, subs := range byTeam {
		sort.Slice(subs, func(i, j int) bool { return subs[i].QueuedAt.After(subs[j].QueuedAt) })
		for i := 0; i < len(subs) && i < c.Policy.KeepLast; i++ {
			keep(subs[i].ID)
		}
		ch, ok := c.Challenges.Get(key.challenge)
		if !ok {
			// A challenge no longer loaded: its finals cannot be told
			// from the rest, so all of it stays.
			for _, s := range subs {
				keep(s.ID)
			}
			continue
		}
		finals, err := c.Store.TeamFinals(ctx, key.challenge, key.team, store.RulesOf(ch))
		if err != nil {
			return nil, fmt.Errorf("finals of a team in %q: %w", key.challenge, err)
		}
		for _, s := range finals.Submissions {
			keep(s.ID)
		}
	}
	for _, ch := range c.Challenges.All() {
		for _, board := range []string{store.BoardPublic, store.BoardPrivate} {
			entries, err := c.Store.Board(ctx, ch.Slug, board)
			if err != nil {
				return nil, fmt.Errorf("read the %s board of %q: %w", board, ch.Slug, err)
			}
			for _, e := range entries {
				keep(e.SubmissionID)
			}
		}
	}
	for _, r := range refs {
		if p.keptIDs[r.ID] {
			p.keptSHA256[r.SHA256] = true
		}
	}
	return p, nil
}

// Collect releases the binaries the policy no longer keeps: each such
// submission's record says so first, then its file is removed unless a
// kept submission names the same content.
func (c *Collector) Collect(ctx context.Context) (*Collection, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	start := time.Now()
	p, err := c.plan(ctx)
	if err != nil {
		return nil, fmt.Errorf("plan the collection: %w", err)
	}
	out := &Collection{At: start.UTC()}
	for _, r := range p.refs {
		// One whose content a kept submission names keeps it too.
		if p.keptIDs[r.ID] || p.keptSHA256[r.SHA256] || !r.ReleasedAt.IsZero() {
			continue
		}
		marked, err := c.Store.MarkBinaryReleased(ctx, r.ID, start)
		if err != nil {
			return nil, err
		}
		if marked {
			out.Released++
		} else {
			// No longer final (queued again): it keeps its binary.
			p.keptSHA256[r.SHA256] = true
		}
	}
	err = c.Blobs.Each(func(sum string, info fs.FileInfo) error {
		if p.keptSHA256[sum] || start.Sub(info.ModTime()) < uploadGrace {
			out.Kept.add(info.Size())
			return nil
		}
		if err := c.Blobs.Remove(sum); err != nil {
			return err
		}
		out.Removed.add(info.Size())
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, size := range c.Blobs.RemoveStaleUploads(start.Add(-staleUpload)) {
		out.StaleUploads.add(size)
	}
	out.PredictionsRemoved = c.dropClosedPredictions(p.refs, start)
	out.TookSeconds = time.Since(start).Seconds()
	c.last = out
	if c.Metrics != nil {
		c.Metrics.removed.Add(float64(out.Removed.Bytes))
	}
	if c.Log != nil {
		c.Log.Info("storage collected", "released_submissions", out.Released, "removed_files", out.Removed.Files,
			"removed_bytes", out.Removed.Bytes, "kept_files", out.Kept.Files, "took", time.Since(start).Round(time.Millisecond))
	}
	return out, nil
}

// Usage measures what is stored and what a collection would free now.
func (c *Collector) Usage(ctx context.Context) (*Usage, error) {
	p, err := c.plan(ctx)
	if err != nil {
		return nil, err
	}
	u := &Usage{Policy: c.Policy, Submissions: int64(len(p.refs))}
	for _, r := range p.refs {
		if r.LogBytes > 0 {
			u.Logs.add(r.LogBytes)
		}
		if !r.ReleasedAt.IsZero() {
			u.Released++
		}
	}
	err = c.Blobs.Each(func(sum string, info fs.FileInfo) error {
		u.Binaries.add(info.Size())
		if !p.keptSHA256[sum] {
			u.Reclaimable.add(info.Size())
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if c.Predictions != nil {
		err := filepath.WalkDir(c.Predictions.Dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			if d.Type().IsRegular() {
				if info, err := d.Info(); err == nil {
					u.Predictions.add(info.Size())
				}
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("measure kept predictions: %w", err)
		}
	}
	if c.DataDir != "" {
		if d, err := DiskOf(c.DataDir); err == nil {
			u.Disk = &d
		}
	}
	c.mu.Lock()
	u.LastCollection = c.last
	c.mu.Unlock()
	if c.Metrics != nil {
		c.Metrics.observe(u)
	}
	return u, nil
}

// dropClosedPredictions removes the kept predictions of the submissions
// to challenges that keep them only until they close, once closed.
func (c *Collector) dropClosedPredictions(refs []store.BinaryRef, now time.Time) Count {
	var n Count
	if c.Predictions == nil {
		return n
	}
	for _, r := range refs {
		ch, ok := c.Challenges.Get(r.Challenge)
		if !ok || ch.Spec.KeepPredictions != challenges.KeepUntilClose || ch.ClosesAt.IsZero() || now.Before(ch.ClosesAt) {
			continue
		}
		size, err := c.Predictions.Remove(r.ID)
		if err != nil {
			if c.Log != nil {
				c.Log.Warn("drop the predictions of a closed challenge", "challenge", r.Challenge, "err", err)
			}
			continue
		}
		if size > 0 {
			n.add(size)
		}
	}
	return n
}

// staleUpload is how old a half-received upload is before it counts as a
// crash's leftover (an upload times out well before).
const staleUpload = time.Hour

// Run collects every interval until ctx ends (never when interval is 0).
func (c *Collector) Run(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		return
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		if _, err := c.Collect(ctx); err != nil && ctx.Err() == nil && c.Log != nil {
			c.Log.Warn("storage collection failed; it runs again at the next interval", "err", err)
		}
		if _, err := c.Usage(ctx); err != nil && ctx.Err() == nil && c.Log != nil {
			c.Log.Warn("measure storage", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// DiskOf is the free and total space of the filesystem holding path.
func DiskOf(path string) (Disk, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return Disk{}, fmt.Errorf("free space of %s: %w", path, err)
	}
	return Disk{Path: path, FreeBytes: int64(st.Bavail) * st.Bsize, TotalBytes: int64(st.Blocks) * st.Bsize}, nil
}

// Metrics are the storage figures for Prometheus, as of the last
// measurement.
type Metrics struct {
	bytes, files *prometheus.GaugeVec
	reclaimable  prometheus.Gauge
	free         prometheus.Gauge
	removed      prometheus.Counter
}

// NewMetrics registers the storage metrics.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		bytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "hackarena_storage_bytes",
			Help: "Bytes stored, by kind (binaries, predictions, logs), as of the last measurement."}, []string{"kind"}),
		files: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "hackarena_storage_files",
			Help: "Files stored, by kind (logs: submissions with a log), as of the last measurement."}, []string{"kind"}),
		reclaimable: prometheus.NewGauge(prometheus.GaugeOpts{Name: "hackarena_storage_reclaimable_bytes",
			Help: "Bytes of plugin binaries the retention would remove now."}),
		free: prometheus.NewGauge(prometheus.GaugeOpts{Name: "hackarena_storage_disk_free_bytes",
			Help: "Free bytes of the data directory's filesystem, as of the last measurement."}),
		removed: prometheus.NewCounter(prometheus.CounterOpts{Name: "hackarena_storage_removed_bytes_total",
			Help: "Bytes of plugin binaries the retention removed."}),
	}
	for _, c := range []prometheus.Collector{m.bytes, m.files, m.reclaimable, m.free, m.removed} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register storage metrics: %w", err)
		}
	}
	return m, nil
}

func (m *Metrics) observe(u *Usage) {
	for kind, c := range map[string]Count{"binaries": u.Binaries, "predictions": u.Predictions, "logs": u.Logs} {
		m.bytes.WithLabelValues(kind).Set(float64(c.Bytes))
		m.files.WithLabelValues(kind).Set(float64(c.Files))
	}
	m.reclaimable.Set(float64(u.Reclaimable.Bytes))
	if u.Disk != nil {
		m.free.Set(float64(u.Disk.FreeBytes))
	}
}
