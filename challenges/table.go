package challenges

import (
	"bytes"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/hackarena/hackarena/sdk"
)

// TableTrainFile is the name of the public training file a csv-table
// challenge makes from its training rows.
const TableTrainFile = "train.csv"

// tableColumn is a column the judge sends: numbers (NaN where the cell is
// empty) or strings.
type tableColumn sdk.Column

func (c *tableColumn) add(cell string, numeric bool) {
	cell = strings.TrimSpace(cell)
	if !numeric {
		c.Strings = append(c.Strings, cell)
		return
	}
	v := math.NaN()
	if cell != "" {
		v, _ = strconv.ParseFloat(cell, 64)
	}
	c.Numbers = append(c.Numbers, v)
}

// buildTable cuts a CSV into public training rows and hidden test rows.
// Training rows are served as train.csv without the dropped columns; the
// hidden rows become named columns: numbers (NaN where the cell is empty)
// for columns whose every filled cell is a number, strings otherwise.
// Only an empty cell is missing: "NA" is a category (Ames' "no alley").
func buildTable(c *Challenge, files map[string]DataFile) error {
	ds := c.Spec.Dataset
	src := files["all"].Path
	raw, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("read table %s: %w", src, err)
	}
	records, err := csv.NewReader(bytes.NewReader(raw)).ReadAll()
	if err != nil {
		return fmt.Errorf("read table %s: %w", src, err)
	}
	if len(records) < 2 {
		return fmt.Errorf("table %s has no data rows", src)
	}
	header, rows := records[0], records[1:]
	target := slices.Index(header, ds.Target)
	if target < 0 {
		return fmt.Errorf("table %s has no target column %q (dataset.target)", src, ds.Target)
	}
	for _, name := range append(append([]string(nil), ds.Drop...), ds.Categorical...) {
		if !slices.Contains(header, name) {
			return fmt.Errorf("table %s has no column %q named in dataset.drop or dataset.categorical", src, name)
		}
	}
	if ds.TrainRows >= len(rows) {
		return fmt.Errorf("dataset.train_rows is %d but table %s has only %d rows; leave some for the hidden set", ds.TrainRows, src, len(rows))
	}
	targets := make([]float64, len(rows))
	for i, r := range rows {
		v, err := strconv.ParseFloat(strings.TrimSpace(r[target]), 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("table %s row %d: target %q is not a number", src, i+1, r[target])
		}
		targets[i] = v
	}
	var features []int
	for j, name := range header {
		if j != target && !slices.Contains(ds.Drop, name) {
			features = append(features, j)
		}
	}

	isTrain := SplitCount(len(rows), ds.TrainRows, c.Spec.Split.Seed)
	var train bytes.Buffer
	w := csv.NewWriter(&train)
	trainHeader := []string{}
	for _, j := range features {
		trainHeader = append(trainHeader, header[j])
	}
	trainHeader = append(trainHeader, header[target])
	_ = w.Write(trainHeader)
	var hiddenRows []int
	for i, r := range rows {
		if !isTrain[i] {
			hiddenRows = append(hiddenRows, i)
			continue
		}
		out := make([]string, 0, len(features)+1)
		for _, j := range features {
			out = append(out, strings.TrimSpace(r[j]))
		}
		_ = w.Write(append(out, strings.TrimSpace(r[target])))
	}
	w.Flush()
	if err := w.Error(); err != nil {
		return fmt.Errorf("write training rows: %w", err)
	}
	sum := sha256.Sum256(train.Bytes())
	c.Data = []DataFile{{Name: TableTrainFile, Bytes: int64(train.Len()), SHA256: hex.EncodeToString(sum[:]), Content: train.Bytes()}}

	h := &HiddenSet{Count: len(hiddenRows), Targets: make([]float64, len(hiddenRows))}
	for k, i := range hiddenRows {
		h.Targets[k] = targets[i]
	}
	for _, j := range features {
		col := tableColumn{Name: header[j]}
		numeric := !slices.Contains(ds.Categorical, header[j])
		// The column's type comes from all rows, so the training file and
		// the hidden set agree on it.
		for _, r := range rows {
			if cell := strings.TrimSpace(r[j]); cell != "" {
				if _, err := strconv.ParseFloat(cell, 64); err != nil {
					numeric = false
					break
				}
			}
		}
		for _, i := range hiddenRows {
			col.add(rows[i][j], numeric)
		}
		h.Columns = append(h.Columns, sdk.Column(col))
		c.evaluation.Columns = append(c.evaluation.Columns, ColumnKind{Name: col.Name, Numeric: numeric})
	}
	c.evaluation.Files, c.evaluation.Target = map[string]string{"train": TableTrainFile}, ds.Target
	c.evaluation.HiddenExamples = len(hiddenRows)
	h.Public = SplitPublic(h.Count, c.Spec.Split.PublicFraction, c.Spec.Split.Seed+1)
	// A hidden example is named by its row in the data set: another seed
	// draws other rows, and only those both draws share can be re-matched.
	h.Examples = hiddenRows
	h.shuffle(c.Spec.Split.Seed)
	c.loadHidden = func() (*HiddenSet, error) { return h, nil }
	return nil
}
