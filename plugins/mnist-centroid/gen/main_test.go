package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// The committed centroids must be exactly what go generate computes from
// the pinned MNIST training set.
func TestCommittedCentroidsAreUpToDate(t *testing.T) {
	out := filepath.Join(t.TempDir(), "centroids.bin")
	if err := run(out, os.Getenv("HACKARENA_MNIST_DIR")); err != nil {
		t.Fatal(err)
	}
	fresh, _ := os.ReadFile(out)
	committed, err := os.ReadFile("../centroids.bin")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(fresh, committed) {
		t.Fatal("plugins/mnist-centroid/centroids.bin is stale: run `make plugins` and commit it")
	}
}
