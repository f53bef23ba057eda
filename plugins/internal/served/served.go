// Package served is the common body of the reference plugins whose
// network runs on the judge's Engine: load the embedded network in
// UseEngine, then answer each batch through it.
package served

import (
	"context"
	"fmt"

	"github.com/hackarena/hackarena/plugins/internal/features"
	"github.com/hackarena/hackarena/sdk"
	"github.com/hackarena/hackarena/sdk/engine"
)

// Model serves one network; Features (or Bytes, for inputs of one byte
// per value) turns a batch into the network's inputs, Answer turns its
// outputs into predictions.
type Model struct {
	Name, Version string
	NetworkJSON   []byte
	WeightsNPZ    []byte
	Features      func(sdk.Batch) ([]float32, error)
	Bytes         func(sdk.Batch) ([]byte, error)
	Answer        func(out []float32, n int) sdk.Predictions
	// JudgeBatch, with Bytes, says the network reads the batch's images
	// as the judge sent them: the Engine takes them from the judge's side,
	// and only the outputs travel.
	JudgeBatch bool

	net *engine.Network
}

var _ sdk.EngineUser = (*Model)(nil)

// UseEngine loads the network once, before the first batch.
func (m *Model) UseEngine(ctx context.Context, e *engine.Client) error {
	net, err := e.LoadFiles(ctx, m.NetworkJSON, m.WeightsNPZ)
	if err != nil {
		return err
	}
	m.net = net
	return nil
}

// Describe names the model.
func (m *Model) Describe(context.Context) (sdk.Info, error) {
	return sdk.Info{Name: m.Name, Version: m.Version, EngineReadsBatches: m.JudgeBatch && m.Bytes != nil}, nil
}

// Predict runs one batch on the engine.
func (m *Model) Predict(ctx context.Context, b sdk.Batch) (sdk.Predictions, error) {
	if m.net == nil {
		return sdk.Predictions{}, fmt.Errorf("%s: the network is not loaded: the judge offered no engine", m.Name)
	}
	out, err := m.run(ctx, b)
	if err != nil {
		return sdk.Predictions{}, err
	}
	return m.Answer(out, b.Size), nil
}

// run sends the batch to the network the way the model takes it.
func (m *Model) run(ctx context.Context, b sdk.Batch) ([]float32, error) {
	if m.Bytes != nil {
		if m.JudgeBatch && b.ID != 0 && b.Images == nil {
			// The judge kept the images: the Engine has them.
			return m.net.RunJudgeBatch(ctx, b.ID)
		}
		x, err := m.Bytes(b) // checked even when the Engine reads it itself
		if err != nil {
			return nil, err
		}
		if m.JudgeBatch && b.ID != 0 {
			return m.net.RunJudgeBatch(ctx, b.ID)
		}
		return m.net.RunBytes(ctx, b.Size, x)
	}
	x, err := m.Features(b)
	if err != nil {
		return nil, err
	}
	return m.net.Run(ctx, b.Size, x)
}

// Classes answers with each row's most likely class and the rows as
// probabilities: the Answer of a softmax classifier.
func Classes(out []float32, n int) sdk.Predictions {
	classes, probs := features.Classes(out, n)
	return sdk.Predictions{Classes: classes, Probabilities: probs}
}
