package scoring

import (
	"encoding/json"
	"errors"
	"math"
	"os"
	"reflect"
	"strings"
	"testing"
)

type fixture struct {
	Name      string             `json:"name"`
	Task      string             `json:"task"`
	Classes   int                `json:"classes"`
	Truth     []int              `json:"truth"`
	Pred      []int              `json:"pred"`
	Probs     [][]float64        `json:"probs"`
	TruthVals []float64          `json:"truth_values"`
	PredVals  []float64          `json:"pred_values"`
	Expected  map[string]float64 `json:"expected"`
	Confusion [][]int            `json:"confusion"`
}

// TestMetricsMatchScikitLearn checks every metric against values computed
// independently by scikit-learn (testdata/make_fixtures.py says how).
func TestMetricsMatchScikitLearn(t *testing.T) {
	raw, err := os.ReadFile("testdata/fixtures.json")
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Cases []fixture `json:"cases"`
	}
	if err := json.Unmarshal(raw, &file); err != nil {
		t.Fatal(err)
	}
	if len(file.Cases) < 10 {
		t.Fatalf("only %d fixture cases", len(file.Cases))
	}
	seen := map[string]bool{}
	for _, fx := range file.Cases {
		t.Run(fx.Name, func(t *testing.T) {
			var names []string
			for m := range fx.Expected {
				names = append(names, m)
			}
			var got Score
			var err error
			if fx.Task == TaskClassification {
				got, err = Classify(names, fx.Truth, fx.Pred, fx.Probs, nil, fx.Classes)
				if err == nil && !reflect.DeepEqual(got.Confusion, fx.Confusion) {
					t.Errorf("confusion %v, want %v", got.Confusion, fx.Confusion)
				}
			} else {
				got, err = Regress(names, fx.TruthVals, fx.PredVals, nil)
			}
			if err != nil {
				t.Fatal(err)
			}
			for m, want := range fx.Expected {
				seen[m] = true
				v, ok := got.Values[m]
				if !ok || math.Abs(v-want) > 1e-9 {
					t.Errorf("%s = %v (defined %v), scikit-learn says %v", m, v, ok, want)
				}
			}
		})
	}
	for name := range Metrics {
		if !seen[name] {
			t.Errorf("metric %s has no scikit-learn fixture", name)
		}
	}
}

func TestMaskedScoringUsesOnlyThatPart(t *testing.T) {
	truth := []int{0, 0, 0, 0, 1, 1, 1, 1}
	pred := []int{0, 0, 0, 0, 0, 0, 0, 0}
	mask := []bool{true, true, false, false, true, false, false, false}
	got, err := Classify([]string{"accuracy", "recall"}, truth, pred, nil, mask, 2)
	if err != nil {
		t.Fatal(err)
	}
	if got.Values["accuracy"] != 2.0/3 || got.Values["recall"] != 0 {
		t.Fatalf("masked scores %v, want accuracy 2/3 and recall 0", got.Values)
	}
	if got.Confusion[0][0] != 2 || got.Confusion[1][0] != 1 {
		t.Fatalf("masked confusion %v", got.Confusion)
	}
}

func TestUnknownAndMisplacedMetricsAreRefused(t *testing.T) {
	if _, err := Classify([]string{"auc"}, []int{0}, []int{0}, nil, nil, 2); err == nil || !strings.Contains(err.Error(), "roc_auc") {
		t.Fatalf("unknown metric: %v (want the known ones listed)", err)
	}
	if _, err := Classify([]string{"rmse"}, []int{0}, []int{0}, nil, nil, 2); err == nil {
		t.Fatal("a regression metric scored a classification")
	}
	if _, err := Classify([]string{"f1"}, []int{0}, []int{0}, nil, nil, 3); err == nil {
		t.Fatal("binary f1 accepted for three classes")
	}
	if _, err := Classify([]string{"roc_auc"}, []int{0}, []int{0}, nil, nil, 2); err == nil {
		t.Fatal("roc_auc scored without probabilities")
	}
	if _, err := Regress([]string{"accuracy"}, []float64{1}, []float64{1}, nil); err == nil {
		t.Fatal("a classification metric scored a regression")
	}
}

