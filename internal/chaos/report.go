package chaos

import (
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/hackarena/hackarena/platform/store"
)

// Result is what one fault cost.
type Result struct {
	Fault, How string
	// Submitted uploads were accepted; UploadErrors never were.
	Submitted, UploadErrors int
	Scored                  int
	Failed                  map[string]int
	// Lost: accepted and never ended. Twice: a second final event, or a
	// second submission for one upload. Orphans: sandbox containers left
	// after every run ended.
	Lost, Twice, Orphans int
	// Fenced counts writes the judges refused to a run that had been
	// taken over (its result, requeue or lease): the fencing at work.
	Fenced            int
	FaultAt, HealedAt time.Time
	// Recovery is how long after the fault the throughput was back at 90%
	// of what it was before (0 when it never fell below; Recovered false:
	// it was not back within the phase).
	Recovery  time.Duration
	Recovered bool
	// Before is the throughput before the fault, in submissions a second;
	// Dip the lowest after it, as a share of Before.
	Before, Dip float64
	// Latency percentiles, upload to board (the result and its board
	// entries are written in one step).
	P50, P99 time.Duration
	Problems []string
}

func (r *Result) problem(format string, args ...any) {
	if len(r.Problems) < 20 {
		r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
	}
}

// OK is true when nothing was lost, doubled or left behind.
func (r *Result) OK() bool {
	return r.Lost == 0 && r.Twice == 0 && r.Orphans == 0 && r.UploadErrors == 0 && len(r.Problems) == 0
}

// measure computes throughput recovery and latency from the phase's
// submissions, which began at begin.
func (r *Result) measure(subs []store.Submission, begin time.Time, window time.Duration) {
	var done []time.Time
	var latency []time.Duration
	for _, s := range subs {
		done = append(done, s.FinishedAt)
		if s.Status == store.StatusScored {
			latency = append(latency, s.FinishedAt.Sub(s.QueuedAt))
		}
	}
	r.P50, r.P99 = Percentile(latency, 0.50), Percentile(latency, 0.99)
	r.Before, r.Dip, r.Recovery, r.Recovered = Recovery(done, begin, r.FaultAt, r.HealedAt, window)
}

// Percentile is the q-th quantile of ds (nearest rank), 0 for none.
func Percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// Recovery reads how a fault moved throughput, from when runs ended. Before
// is the runs a second between begin (its first second skipped: nothing
// ends before a run has had time) and the fault. From the fault until a
// window after it was healed, throughput at each moment t is the runs
// that ended in the window before t; dip is its lowest, as a share of
// before. When that stayed at 90% or more, ok is true and after is 0;
// otherwise after is how long from the fault until throughput was back at
// 90% past the dip (ok false: not within the runs of the phase).
func Recovery(done []time.Time, begin, fault, healed time.Time, window time.Duration) (before, dip float64, after time.Duration, ok bool) {
	sorted := slices.Clone(done)
	slices.SortFunc(sorted, func(a, b time.Time) int { return a.Compare(b) })
	// Runs that ended in (t-window, t].
	rate := func(t time.Time) float64 {
		lo := sort.Search(len(sorted), func(i int) bool { return sorted[i].After(t.Add(-window)) })
		hi := sort.Search(len(sorted), func(i int) bool { return sorted[i].After(t) })
		return float64(hi-lo) / window.Seconds()
	}
	from := begin.Add(time.Second)
	if span := fault.Sub(from); span > 0 {
		for _, d := range sorted {
			if !d.Before(from) && d.Before(fault) {
				before++
			}
		}
		before /= span.Seconds()
	}
	if before == 0 || len(sorted) == 0 {
		return before, 0, 0, false
	}
	const step = 100 * time.Millisecond
	last := sorted[len(sorted)-1]
	if last.Before(fault) {
		return before, 0, 0, false
	}
	lowest, lowestAt := math.Inf(1), fault
	for t := fault; !t.After(healed.Add(window)) && !t.After(last); t = t.Add(step) {
		if r := rate(t); r < lowest {
			lowest, lowestAt = r, t
		}
	}
	dip = lowest / before
	if dip >= 0.9 {
		return before, dip, 0, true
	}
	for t := lowestAt; !t.After(last); t = t.Add(step) {
		if rate(t) >= 0.9*before {
			return before, dip, t.Sub(fault), true
		}
	}
	return before, dip, 0, false
}

// WriteTable writes the results as a Markdown table.
func WriteTable(w io.Writer, results []Result) {
	fmt.Fprintln(w, "| fault | how | submitted | scored | failed (by reason) | lost | scored twice | orphaned sandboxes | stale writes refused | throughput back at 90% | upload → board p50 / p99 |")
	fmt.Fprintln(w, "| --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | --- | --- |")
	for _, r := range results {
		failed := "0"
		if len(r.Failed) > 0 {
			var parts []string
			for _, reason := range slices.Sorted(maps.Keys(r.Failed)) {
				parts = append(parts, fmt.Sprintf("%d %s", r.Failed[reason], reason))
			}
			failed = strings.Join(parts, ", ")
		}
		submitted := fmt.Sprint(r.Submitted)
		if r.UploadErrors > 0 {
			submitted += fmt.Sprintf(" (+%d refused)", r.UploadErrors)
		}
		back := fmt.Sprintf("not within the phase (fell to %.0f%% of %.2f/s)", 100*r.Dip, r.Before)
		switch {
		case r.Recovered && r.Dip >= 0.9:
			back = fmt.Sprintf("never below (%.0f%% of %.2f/s at worst)", 100*r.Dip, r.Before)
		case r.Recovered:
			back = fmt.Sprintf("%.1f s (fell to %.0f%% of %.2f/s)", r.Recovery.Seconds(), 100*r.Dip, r.Before)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %d | %s | %d | %d | %d | %d | %s | %.2f s / %.2f s |\n", r.Fault, r.How, submitted, r.Scored, failed,
			r.Lost, r.Twice, r.Orphans, r.Fenced, back, r.P50.Seconds(), r.P99.Seconds())
	}
}
