package refdata

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// CheckCommitted has train write a model into a temporary directory and
// compares the named files byte for byte with those committed in
// committedDir: the committed weights are what training makes, and a
// change to a trainer or sdk/nn that alters them must come with retrained
// files (make models).
func CheckCommitted(t *testing.T, committedDir string, train func(dir string) error, files ...string) {
	t.Helper()
	dir := t.TempDir()
	if err := train(dir); err != nil {
		t.Fatal(err)
	}
	for _, name := range files {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		committed, err := os.ReadFile(filepath.Join(committedDir, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, committed) {
			t.Errorf("%s differs from what training makes now: run make models and commit the result", name)
		}
	}
}
