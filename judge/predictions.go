package judge

import (
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
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
	zw, err := gzip.NewWriterLevel(tmp, gzip.BestCompression)
	if err != nil {
		return fmt.Errorf("save predictions of %s: %w", id, err)
	}
	if err := json.NewEncoder(zw).Encode(keptOf(pred)); err != nil {
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

// Remove deletes a submission's predictions, if kept, and says how many
// bytes they took (0 when there were none).
func (p *PredictionStore) Remove(id string) (int64, error) {
	info, err := os.Stat(p.path(id))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("remove predictions of %s: %w", id, err)
	}
	if err := os.Remove(p.path(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("remove predictions of %s: %w", id, err)
	}
	return info.Size(), nil
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
	var k kept
	if err := json.NewDecoder(zr).Decode(&k); err != nil {
		return nil, fmt.Errorf("load predictions of %s: %w", id, err)
	}
	return k.predictions(), nil
}

// kept is Predictions as stored: probabilities as float32, which is what
// a plugin answers (sdk.Predictions), so each is written in its shortest
// float32 form and read back exactly; as float64 text they took twice the
// space (MNIST with probabilities: 978 KB a submission gzipped, now 545).
// A file written as float64 reads the same: each of its values is a
// float32's. The field hides the embedded one of the same JSON name.
type kept struct {
	Predictions
	Probabilities [][]float32 `json:"probabilities,omitempty"`
}

func keptOf(p *Predictions) *kept {
	k := &kept{Predictions: *p, Probabilities: convertRows[float32](p.Probabilities)}
	k.Predictions.Probabilities = nil
	return k
}

func (k *kept) predictions() *Predictions {
	p := k.Predictions
	p.Probabilities = convertRows[float64](k.Probabilities)
	return &p
}

// convertRows converts a table of floats (nil stays nil): a plugin's
// float32 probabilities to the float64 scoring takes, and back for
// keeping them.
func convertRows[To, From float32 | float64](rows [][]From) [][]To {
	if rows == nil {
		return nil
	}
	out := make([][]To, len(rows))
	for i, row := range rows {
		out[i] = make([]To, len(row))
		for j, v := range row {
			out[i][j] = To(v)
		}
	}
	return out
}
