// Command train fits houses-mlp: log(SalePrice) regression by an MLP on
// standardised numeric and one-hot categorical columns of the public
// train.csv, and writes the network, its weights and the encoder beside
// the plugin.
package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"

	"github.com/hackarena/hackarena/plugins/internal/features"
	"github.com/hackarena/hackarena/plugins/internal/refdata"
	"github.com/hackarena/hackarena/sdk/network"
	"github.com/hackarena/hackarena/sdk/nn"
)

func main() {
	dir := flag.String("o", ".", "directory to write network.json, weights.npz and encoder.json into")
	flag.Parse()
	if err := run(*dir); err != nil {
		fmt.Fprintln(os.Stderr, "train houses-mlp:", err)
		os.Exit(1)
	}
}

func run(dir string) error {
	ctx := context.Background()
	raw, err := refdata.HousesCSV(ctx)
	if err != nil {
		return err
	}
	rows, err := csv.NewReader(bytes.NewReader(raw)).ReadAll()
	if err != nil {
		return fmt.Errorf("read train.csv: %w", err)
	}
	header, data := rows[0], rows[1:]
	enc, err := features.FitTableEncoder(header, data, "SalePrice", []string{"MS SubClass"}, 10)
	if err != nil {
		return err
	}
	x, err := enc.EncodeRows(header, data)
	if err != nil {
		return err
	}
	y, err := enc.Targets(header, data, "SalePrice")
	if err != nil {
		return err
	}
	net := &network.Network{Input: []int{enc.Width()}, Layers: []network.Layer{
		{Kind: network.Dense, Name: "hidden", Units: 64, Activation: "relu"},
		{Kind: network.Dropout, Rate: 0.2},
		{Kind: network.Dense, Name: "out", Units: 1},
	}}
	m, err := refdata.Train(ctx, dir, net, x, y, nn.FitConfig{Epochs: 300, BatchSize: 32, Loss: nn.MeanSquaredError,
		LearningRate: 0.0005, L2: 1e-3, ValidationSplit: 0.2, Patience: 20, Seed: 1})
	if err != nil {
		return err
	}
	// The validation rows' RMSLE, in prices, is the figure to compare
	// with the leaderboard.
	nVal := len(data) / 5
	out, err := m.Predict(x[(len(data)-nVal)*enc.Width():])
	if err != nil {
		return err
	}
	var sum float64
	for i, o := range out {
		d := math.Log(enc.Price(o)) - math.Log(enc.Price(y[len(data)-nVal+i]))
		sum += d * d
	}
	fmt.Fprintf(os.Stderr, "validation RMSLE %.4f on %d rows\n", math.Sqrt(sum/float64(nVal)), nVal)
	js, err := json.MarshalIndent(enc, "", " ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "encoder.json"), append(js, '\n'), 0o644)
}
