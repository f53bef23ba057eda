package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestCommittedModelIsWhatTrainingMakes retrains from the public data with
// the fixed seed and compares byte for byte: the committed weights are
// reproducible, and a change to the trainer or sdk/nn that alters them
// must come with retrained files (make models).
func TestCommittedModelIsWhatTrainingMakes(t *testing.T) {
	dir := t.TempDir()
	if err := run(dir, 5); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"network.json", "weights.npz"} {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		committed, err := os.ReadFile(filepath.Join("..", name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, committed) {
			t.Errorf("%s differs from what training makes now: run make models and commit the result", name)
		}
	}
}
