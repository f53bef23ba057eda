package main

import (
	"testing"

	"github.com/hackarena/hackarena/plugins/internal/refdata"
)

func TestCommittedModelIsWhatTrainingMakes(t *testing.T) {
	refdata.CheckCommitted(t, "..", func(dir string) error { return run(dir, 5) }, "network.json", "weights.npz")
}
