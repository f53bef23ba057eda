package judge

import (
	"compress/gzip"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// TestKeptPredictionsAreExactAndReadOldFiles: probabilities (float32s a
// plugin answered) come back bit for bit from the compact form, and a
// file of the earlier form (float64 text) reads the same.
func TestKeptPredictionsAreExactAndReadOldFiles(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	pred := &Predictions{Revision: 3, Seed: 7}
	for i := range 500 {
		row := make([]float64, 10)
		for j := range row {
			row[j] = float64(float32(rng.Float64() * rng.Float64() * 1e-3))
		}
		pred.Probabilities = append(pred.Probabilities, row)
		pred.Classes = append(pred.Classes, i%10)
		pred.Examples = append(pred.Examples, 499-i)
	}
	ps := &PredictionStore{Dir: t.TempDir()}
	if err := ps.Save("new", pred); err != nil {
		t.Fatal(err)
	}
	// The earlier form: Predictions as it is, gzipped JSON.
	f, err := os.Create(filepath.Join(ps.Dir, "old.json.gz"))
	if err != nil {
		t.Fatal(err)
	}
	zw := gzip.NewWriter(f)
	if err := json.NewEncoder(zw).Encode(pred); err != nil {
		t.Fatal(err)
	}
	zw.Close()
	f.Close()
	for _, id := range []string{"new", "old"} {
		got, err := ps.Load(id)
		if err != nil {
			t.Fatal(err)
		}
		if got.Revision != 3 || got.Seed != 7 || len(got.Classes) != 500 || got.Examples[0] != 499 || len(got.Probabilities) != 500 {
			t.Fatalf("%s: read back %+v", id, got)
		}
		for i, row := range pred.Probabilities {
			for j, v := range row {
				if got.Probabilities[i][j] != v {
					t.Fatalf("%s: probability [%d][%d] %v, want %v", id, i, j, got.Probabilities[i][j], v)
				}
			}
		}
	}
}
