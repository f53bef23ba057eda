package judge

import (
	"compress/gzip"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// PredictionStore keeps each scored submission's predictions as a gzip
// JSON file, written atomically.
type PredictionStore struct {
	Dir string
}

func (p *PredictionStore) path(id string) string { return filepath.Join(p.Dir, id+".json.gz") }

// Save writes a submission's predictions.
func (p *PredictionStore) Save(id string, pred *Predictions) error {
	if err := os.MkdirAll(p.Dir, 0o700); err != nil {
		return fmt.Errorf("create predictions dir: %w", err)
	}
	tmp, err := os.CreateTemp(p.Dir, ".pred-*")
	if err != nil {
		return fmt.Errorf("save predictions of %s: %w", id, err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	zw := gzip.NewWriter(tmp)
	if err := json.NewEncoder(zw).Encode(pred); err != nil {
		return fmt.Errorf("save predictions of %s: %w", id, err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("save predictions of %s: %w", id, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("save predictions of %s: %w", id, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save predictions of %s: %w", id, err)
	}
	return os.Rename(tmp.Name(), p.path(id))
}

// Load reads a submission's predictions.
func (p *PredictionStore) Load(id string) (*Predictions, error) {
	f, err := os.Open(p.path(id))
	if err != nil {
		return nil, fmt.Errorf("load predictions of %s: %w", id, err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("load predictions of %s: %w", id, err)
	}
	var pred Predictions
	if err := json.NewDecoder(zr).Decode(&pred); err != nil {
		return nil, fmt.Errorf("load predictions of %s: %w", id, err)
	}
	return &pred, nil
}
