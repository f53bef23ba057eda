// Package scoring validates predictions and computes challenge metrics.
package scoring

import (
	"fmt"
	"math"
	"sort"
)

// Tasks a challenge can have.
const (
	TaskClassification = "classification"
	TaskRegression     = "regression"
)

// BadOutputError says what is wrong with a plugin's predictions; the judge
// fails the submission with reason bad_output and this message.
type BadOutputError struct {
	Msg string
}

func (e *BadOutputError) Error() string { return e.Msg }

func badOutput(format string, args ...any) error {
	return &BadOutputError{Msg: fmt.Sprintf(format, args...)}
}

// MetricInfo describes a metric a challenge may list.
type MetricInfo struct {
	Task           string
	HigherIsBetter bool
	// NeedsProbabilities: the plugin must return class probabilities.
	NeedsProbabilities bool
	// BinaryOnly: defined for two-class tasks only.
	BinaryOnly bool
	// NonNegative: predictions and targets must be ≥ 0.
	NonNegative bool
}

// Metrics lists every metric the platform computes. Binary precision,
// recall and F1 are for the positive class 1; the macro_ forms average the
// per-class values over the classes present in the truth or predictions
// (scikit-learn's convention), counting 0 where a class is never predicted.
var Metrics = map[string]MetricInfo{
	"accuracy":        {Task: TaskClassification, HigherIsBetter: true},
	"precision":       {Task: TaskClassification, HigherIsBetter: true, BinaryOnly: true},
	"recall":          {Task: TaskClassification, HigherIsBetter: true, BinaryOnly: true},
	"f1":              {Task: TaskClassification, HigherIsBetter: true, BinaryOnly: true},
	"macro_precision": {Task: TaskClassification, HigherIsBetter: true},
	"macro_recall":    {Task: TaskClassification, HigherIsBetter: true},
	"macro_f1":        {Task: TaskClassification, HigherIsBetter: true},
	"roc_auc":         {Task: TaskClassification, HigherIsBetter: true, NeedsProbabilities: true, BinaryOnly: true},
	"log_loss":        {Task: TaskClassification, HigherIsBetter: false, NeedsProbabilities: true},
	"rmse":            {Task: TaskRegression, HigherIsBetter: false},
	"mae":             {Task: TaskRegression, HigherIsBetter: false},
	"r2":              {Task: TaskRegression, HigherIsBetter: true},
	"rmsle":           {Task: TaskRegression, HigherIsBetter: false, NonNegative: true},
}

