// Package scoring validates predictions and computes challenge metrics.
package scoring

import "fmt"

// BadOutputError says what is wrong with a plugin's predictions; the judge
// fails the submission with reason bad_output and this message.
type BadOutputError struct {
	Msg string
}

func (e *BadOutputError) Error() string { return e.Msg }

// CheckClasses validates class predictions for a batch of n examples.
// offset is the batch's first example index, so the message names the
// example in the whole test set.
func CheckClasses(classes []int, n, numClasses, offset int) error {
	if len(classes) != n {
		return &BadOutputError{Msg: fmt.Sprintf("batch starting at example %d has %d examples but the plugin returned %d predictions", offset, n, len(classes))}
	}
	for i, c := range classes {
		if c < 0 || c >= numClasses {
			return &BadOutputError{Msg: fmt.Sprintf("prediction for example %d is class %d, outside 0..%d", offset+i, c, numClasses-1)}
		}
	}
	return nil
}

// Classification computes the named metrics of predicted against true
// classes over the examples where mask is true (all when mask is nil).
// Known metrics: accuracy, macro_recall.
func Classification(metrics []string, truth, pred []int, mask []bool, numClasses int) (map[string]float64, error) {
	if len(truth) != len(pred) {
		return nil, fmt.Errorf("scoring: %d labels but %d predictions", len(truth), len(pred))
	}
	var correct, total int
	support := make([]int, numClasses)
	hits := make([]int, numClasses)
	for i := range truth {
		if mask != nil && !mask[i] {
			continue
		}
		total++
		support[truth[i]]++
		if truth[i] == pred[i] {
			correct++
			hits[truth[i]]++
		}
	}
	out := make(map[string]float64, len(metrics))
	for _, m := range metrics {
		switch m {
		case "accuracy":
			out[m] = safeDiv(float64(correct), float64(total))
		case "macro_recall":
			var sum float64
			var present int
			for k := range support {
				if support[k] == 0 {
					continue // a class absent from the split has no recall
				}
				present++
				sum += float64(hits[k]) / float64(support[k])
			}
			out[m] = safeDiv(sum, float64(present))
		default:
			return nil, fmt.Errorf("scoring: unknown classification metric %q", m)
		}
	}
	return out, nil
}

// safeDiv is a/b, or 0 for an empty split (no examples, no credit).
func safeDiv(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}
