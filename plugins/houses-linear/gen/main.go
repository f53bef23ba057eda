// Command gen fits plugins/houses-linear's coefficients on the houses
// challenge's public training file (train.csv) by least squares.
package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"

	"github.com/hackarena/hackarena/plugins/internal/refdata"
)

// columns are the features: size, quality, age and garage.
var columns = []string{"Gr Liv Area", "Overall Qual", "Year Built", "Total Bsmt SF", "Garage Cars", "Lot Area"}

type model struct {
	Columns   []string  `json:"columns"`
	Means     []float64 `json:"means"`
	Weights   []float64 `json:"weights"`
	Intercept float64   `json:"intercept"`
}

func main() {
	out := flag.String("o", "coefficients.json", "output file")
	flag.Parse()
	if err := run(*out); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func run(out string) error {
	train, err := refdata.HousesCSV(context.Background())
	if err != nil {
		return err
	}
	rows, err := csv.NewReader(bytes.NewReader(train)).ReadAll()
	if err != nil {
		return err
	}
	m, err := fit(rows)
	if err != nil {
		return err
	}
	raw, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(out, append(raw, '\n'), 0o644)
}

func fit(rows [][]string) (model, error) {
	header, data := rows[0], rows[1:]
	idx := make([]int, len(columns))
	for i, c := range columns {
		if idx[i] = slices.Index(header, c); idx[i] < 0 {
			return model{}, fmt.Errorf("train.csv has no column %q", c)
		}
	}
	target := slices.Index(header, "SalePrice")
	k := len(columns)
	means := make([]float64, k)
	counts := make([]float64, k)
	for _, r := range data {
		for i, j := range idx {
			if v, err := strconv.ParseFloat(r[j], 64); err == nil {
				means[i] += v
				counts[i]++
			}
		}
	}
	for i := range means {
		means[i] /= counts[i]
	}
	// Normal equations on the raw features plus an intercept:
	// (XᵀX) w = Xᵀy, solved by Gaussian elimination with partial pivoting.
	n := k + 1
	a := make([][]float64, n)
	for i := range a {
		a[i] = make([]float64, n+1)
	}
	for _, r := range data {
		x := make([]float64, n)
		x[0] = 1
		for i, j := range idx {
			v, err := strconv.ParseFloat(r[j], 64)
			if err != nil {
				v = means[i]
			}
			x[i+1] = v
		}
		price, err := strconv.ParseFloat(r[target], 64)
		if err != nil {
			return model{}, fmt.Errorf("price %q: %w", r[target], err)
		}
		y := math.Log1p(price)
		for i := range n {
			for j := range n {
				a[i][j] += x[i] * x[j]
			}
			a[i][n] += x[i] * y
		}
	}
	for col := range n {
		pivot := col
		for r := col + 1; r < n; r++ {
			if math.Abs(a[r][col]) > math.Abs(a[pivot][col]) {
				pivot = r
			}
		}
		a[col], a[pivot] = a[pivot], a[col]
		for r := range n {
			if r == col {
				continue
			}
			f := a[r][col] / a[col][col]
			for c := col; c <= n; c++ {
				a[r][c] -= f * a[col][c]
			}
		}
	}
	w := make([]float64, n)
	for i := range n {
		w[i] = a[i][n] / a[i][i]
	}
	return model{Columns: columns, Means: means, Weights: w[1:], Intercept: w[0]}, nil
}