// MetricNames lists the known metrics, sorted, for error messages.
func MetricNames(task string) []string {
	var out []string
	for name, m := range Metrics {
		if task == "" || m.Task == task {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// Score is what one part (public or private) of a hidden set scored.
// A metric that is undefined on the part (any metric on an empty part, ROC
// AUC with one class present) is absent from Values.
type Score struct {
	Values map[string]float64
	// Confusion[i][j] counts examples of true class i predicted as j
	// (classification only).
	Confusion [][]int
}

// CheckClasses validates class predictions for a batch of n examples.
// offset is the batch's first example index, so the message names the
// example in the whole test set.
func CheckClasses(classes []int, n, numClasses, offset int) error {
	if len(classes) != n {
		return badOutput("batch starting at example %d has %d examples but the plugin returned %d class predictions", offset, n, len(classes))
	}
	for i, c := range classes {
		if c < 0 || c >= numClasses {
			return badOutput("prediction for example %d is class %d, outside 0..%d", offset+i, c, numClasses-1)
		}
	}
	return nil
}

// probabilitySumTolerance allows float32 rounding in a softmax output.
const probabilitySumTolerance = 1e-3

// CheckProbabilities validates per-class probabilities for a batch of n
// examples: one row of numClasses finite values in [0,1] summing to 1.
func CheckProbabilities(probs [][]float64, n, numClasses, offset int) error {
	if len(probs) != n {
		return badOutput("batch starting at example %d has %d examples but the plugin returned %d probability rows", offset, n, len(probs))
	}
	for i, row := range probs {
		if len(row) != numClasses {
			return badOutput("probabilities for example %d have %d values, want one per class (%d)", offset+i, len(row), numClasses)
		}
		var sum float64
		for k, p := range row {
			if math.IsNaN(p) || p < 0 || p > 1 {
				return badOutput("probability of class %d for example %d is %v, outside [0,1]", k, offset+i, p)
			}
			sum += p
		}
		if math.Abs(sum-1) > probabilitySumTolerance {
			return badOutput("probabilities for example %d sum to %v, not 1", offset+i, sum)
		}
	}
	return nil
}

// CheckValues validates regression predictions for a batch of n examples:
// finite, and ≥ 0 when a metric needs it.
func CheckValues(values []float64, n, offset int, nonNegative bool) error {
	if len(values) != n {
		return badOutput("batch starting at example %d has %d examples but the plugin returned %d values", offset, n, len(values))
	}
	for i, v := range values {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return badOutput("prediction for example %d is %v, not a finite number", offset+i, v)
		}
		if nonNegative && v < 0 {
			return badOutput("prediction for example %d is %v, but this challenge's metrics (RMSLE) need values ≥ 0", offset+i, v)
		}
	}
	return nil
}

// Classify computes the named metrics of predicted against true classes
// over the examples where mask is true (all when mask is nil). probs holds
// per-class probabilities and may be nil when no metric needs them.
func Classify(metrics []string, truth, pred []int, probs [][]float64, mask []bool, numClasses int) (Score, error) {
	if len(truth) != len(pred) || (probs != nil && len(probs) != len(truth)) {
		return Score{}, fmt.Errorf("scoring: %d labels, %d predictions, %d probability rows", len(truth), len(pred), len(probs))
	}
	if mask != nil {
		truth, pred, probs = masked(truth, mask), masked(pred, mask), masked(probs, mask)
	}
	conf := make([][]int, numClasses)
	for i := range conf {
		conf[i] = make([]int, numClasses)
	}
	for i := range truth {
		if truth[i] < 0 || truth[i] >= numClasses || pred[i] < 0 || pred[i] >= numClasses {
			return Score{}, fmt.Errorf("scoring: example %d has class %d predicted as %d, outside 0..%d", i, truth[i], pred[i], numClasses-1)
		}
		conf[truth[i]][pred[i]]++
	}
	out := Score{Values: map[string]float64{}, Confusion: conf}
	for _, m := range metrics {
		info, ok := Metrics[m]
		if !ok || info.Task != TaskClassification {
			return Score{}, fmt.Errorf("scoring: %q is not a classification metric (known: %v)", m, MetricNames(TaskClassification))
		}
		if info.BinaryOnly && numClasses != 2 {
			return Score{}, fmt.Errorf("scoring: %q needs two classes, this task has %d", m, numClasses)
		}
		if info.NeedsProbabilities && probs == nil {
			return Score{}, fmt.Errorf("scoring: %q needs class probabilities", m)
		}
		if len(truth) == 0 {
			continue // nothing to score: every metric is undefined
		}
		v, defined := FromConfusion(m, conf, len(truth))
		switch m {
		case "roc_auc":
			scores := make([]float64, len(probs))
			for i, row := range probs {
				scores[i] = row[1]
			}
			v, defined = rocAUC(truth, scores)
		case "log_loss":
			v, defined = logLoss(truth, probs)
		}
		if defined {
			out.Values[m] = v
		}
	}
	return out, nil
}

// OfConfusion reports whether a metric depends on the confusion matrix
// alone (FromConfusion computes it).
func OfConfusion(metric string) bool {
	switch metric {
	case "accuracy", "precision", "recall", "f1", "macro_precision", "macro_recall", "macro_f1":
		return true
	}
	return false
}

// FromConfusion computes a metric that depends on the confusion matrix
// alone (conf[truth][predicted] counts over n examples); ok is false for
// the others (roc_auc, log_loss), which need more.
func FromConfusion(metric string, conf [][]int, n int) (v float64, ok bool) {
	switch metric {
	case "accuracy":
		return accuracy(conf, n), true
	case "precision":
		return precision(conf, 1), true
	case "recall":
		return recall(conf, 1), true
	case "f1":
		return f1(conf, 1), true
	case "macro_precision":
		return macro(conf, precision), true
	case "macro_recall":
		return macro(conf, recall), true
	case "macro_f1":
		return macro(conf, f1), true
	}
	return 0, false
}

func accuracy(conf [][]int, n int) float64 {
	correct := 0
	for k := range conf {
		correct += conf[k][k]
	}
	return safeDiv(float64(correct), float64(n))
}

func colSum(conf [][]int, k int) (s int) {
	for i := range conf {
		s += conf[i][k]
	}
	return s
}

func rowSum(conf [][]int, k int) (s int) {
	for _, v := range conf[k] {
		s += v
	}
	return s
}

func precision(conf [][]int, k int) float64 {
	return safeDiv(float64(conf[k][k]), float64(colSum(conf, k)))
}

func recall(conf [][]int, k int) float64 {
	return safeDiv(float64(conf[k][k]), float64(rowSum(conf, k)))
}

// f1 is 2·tp/(2·tp+fp+fn), which equals the harmonic mean of precision and
// recall and is 0 (not undefined) when a class is neither present nor hit.
func f1(conf [][]int, k int) float64 {
	tp := conf[k][k]
	return safeDiv(float64(2*tp), float64(rowSum(conf, k)+colSum(conf, k)))
}

// macro averages per-class values over the classes that occur in the truth
// or the predictions; an empty part has none and scores 0.
func macro(conf [][]int, per func([][]int, int) float64) float64 {
	var sum float64
	present := 0
	for k := range conf {
		if rowSum(conf, k) == 0 && colSum(conf, k) == 0 {
			continue
		}
		present++
		sum += per(conf, k)
	}
	return safeDiv(sum, float64(present))
}

// rocAUC is the probability that a random positive scores above a random
// negative, ties counting half (the Mann-Whitney U statistic), which is the
// area under the ROC curve. It is undefined unless both classes occur.
func rocAUC(truth []int, scores []float64) (float64, bool) {
	n := len(truth)
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return scores[idx[a]] < scores[idx[b]] })
	var positives, negatives int
	var rankSum float64
	for i := 0; i < n; {
		j := i
		for j < n && scores[idx[j]] == scores[idx[i]] {
			j++
		}
		avgRank := float64(i+j+1) / 2 // ranks i+1..j, averaged over the tie
		for _, e := range idx[i:j] {
			if truth[e] == 1 {
				positives++
				rankSum += avgRank
			}
		}
		i = j
	}
	negatives = n - positives
	if positives == 0 || negatives == 0 {
		return 0, false
	}
	u := rankSum - float64(positives)*float64(positives+1)/2
	return u / (float64(positives) * float64(negatives)), true
}

