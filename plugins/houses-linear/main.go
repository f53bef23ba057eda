// Command houses-linear is the reference house-prices submission: a linear
// model of log(price) on a few columns, fitted by least squares on the
// public training rows at build time (go generate) and embedded.
package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"math"

	"github.com/hackarena/hackarena/sdk"
)

//go:generate go run ./gen -o coefficients.json

//go:embed coefficients.json
var coefficientsJSON []byte

// Model is the fitted model: log(1+price) = Intercept + Σ Weights[i]·x_i,
// with a missing value replaced by its column's training mean.
type Model struct {
	Columns   []string  `json:"columns"`
	Means     []float64 `json:"means"`
	Weights   []float64 `json:"weights"`
	Intercept float64   `json:"intercept"`
}

func (m *Model) Describe(context.Context) (sdk.Info, error) {
	return sdk.Info{Name: "houses-linear", Version: "1"}, nil
}

func (m *Model) Predict(_ context.Context, b sdk.Batch) (sdk.Predictions, error) {
	cols := make([][]float64, len(m.Columns))
	for i, name := range m.Columns {
		for _, c := range b.Columns {
			if c.Name == name {
				cols[i] = c.Numbers
			}
		}
		if len(cols[i]) != b.Size {
			return sdk.Predictions{}, fmt.Errorf("numeric column %q missing from the batch", name)
		}
	}
	values := make([]float64, b.Size)
	for r := range values {
		y := m.Intercept
		for i := range m.Columns {
			x := cols[i][r]
			if math.IsNaN(x) {
				x = m.Means[i]
			}
			y += m.Weights[i] * x
		}
		values[r] = math.Max(0, math.Expm1(y))
	}
	return sdk.Predictions{Values: values}, nil
}

func main() {
	var m Model
	if err := json.Unmarshal(coefficientsJSON, &m); err != nil || len(m.Weights) != len(m.Columns) {
		panic(fmt.Sprintf("coefficients.json is invalid (%v): run go generate", err))
	}
	sdk.Serve(&m)
}
