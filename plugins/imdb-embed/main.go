// Command imdb-embed is the reference IMDB submission: word embeddings
// averaged over the review and two Dense layers, run on the judge's
// Engine (see train/).
package main

import (
	_ "embed"
	"strings"

	"github.com/hackarena/hackarena/plugins/internal/features"
	"github.com/hackarena/hackarena/plugins/internal/served"
	"github.com/hackarena/hackarena/sdk"
)

//go:generate go run ./train -o .

var (
	//go:embed network.json
	networkJSON []byte
	//go:embed weights.npz
	weightsNPZ []byte
	//go:embed vocabulary.txt
	vocabularyTxt string
)

const sequenceLength = 256

func main() {
	vocab := features.NewVocabulary(strings.Fields(vocabularyTxt))
	sdk.Serve(&served.Model{
		Name: "imdb-embed", Version: "1",
		NetworkJSON: networkJSON, WeightsNPZ: weightsNPZ,
		Features: func(b sdk.Batch) ([]float32, error) {
			x := make([]float32, 0, len(b.Texts)*sequenceLength)
			for _, t := range b.Texts {
				x = append(x, vocab.Sequence(t, sequenceLength)...)
			}
			return x, nil
		},
		Answer: func(out []float32, n int) sdk.Predictions {
			p := sdk.Predictions{Classes: make([]int, n), Probabilities: make([][]float32, n)}
			for i, pos := range out[:n] {
				if pos >= 0.5 {
					p.Classes[i] = 1
				}
				p.Probabilities[i] = []float32{1 - pos, pos}
			}
			return p
		},
	})
}