// logLossEps is scikit-learn's clipping bound for float64 probabilities.
const logLossEps = 2.220446049250313e-16

// logLoss is the mean negative log-probability of the true class, with
// probabilities clipped to [eps, 1-eps] and each row renormalised, as
// scikit-learn does. It is undefined on an empty part.
func logLoss(truth []int, probs [][]float64) (float64, bool) {
	if len(truth) == 0 {
		return 0, false
	}
	var sum float64
	for i, row := range probs {
		sum += LogLossTerm(truth[i], row)
	}
	return sum / float64(len(truth)), true
}

// LogLossTerm is one example's part of the log loss: log loss is their
// mean.
func LogLossTerm(truth int, row []float64) float64 {
	var total, pTrue float64
	for k, p := range row {
		p = math.Min(math.Max(p, logLossEps), 1-logLossEps)
		total += p
		if k == truth {
			pTrue = p
		}
	}
	return -math.Log(pTrue / total)
}

// Regress computes the named metrics of predicted against true values over
// the examples where mask is true (all when mask is nil). Every metric is
// undefined on an empty part.
func Regress(metrics []string, truth, pred []float64, mask []bool) (Score, error) {
	if len(truth) != len(pred) {
		return Score{}, fmt.Errorf("scoring: %d targets but %d predictions", len(truth), len(pred))
	}
	if mask != nil {
		truth, pred = masked(truth, mask), masked(pred, mask)
	}
	out := Score{Values: map[string]float64{}}
	n := float64(len(truth))
	for _, m := range metrics {
		info, ok := Metrics[m]
		if !ok || info.Task != TaskRegression {
			return Score{}, fmt.Errorf("scoring: %q is not a regression metric (known: %v)", m, MetricNames(TaskRegression))
		}
		if len(truth) == 0 {
			continue
		}
		switch m {
		case "rmse":
			var s float64
			for i := range truth {
				d := truth[i] - pred[i]
				s += d * d
			}
			out.Values[m] = math.Sqrt(s / n)
		case "mae":
			var s float64
			for i := range truth {
				s += math.Abs(truth[i] - pred[i])
			}
			out.Values[m] = s / n
		case "r2":
			out.Values[m] = r2(truth, pred)
		case "rmsle":
			var s float64
			for i := range truth {
				if truth[i] < 0 || pred[i] < 0 {
					return Score{}, fmt.Errorf("scoring: rmsle needs values ≥ 0, example %d has truth %v and prediction %v", i, truth[i], pred[i])
				}
				d := math.Log1p(truth[i]) - math.Log1p(pred[i])
				s += d * d
			}
			out.Values[m] = math.Sqrt(s / n)
		}
	}
	return out, nil
}

// r2 is 1 - SS_res/SS_tot; with constant truth it is 1 for a perfect
// prediction and 0 otherwise (scikit-learn's force_finite convention).
func r2(truth, pred []float64) float64 {
	var mean float64
	for _, y := range truth {
		mean += y
	}
	mean /= float64(len(truth))
	var ssRes, ssTot float64
	for i, y := range truth {
		ssRes += (y - pred[i]) * (y - pred[i])
		ssTot += (y - mean) * (y - mean)
	}
	if ssTot == 0 {
		if ssRes == 0 {
			return 1
		}
		return 0
	}
	return 1 - ssRes/ssTot
}

// masked keeps the elements of xs where mask is true; nil stays nil, so
// "no probabilities" survives masking.
func masked[T any](xs []T, mask []bool) []T {
	if xs == nil {
		return nil
	}
	out := make([]T, 0, len(xs))
	for i, x := range xs {
		if mask[i] {
			out = append(out, x)
		}
	}
	return out
}

// safeDiv is a/b, or 0 when b is 0 (scikit-learn's zero_division=0).
func safeDiv(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}
