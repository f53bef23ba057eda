package challenges

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"os"
)

// buildIMDB serves the training reviews as they are and reads the test
// reviews as the hidden set. The mirror's meta.tsv.gz (star ratings, which
// give the label away) is never named by the spec, so it is never served.
func buildIMDB(c *Challenge, files map[string]DataFile) error {
	c.Data = []DataFile{files["train"]}
	c.evaluation.Files = map[string]string{"train": files["train"].Name}
	// Counting the test reviews is cheap next to reading them; a file that
	// cannot be counted leaves eval's time limit unscaled.
	c.evaluation.HiddenExamples, _ = countLines(files["test"].Path)
	test := files["test"].Path
	split := c.Spec.Split
	numClasses := c.NumClasses
	c.loadHidden = func() (*HiddenSet, error) {
		texts, labels, err := readReviews(test, numClasses)
		if err != nil {
			return nil, err
		}
		h := &HiddenSet{Count: len(texts), Texts: texts, Labels: labels}
		h.Public = SplitPublic(h.Count, split.PublicFraction, split.Seed)
		h.Examples = identity(h.Count)
		h.shuffle(split.Seed)
		return h, nil
	}
	return nil
}

// readReviews reads a gzip JSON Lines file of {"text","label"} objects.
func readReviews(path string, numClasses int) ([]string, []int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("open reviews: %w", err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return nil, nil, fmt.Errorf("read reviews %s: %w", path, err)
	}
	defer zr.Close()
	sc := bufio.NewScanner(zr)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var texts []string
	var labels []int
	for line := 1; sc.Scan(); line++ {
		var row struct {
			Text  *string `json:"text"`
			Label *int    `json:"label"`
		}
		if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
			return nil, nil, fmt.Errorf("reviews %s line %d: %w", path, line, err)
		}
		if row.Text == nil || row.Label == nil || *row.Label < 0 || *row.Label >= numClasses {
			return nil, nil, fmt.Errorf("reviews %s line %d: want {\"text\": string, \"label\": 0..%d}", path, line, numClasses-1)
		}
		texts = append(texts, *row.Text)
		labels = append(labels, *row.Label)
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("read reviews %s: %w", path, err)
	}
	return texts, labels, nil
}
