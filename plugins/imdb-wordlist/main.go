// Command imdb-wordlist is the reference IMDB submission: it counts
// positive and negative opinion words and turns the balance into a
// probability. No training; a baseline any model should beat.
package main

import (
	"context"
	"fmt"
	"math"
	"strings"
	"unicode"

	"github.com/hackarena/hackarena/sdk"
)

var positive = words(`good great excellent best love loved wonderful amazing perfect brilliant
	enjoyed enjoy beautiful favorite superb fantastic fun recommend masterpiece touching
	funny moving highly well outstanding powerful delightful gem today classic`)

var negative = words(`bad worst awful terrible boring waste poor stupid horrible worse
	dull poorly lame annoying mess ridiculous pointless nothing unfortunately disappointing
	disappointed avoid crap fails failed supposed weak script even`)

func words(list string) map[string]bool {
	out := map[string]bool{}
	for _, w := range strings.Fields(list) {
		out[w] = true
	}
	return out
}

type model struct{}

func (model) Describe(context.Context) (sdk.Info, error) {
	return sdk.Info{Name: "imdb-wordlist", Version: "1"}, nil
}

func (model) Predict(_ context.Context, b sdk.Batch) (sdk.Predictions, error) {
	if len(b.Texts) != b.Size {
		return sdk.Predictions{}, fmt.Errorf("want %d texts, got %d", b.Size, len(b.Texts))
	}
	out := sdk.Predictions{Classes: make([]int, b.Size), Probabilities: make([][]float32, b.Size)}
	for i, text := range b.Texts {
		text = strings.ReplaceAll(strings.ToLower(text), "<br />", " ")
		var score float64
		for _, w := range strings.FieldsFunc(text, func(r rune) bool { return !unicode.IsLetter(r) }) {
			switch {
			case positive[w]:
				score++
			case negative[w]:
				score--
			}
		}
		p := 1 / (1 + math.Exp(-0.5*score))
		out.Probabilities[i] = []float32{float32(1 - p), float32(p)}
		if p >= 0.5 {
			out.Classes[i] = 1
		}
	}
	return out, nil
}

func main() { sdk.Serve(model{}) }
