package main

import (
	"testing"

	"github.com/hackarena/hackarena/plugins/internal/refdata"
)

func TestCommittedModelIsWhatTrainingMakes(t *testing.T) {
	refdata.CheckCommitted(t, "..", run, "network.json", "weights.npz", "vocabulary.txt")
}
