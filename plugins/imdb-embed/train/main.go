// Command train fits imdb-embed (the Keras text-classification example:
// the 10,000 most frequent training words, reviews padded to 256 ids,
// Embedding 16 → GlobalAveragePooling1D → Dense 16 ReLU → Dense 1
// sigmoid) on the public training reviews, and writes the network, its
// weights and the vocabulary beside the plugin.
package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hackarena/hackarena/plugins/internal/features"
	"github.com/hackarena/hackarena/plugins/internal/refdata"
	"github.com/hackarena/hackarena/sdk/network"
	"github.com/hackarena/hackarena/sdk/nn"
)

const (
	vocabularySize = 10000
	sequenceLength = 256
)

func main() {
	dir := flag.String("o", ".", "directory to write network.json, weights.npz and vocabulary.txt into")
	flag.Parse()
	if err := run(*dir); err != nil {
		fmt.Fprintln(os.Stderr, "train imdb-embed:", err)
		os.Exit(1)
	}
}

func run(dir string) error {
	ctx := context.Background()
	texts, labels, err := refdata.IMDB(ctx)
	if err != nil {
		return err
	}
	// The file is sorted by label: shuffle, or the validation split is
	// all positive reviews.
	order := rand.New(rand.NewPCG(1, 2)).Perm(len(texts))
	counts := map[string]int{}
	for _, t := range texts {
		for _, w := range features.Words(t) {
			counts[w]++
		}
	}
	words := make([]string, 0, len(counts))
	for w := range counts {
		words = append(words, w)
	}
	slices.SortFunc(words, func(a, b string) int {
		return cmp.Or(cmp.Compare(counts[b], counts[a]), cmp.Compare(a, b))
	})
	words = words[:vocabularySize-2]
	vocab := features.NewVocabulary(words)
	x := make([]float32, 0, len(texts)*sequenceLength)
	y := make([]float32, 0, len(texts))
	for _, i := range order {
		x = append(x, vocab.Sequence(texts[i], sequenceLength)...)
		y = append(y, float32(labels[i]))
	}
	net := &network.Network{Input: []int{sequenceLength}, Layers: []network.Layer{
		{Kind: network.Embedding, Name: "embedding", InputDim: vocab.Size(), OutputDim: 16},
		{Kind: network.GlobalAveragePooling1D},
		{Kind: network.Dense, Name: "hidden", Units: 16, Activation: "relu"},
		{Kind: network.Dense, Name: "out", Units: 1, Activation: "sigmoid"},
	}}
	if _, err := refdata.Train(ctx, dir, net, x, y, nn.FitConfig{Epochs: 40, BatchSize: 512, Loss: nn.BinaryCrossEntropy,
		ValidationSplit: 0.2, Patience: 3, Seed: 1}); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "vocabulary.txt"), []byte(strings.Join(words, "\n")+"\n"), 0o644)
}
