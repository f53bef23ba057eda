package judge

import (
	"strings"
	"testing"
	"time"

	"github.com/hackarena/hackarena/sdk"
)

// TestTheMarkerIsFoundAndTakenOutHoweverTheOutputIsCut: go-plugin
// forwards an output in chunks of its own choosing, so the marker may be
// cut anywhere; it is found, taken out, and what is around it is kept in
// order, as is a tail that only looked like the marker's start.
func TestTheMarkerIsFoundAndTakenOutHoweverTheOutputIsCut(t *testing.T) {
	text := "before\n" + sdk.OutputMarker + "after\n"
	for cut := 0; cut <= len(text); cut++ {
		for cut2 := cut; cut2 <= len(text); cut2++ {
			l := newCappedLog(1 << 10)
			o := l.output()
			for _, part := range []string{text[:cut], text[cut:cut2], text[cut2:]} {
				_, _ = o.Write([]byte(part))
			}
			if got := l.String(); got != "before\nafter\n" {
				t.Fatalf("cut at %d and %d: log %q", cut, cut2, got)
			}
			if !l.awaitMarkers(0) {
				t.Fatalf("cut at %d and %d: the marker was not seen", cut, cut2)
			}
		}
	}

	l := newCappedLog(1 << 10)
	o := l.output()
	// A marker's start that the output then leaves is the plugin's words.
	partial := sdk.OutputMarker[:10]
	_, _ = o.Write([]byte("a" + partial))
	_, _ = o.Write([]byte("b\n"))
	_, _ = o.Write([]byte("end" + partial))
	if got, want := l.String(), "a"+partial+"b\nend"+partial; got != want {
		t.Errorf("log %q, want %q", got, want)
	}
	if l.awaitMarkers(10 * time.Millisecond) {
		t.Error("a marker was seen where none was written")
	}
}

// TestTheJudgeWaitsForTheMarkerOnEveryOutput: one output's marker says
// nothing of another's.
func TestTheJudgeWaitsForTheMarkerOnEveryOutput(t *testing.T) {
	l := newCappedLog(1 << 10)
	outputs := []*markedOutput{l.output(), l.output(), l.output()}
	for _, o := range outputs[:2] {
		_, _ = o.Write([]byte("ready\n" + sdk.OutputMarker))
	}
	if l.awaitMarkers(10 * time.Millisecond) {
		t.Fatal("moved on with one output unmarked")
	}
	go func() { _, _ = outputs[2].Write([]byte(sdk.OutputMarker)) }()
	if !l.awaitMarkers(10 * time.Second) {
		t.Fatal("every output marked, and still waiting")
	}
	if got := l.String(); strings.Count(got, "ready\n") != 2 || strings.Contains(got, "\x00") {
		t.Errorf("log %q", got)
	}
}