func TestChecksNameFirstBadExample(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want string
	}{
		{"count", CheckClasses([]int{0, 1}, 3, 10, 100), "has 3 examples but the plugin returned 2"},
		{"too high", CheckClasses([]int{0, 10, -1}, 3, 10, 100), "example 101 is class 10"},
		{"negative", CheckClasses([]int{0, 1, -1}, 3, 10, 100), "example 102 is class -1"},
		{"nan value", CheckValues([]float64{1, math.NaN(), math.Inf(1)}, 3, 7, false), "example 8 is NaN"},
		{"inf value", CheckValues([]float64{1, 2, math.Inf(1)}, 3, 7, false), "example 9 is +Inf"},
		{"negative price", CheckValues([]float64{1, -2, 3}, 3, 0, true), "example 1 is -2"},
		{"value count", CheckValues([]float64{1}, 3, 0, false), "returned 1 values"},
		{"nan probability", CheckProbabilities([][]float64{{0.5, 0.5}, {math.NaN(), 1}}, 2, 2, 10), "example 11 is NaN"},
		{"probability sum", CheckProbabilities([][]float64{{0.5, 0.6}}, 1, 2, 0), "sum to"},
		{"probability width", CheckProbabilities([][]float64{{1}}, 1, 2, 0), "have 1 values"},
	}
	for _, tc := range cases {
		var bad *BadOutputError
		if !errors.As(tc.err, &bad) || !strings.Contains(bad.Msg, tc.want) {
			t.Errorf("%s: got %v, want bad output containing %q", tc.name, tc.err, tc.want)
		}
	}
	if err := CheckClasses([]int{0, 9, 5}, 3, 10, 0); err != nil {
		t.Fatalf("valid classes refused: %v", err)
	}
	if err := CheckValues([]float64{0, 1e6}, 2, 0, true); err != nil {
		t.Fatalf("valid values refused: %v", err)
	}
	if err := CheckProbabilities([][]float64{{0.25, 0.75}}, 1, 2, 0); err != nil {
		t.Fatalf("valid probabilities refused: %v", err)
	}
}

// FuzzClassify: any length (empty included), any class mix (one class
// included): no panic, bounded values, and the confusion matrix accounts
// for every example.
func FuzzClassify(f *testing.F) {
	f.Add([]byte{}, uint8(2))
	f.Add([]byte{0, 0, 0, 0}, uint8(2))
	f.Add([]byte{1, 1, 1}, uint8(2))
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, uint8(10))
	f.Fuzz(func(t *testing.T, data []byte, k uint8) {
		classes := int(k%9) + 2
		n := len(data) / 2
		truth, pred := make([]int, n), make([]int, n)
		probs := make([][]float64, n)
		for i := range n {
			truth[i] = int(data[2*i]) % classes
			pred[i] = int(data[2*i+1]) % classes
			probs[i] = make([]float64, classes)
			probs[i][pred[i]] = float64(data[2*i]) / 255
			rest := (1 - probs[i][pred[i]]) / float64(classes-1)
			for c := range probs[i] {
				if c != pred[i] {
					probs[i][c] = rest
				}
			}
		}
		names := []string{"accuracy", "macro_precision", "macro_recall", "macro_f1", "log_loss"}
		if classes == 2 {
			names = append(names, "precision", "recall", "f1", "roc_auc")
		}
		got, err := Classify(names, truth, pred, probs, nil, classes)
		if err != nil {
			t.Fatal(err)
		}
		total := 0
		for _, row := range got.Confusion {
			for _, c := range row {
				total += c
			}
		}
		if total != n {
			t.Fatalf("confusion counts %d examples of %d", total, n)
		}
		if n == 0 && len(got.Values) != 0 {
			t.Fatalf("empty input scored %v", got.Values)
		}
		for m, v := range got.Values {
			if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 || (m != "log_loss" && v > 1) {
				t.Fatalf("%s = %v", m, v)
			}
		}
		oneClass := true
		for _, y := range truth {
			oneClass = oneClass && y == truth[0]
		}
		if _, ok := got.Values["roc_auc"]; ok && (n == 0 || oneClass) {
			t.Fatal("roc_auc defined with one class present")
		}
	})
}

// FuzzRegress: any length, any finite values: no panic; RMSE ≥ MAE ≥ 0 and
// R² ≤ 1.
func FuzzRegress(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{5, 5, 5, 5})
	f.Add([]byte{0, 255, 3, 9, 200, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		n := len(data) / 2
		truth, pred := make([]float64, n), make([]float64, n)
		for i := range n {
			truth[i] = float64(data[2*i]) * 1000
			pred[i] = float64(data[2*i+1]) * 1000
		}
		got, err := Regress([]string{"rmse", "mae", "r2", "rmsle"}, truth, pred, nil)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			if len(got.Values) != 0 {
				t.Fatalf("empty input scored %v", got.Values)
			}
			return
		}
		rmse, mae, r2 := got.Values["rmse"], got.Values["mae"], got.Values["r2"]
		if mae < 0 || rmse < mae-1e-9 || r2 > 1 || math.IsNaN(r2) || got.Values["rmsle"] < 0 {
			t.Fatalf("inconsistent scores %v", got.Values)
		}
	})
}
