package store

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"slices"
)

// Bootstrap is a run's primary metric on resamples of each half of the
// hidden set, with its 95% interval. Every run of a challenge is scored
// on the same resamples, so two runs compare resample by resample.
type Bootstrap struct {
	Metric    string         `json:"metric"`
	Resamples int            `json:"resamples"`
	Public    *HalfBootstrap `json:"public"`
	Private   *HalfBootstrap `json:"private"`
}

// HalfBootstrap is one half's interval and the metric on each resample.
type HalfBootstrap struct {
	Lo      float64   `json:"lo"`
	Hi      float64   `json:"hi"`
	Samples []float32 `json:"-"`
}

// Half is the public (board "public") or private half.
func (b *Bootstrap) Half(board string) *HalfBootstrap {
	if b == nil {
		return nil
	}
	if board == BoardPrivate {
		return b.Private
	}
	return b.Public
}

func bootKey(id, board string) string { return prefix + "boot:" + id + ":" + board }

// encode is the record's interval field and each half's samples as
// little-endian float32s.
func (b *Bootstrap) encode() (interval, public, private string, err error) {
	if b == nil || b.Public == nil || b.Private == nil {
		return "", "", "", nil
	}
	raw, err := json.Marshal(b)
	if err != nil {
		return "", "", "", fmt.Errorf("encode the bootstrap of a result: %w", err)
	}
	pack := func(xs []float32) string {
		out := make([]byte, 4*len(xs))
		for i, x := range xs {
			binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(x))
		}
		return string(out)
	}
	return string(raw), pack(b.Public.Samples), pack(b.Private.Samples), nil
}

func unpackSamples(raw string) []float32 {
	out := make([]float32, len(raw)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32([]byte(raw[4*i : 4*i+4])))
	}
	return out
}

// PairedInterval is the 95% interval of a − b over their common resamples
// (percentiles of the differences, numpy's linear method), skipping
// resamples where either is undefined; ok false when they share none.
func PairedInterval(a, b []float32) (lo, hi float64, ok bool) {
	var d []float64
	for i := range min(len(a), len(b)) {
		x := float64(a[i]) - float64(b[i])
		if !math.IsNaN(x) {
			d = append(d, x)
		}
	}
	if len(d) == 0 {
		return 0, 0, false
	}
	return Percentile(d, 2.5), Percentile(d, 97.5), true
}

// Percentile is the q-th percentile (0..100) of xs as numpy computes it by
// default (linear between the closest ranks), over the values that are
// not NaN; NaN when there are none.
func Percentile(xs []float64, q float64) float64 {
	s := make([]float64, 0, len(xs))
	for _, x := range xs {
		if !math.IsNaN(x) {
			s = append(s, x)
		}
	}
	if len(s) == 0 {
		return math.NaN()
	}
	slices.Sort(s)
	pos := q / 100 * float64(len(s)-1)
	lo := int(math.Floor(pos))
	hi := min(lo+1, len(s)-1)
	return s[lo] + (s[hi]-s[lo])*(pos-float64(lo))
}

// addIntervals gives each entry of a board its submission's interval on
// the board's half, and says whether it is told apart from the leader's by
// a paired bootstrap on the same resamples: when the 95% interval of
// their difference holds 0, it is tied with the leader. Pairs already
// compared are remembered (their samples do not change), so a board read
// reads samples only for new pairs. intervals are the entries' runs'
// intervals, by submission.
func (s *Store) addIntervals(ctx context.Context, slug, board string, entries []BoardEntry, intervals map[string]*Bootstrap) error {
	metric, _, _, err := s.boardRules(ctx, slug)
	if err != nil {
		return err
	}
	leaderHas := false
	for i, e := range entries {
		b := intervals[e.SubmissionID]
		if b == nil || b.Metric != metric {
			continue // not bootstrapped under the board's metric (an older run, or a rescore pending)
		}
		if h := b.Half(board); h != nil {
			entries[i].Interval = &[2]float64{h.Lo, h.Hi}
			if i == 0 {
				leaderHas = true
			}
		}
	}
	if !leaderHas {
		return nil
	}
	leader := entries[0].SubmissionID
	memo := prefix + "lb:" + slug + ":" + board + ":tied"
	keys := make([]string, 0, len(entries)-1)
	for _, e := range entries[1:] {
		keys = append(keys, leader+":"+e.SubmissionID)
	}
	if len(keys) == 0 {
		return nil
	}
	known, err := s.rdb.HMGet(ctx, memo, keys...).Result()
	if err != nil {
		return fmt.Errorf("read the board's comparisons: %w", err)
	}
	var leaderSamples []float32
	for i, e := range entries[1:] {
		if e.Interval == nil {
			continue
		}
		if v, ok := known[i].(string); ok {
			entries[i+1].TiedWithLeader = v == "1"
			continue
		}
		if leaderSamples == nil {
			raw, err := s.rdb.Get(ctx, bootKey(leader, board)).Result()
			if err != nil {
				return nil // the leader's samples are gone: no comparison
			}
			leaderSamples = unpackSamples(raw)
		}
		raw, err := s.rdb.Get(ctx, bootKey(e.SubmissionID, board)).Result()
		if err != nil {
			continue
		}
		lo, hi, ok := PairedInterval(unpackSamples(raw), leaderSamples)
		if !ok {
			continue
		}
		tied := lo <= 0 && hi >= 0
		entries[i+1].TiedWithLeader = tied
		flag := "0"
		if tied {
			flag = "1"
		}
		if err := s.rdb.HSet(ctx, memo, keys[i], flag).Err(); err != nil {
			return fmt.Errorf("remember a board comparison: %w", err)
		}
	}
	return nil
}
