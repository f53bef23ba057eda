package scoring

import (
	"errors"
	"math"
	"strings"
	"testing"
)

func TestClassificationMetrics(t *testing.T) {
	// Hand-checked: classes 0,1,2 with supports 4,2,2.
	truth := []int{0, 0, 0, 0, 1, 1, 2, 2}
	pred := []int{0, 0, 0, 1, 1, 0, 2, 2}
	cases := []struct {
		name     string
		mask     []bool
		accuracy float64
		recall   float64
	}{
		// accuracy 6/8; recalls 3/4, 1/2, 2/2 → mean 0.75
		{"all", nil, 0.75, 0.75},
		// first half only: class 0 all correct but one → 3/4; only class 0 present
		{"masked", []bool{true, true, true, true, false, false, false, false}, 0.75, 0.75},
		// classes 1 and 2 only: 3 of 4 right; recalls 1/2 and 1 → 0.75
		{"other half", []bool{false, false, false, false, true, true, true, true}, 0.75, 0.75},
		// a mask where recall and accuracy differ: 0 (3/3 right), 1 (0/1)
		{"differ", []bool{true, true, true, false, false, true, false, false}, 0.75, 0.5},
		{"empty", make([]bool, 8), 0, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Classification([]string{"accuracy", "macro_recall"}, truth, pred, tc.mask, 3)
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(got["accuracy"]-tc.accuracy) > 1e-12 || math.Abs(got["macro_recall"]-tc.recall) > 1e-12 {
				t.Fatalf("got %v, want accuracy %v macro_recall %v", got, tc.accuracy, tc.recall)
			}
		})
	}
	if _, err := Classification([]string{"auc"}, truth, pred, nil, 3); err == nil {
		t.Fatal("unknown metric accepted")
	}
}

func TestCheckClassesNamesFirstBadExample(t *testing.T) {
	cases := []struct {
		classes []int
		want    string
	}{
		{[]int{0, 1}, "has 3 examples but the plugin returned 2"},
		{[]int{0, 10, -1}, "example 101 is class 10"},
		{[]int{0, 1, -1}, "example 102 is class -1"},
	}
	for _, tc := range cases {
		err := CheckClasses(tc.classes, 3, 10, 100)
		var bad *BadOutputError
		if !errors.As(err, &bad) || !strings.Contains(bad.Msg, tc.want) {
			t.Errorf("%v: got %v, want %q", tc.classes, err, tc.want)
		}
	}
	if err := CheckClasses([]int{0, 9, 5}, 3, 10, 0); err != nil {
		t.Fatalf("valid predictions refused: %v", err)
	}
}
