package chaos

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestPercentileIsTheNearestRank(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 50 * time.Millisecond}, {0.99, 99 * time.Millisecond}, {1, 100 * time.Millisecond}, {0, time.Millisecond}} {
		if got := Percentile(ds, tc.q); got != tc.want {
			t.Errorf("p%v = %s, want %s", tc.q*100, got, tc.want)
		}
	}
	if Percentile(nil, 0.5) != 0 {
		t.Error("the percentile of nothing is not 0")
	}
	if ds[0] != 100*time.Millisecond {
		t.Error("Percentile sorted its caller's slice")
	}
}

// every is one run ending each step from from to to.
func every(from, to time.Time, step time.Duration) []time.Time {
	var ts []time.Time
	for t := from; t.Before(to); t = t.Add(step) {
		ts = append(ts, t)
	}
	return ts
}

func TestRecoveryFindsWhenThroughputIsBack(t *testing.T) {
	begin := time.Unix(1000, 0)
	fault := begin.Add(20 * time.Second)
	window := 5 * time.Second
	steady := every(begin.Add(time.Second), begin.Add(60*time.Second), 500*time.Millisecond)

	before, dip, after, ok := Recovery(steady, begin, fault, fault.Add(3*time.Second), window)
	if !ok || after != 0 || before < 1.9 || before > 2.1 || dip < 0.9 {
		t.Errorf("a fault that cost nothing: %.2f/s before, dip to %.2f, back after %s (%v); want 2/s, no dip", before, dip, after, ok)
	}

	// Nothing ends for 10 s after the fault, then the same pace again.
	var dented []time.Time
	for _, ts := range steady {
		if ts.Before(fault) || !ts.Before(fault.Add(10*time.Second)) {
			dented = append(dented, ts)
		}
	}
	_, dip, after, ok = Recovery(dented, begin, fault, fault.Add(10*time.Second), window)
	// The window before t holds 9 of its 10 runs (90% of 2/s over 5 s) at
	// 14 s after the fault.
	if !ok || dip != 0 || after != 14*time.Second {
		t.Errorf("a 10 s outage: dip to %.2f, back after %s (%v); want 0, 14 s", dip, after, ok)
	}

	// A backlog worked off at twice the pace: back sooner.
	var drained []time.Time
	for _, ts := range dented {
		drained = append(drained, ts)
		if !ts.Before(fault.Add(10*time.Second)) && ts.Before(fault.Add(20*time.Second)) {
			drained = append(drained, ts.Add(250*time.Millisecond))
		}
	}
	if _, _, after, ok := Recovery(drained, begin, fault, fault.Add(10*time.Second), window); !ok || after < 11*time.Second || after > 12*time.Second {
		t.Errorf("a 10 s outage and a drained backlog: back after %s (%v), want 11.5 s", after, ok)
	}

	// Nothing ends after the fault.
	if _, _, _, ok := Recovery(every(begin.Add(time.Second), fault, 500*time.Millisecond), begin, fault, fault, window); ok {
		t.Error("recovered with no run ending after the fault")
	}
}

func TestTheTableSaysWhatEachFaultCost(t *testing.T) {
	var out bytes.Buffer
	WriteTable(&out, []Result{{Fault: "Redis dies", How: "kill", Submitted: 50, Scored: 49, Failed: map[string]int{"internal": 1},
		Twice: 1, Fenced: 2, Recovered: true, Recovery: 4200 * time.Millisecond, Before: 2.5, Dip: 0.4, P50: time.Second, P99: 3 * time.Second}})
	row := strings.Split(strings.TrimSpace(out.String()), "\n")[2]
	for _, want := range []string{"| Redis dies |", "| 50 |", "| 49 |", "| 1 internal |", "| 0 | 1 | 0 | 2 |", "4.2 s (fell to 40% of 2.50/s)", "1.00 s / 3.00 s"} {
		if !strings.Contains(row, want) {
			t.Errorf("row %q lacks %q", row, want)
		}
	}
}
