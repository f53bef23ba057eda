package refdata

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/hackarena/hackarena/sdk/network"
	"github.com/hackarena/hackarena/sdk/nn"
)

// Train fits a freshly initialised net (seeded, so `make models` is
// repeatable) and saves it into dir as network.json and weights.npz.
func Train(ctx context.Context, dir string, net *network.Network, x, y []float32, cfg nn.FitConfig) (*nn.Model, error) {
	m, err := nn.NewModel(net, cfg.Seed)
	if err != nil {
		return nil, err
	}
	if cfg.Progress == nil {
		cfg.Progress = os.Stderr
	}
	start := time.Now()
	if _, err := m.Fit(ctx, x, y, cfg); err != nil {
		return nil, err
	}
	if err := m.Save(dir); err != nil {
		return nil, err
	}
	fmt.Fprintf(os.Stderr, "trained in %s; saved %s/network.json and weights.npz\n", time.Since(start).Round(time.Second), dir)
	return m, nil
}
