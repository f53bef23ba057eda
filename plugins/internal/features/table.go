package features

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/hackarena/hackarena/sdk"
)

// TableEncoder turns table rows into a network's inputs: numeric columns
// standardised (a missing value becomes the mean, 0), categorical columns
// one-hot over the levels seen often enough in training (others, and
// missing, are all zeros). It also standardises the log of the target.
type TableEncoder struct {
	Numeric     []NumericColumn     `json:"numeric"`
	Categorical []CategoricalColumn `json:"categorical"`
	// TargetMean and TargetStd standardise log(target).
	TargetMean float64 `json:"target_mean"`
	TargetStd  float64 `json:"target_std"`
}

// NumericColumn is a standardised column.
type NumericColumn struct {
	Name string  `json:"name"`
	Mean float64 `json:"mean"`
	Std  float64 `json:"std"`
}

// CategoricalColumn is a one-hot column.
type CategoricalColumn struct {
	Name   string   `json:"name"`
	Levels []string `json:"levels"`
}

// Width is the number of inputs one row becomes.
func (e *TableEncoder) Width() int {
	w := len(e.Numeric)
	for _, c := range e.Categorical {
		w += len(c.Levels)
	}
	return w
}

// FitTableEncoder learns an encoder from a CSV's header and rows. Columns
// named in categorical, and any with a cell that is not a number, are
// categorical; a level needs minCount rows to get its own input.
func FitTableEncoder(header []string, rows [][]string, target string, categorical []string, minCount int) (*TableEncoder, error) {
	ti := slices.Index(header, target)
	if ti < 0 {
		return nil, fmt.Errorf("no target column %q", target)
	}
	e := &TableEncoder{}
	for j, name := range header {
		if j == ti {
			continue
		}
		numeric := !slices.Contains(categorical, name)
		var values []float64
		for _, r := range rows {
			cell := strings.TrimSpace(r[j])
			if cell == "" {
				continue
			}
			v, err := strconv.ParseFloat(cell, 64)
			if err != nil {
				numeric = false
				break
			}
			values = append(values, v)
		}
		if numeric {
			mean, std := meanStd(values)
			e.Numeric = append(e.Numeric, NumericColumn{Name: name, Mean: mean, Std: std})
			continue
		}
		counts := map[string]int{}
		for _, r := range rows {
			if cell := strings.TrimSpace(r[j]); cell != "" {
				counts[cell]++
			}
		}
		var levels []string
		for level, n := range counts {
			if n >= minCount {
				levels = append(levels, level)
			}
		}
		slices.Sort(levels)
		e.Categorical = append(e.Categorical, CategoricalColumn{Name: name, Levels: levels})
	}
	var logs []float64
	for i, r := range rows {
		v, err := strconv.ParseFloat(strings.TrimSpace(r[ti]), 64)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("row %d: target %q is not a positive number", i+1, r[ti])
		}
		logs = append(logs, math.Log(v))
	}
	e.TargetMean, e.TargetStd = meanStd(logs)
	return e, nil
}

func meanStd(v []float64) (float64, float64) {
	if len(v) == 0 {
		return 0, 1
	}
	var sum float64
	for _, x := range v {
		sum += x
	}
	mean := sum / float64(len(v))
	var ss float64
	for _, x := range v {
		ss += (x - mean) * (x - mean)
	}
	std := math.Sqrt(ss / float64(len(v)))
	if std == 0 {
		std = 1
	}
	return mean, std
}

// EncodeRows encodes CSV rows (training).
func (e *TableEncoder) EncodeRows(header []string, rows [][]string) ([]float32, error) {
	cols := make([]sdk.Column, len(header))
	for j, name := range header {
		cols[j] = sdk.Column{Name: name, Strings: make([]string, len(rows))}
		for i, r := range rows {
			cols[j].Strings[i] = r[j]
		}
	}
	return e.Encode(cols, len(rows))
}

// Encode encodes a batch's columns (serving). A column may arrive as
// numbers or strings either way; a missing column is an error.
func (e *TableEncoder) Encode(cols []sdk.Column, n int) ([]float32, error) {
	byName := map[string]*sdk.Column{}
	for i := range cols {
		byName[cols[i].Name] = &cols[i]
	}
	width := e.Width()
	out := make([]float32, n*width)
	for k, c := range e.Numeric {
		col, ok := byName[c.Name]
		if !ok {
			return nil, fmt.Errorf("column %q is missing", c.Name)
		}
		for i := range n {
			v := number(col, i)
			if !math.IsNaN(v) {
				out[i*width+k] = float32((v - c.Mean) / c.Std)
			}
		}
	}
	off := len(e.Numeric)
	for _, c := range e.Categorical {
		col, ok := byName[c.Name]
		if !ok {
			return nil, fmt.Errorf("column %q is missing", c.Name)
		}
		for i := range n {
			if l, found := slices.BinarySearch(c.Levels, text(col, i)); found {
				out[i*width+off+l] = 1
			}
		}
		off += len(c.Levels)
	}
	return out, nil
}

func number(c *sdk.Column, i int) float64 {
	if c.Numbers != nil {
		return c.Numbers[i]
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(c.Strings[i]), 64)
	if err != nil {
		return math.NaN()
	}
	return v
}

func text(c *sdk.Column, i int) string {
	if c.Strings != nil {
		return strings.TrimSpace(c.Strings[i])
	}
	if math.IsNaN(c.Numbers[i]) {
		return ""
	}
	return strconv.FormatFloat(c.Numbers[i], 'f', -1, 64)
}

// Targets standardises log(target) of CSV rows.
func (e *TableEncoder) Targets(header []string, rows [][]string, target string) ([]float32, error) {
	ti := slices.Index(header, target)
	if ti < 0 {
		return nil, fmt.Errorf("no target column %q", target)
	}
	y := make([]float32, len(rows))
	for i, r := range rows {
		v, err := strconv.ParseFloat(strings.TrimSpace(r[ti]), 64)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("row %d: target %q is not a positive number", i+1, r[ti])
		}
		y[i] = float32((math.Log(v) - e.TargetMean) / e.TargetStd)
	}
	return y, nil
}

// Price undoes the target's standardisation and log.
func (e *TableEncoder) Price(out float32) float64 {
	return math.Exp(float64(out)*e.TargetStd + e.TargetMean)
}

// LoadTableEncoder reads the JSON the trainer saved.
func LoadTableEncoder(data []byte) (*TableEncoder, error) {
	var e TableEncoder
	if err := json.Unmarshal(data, &e); err != nil {
		return nil, fmt.Errorf("table encoder: %w", err)
	}
	return &e, nil
}
