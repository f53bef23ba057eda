package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// The committed coefficients must be exactly what go generate fits on the
// houses challenge's training file.
func TestCommittedCoefficientsAreUpToDate(t *testing.T) {
	out := filepath.Join(t.TempDir(), "coefficients.json")
	if err := run(out); err != nil {
		t.Fatal(err)
	}
	fresh, _ := os.ReadFile(out)
	committed, err := os.ReadFile("../coefficients.json")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(fresh, committed) {
		t.Fatal("plugins/houses-linear/coefficients.json is stale: run `make plugins` and commit it")
	}
}
