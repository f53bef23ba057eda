// Command mnist-centroid is the reference MNIST submission: a
// nearest-centroid classifier whose ten class means were computed from the
// training set at build time (go generate) and embedded in the binary.
package main

import (
	"context"
	_ "embed"
	"encoding/binary"
	"fmt"
	"math"

	"github.com/hackarena/hackarena/sdk"
)

//go:generate go run ./gen -o centroids.bin

//go:embed centroids.bin
var centroidsRaw []byte

const pixels = 28 * 28

type model struct {
	centroids [10][pixels]float32
}

func load() (*model, error) {
	if len(centroidsRaw) != 10*pixels*4 {
		return nil, fmt.Errorf("centroids.bin has %d bytes, want %d: run go generate", len(centroidsRaw), 10*pixels*4)
	}
	m := &model{}
	for k := range m.centroids {
		for i := range m.centroids[k] {
			m.centroids[k][i] = math.Float32frombits(binary.LittleEndian.Uint32(centroidsRaw[4*(k*pixels+i):]))
		}
	}
	return m, nil
}

func (m *model) Describe(context.Context) (sdk.Info, error) {
	return sdk.Info{Name: "mnist-centroid", Version: "1"}, nil
}

func (m *model) Predict(_ context.Context, b sdk.Batch) (sdk.Predictions, error) {
	if b.Images == nil || len(b.Images.Shape) != 3 || b.Images.Shape[1]*b.Images.Shape[2] != pixels {
		return sdk.Predictions{}, fmt.Errorf("want images shaped [n,28,28]")
	}
	x, err := b.Images.Float32s()
	if err != nil {
		return sdk.Predictions{}, err
	}
	n := b.Images.Shape[0]
	classes := make([]int, n)
	for j := 0; j < n; j++ {
		img := x[j*pixels : (j+1)*pixels]
		best, bestDist := 0, float32(math.MaxFloat32)
		for k := range m.centroids {
			var d float32
			for i, v := range img {
				diff := v - m.centroids[k][i]
				d += diff * diff
			}
			if d < bestDist {
				best, bestDist = k, d
			}
		}
		classes[j] = best
	}
	return sdk.Predictions{Classes: classes}, nil
}

func main() {
	m, err := load()
	if err != nil {
		panic(err)
	}
	sdk.Serve(m)
}
