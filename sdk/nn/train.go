package nn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/hackarena/hackarena/sdk/network"
)

// Losses Fit minimises.
const (
	// CategoricalCrossEntropy takes one class id per example (Keras's
	// sparse_categorical_crossentropy) and needs a final softmax.
	CategoricalCrossEntropy = "categorical_crossentropy"
	// BinaryCrossEntropy takes one 0/1 label per example and needs a
	// final sigmoid with one unit.
	BinaryCrossEntropy = "binary_crossentropy"
	// MeanSquaredError takes the whole output row per example.
	MeanSquaredError = "mse"
)

// Model is a network and its weights.
type Model struct {
	Net     *network.Network
	Weights network.Weights
}

// NewModel initialises net's weights as Keras does: Glorot-uniform
// kernels, zero biases, uniform(±0.05) embeddings, drawn from seed.
func NewModel(net *network.Network, seed uint64) (*Model, error) {
	params, err := net.Params()
	if err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	w := network.Weights{}
	for _, p := range params {
		a := &network.Array{Shape: p.Shape, Data: make([]float32, size(p.Shape))}
		var limit float64
		switch {
		case len(p.Shape) == 2 && isEmbedding(p.Name):
			limit = 0.05
		case len(p.Shape) == 2:
			limit = math.Sqrt(6 / float64(p.Shape[0]+p.Shape[1]))
		case len(p.Shape) == 4:
			field := p.Shape[2] * p.Shape[3]
			limit = math.Sqrt(6 / float64(field*(p.Shape[0]+p.Shape[1])))
		}
		for i := range a.Data {
			a.Data[i] = float32((rng.Float64()*2 - 1) * limit)
		}
		w[p.Name] = a
	}
	return &Model{Net: net, Weights: w}, nil
}

func isEmbedding(name string) bool {
	return len(name) > len(".embeddings") && name[len(name)-len(".embeddings"):] == ".embeddings"
}

// FitConfig says how to train.
type FitConfig struct {
	Epochs    int
	BatchSize int
	Loss      string
	// Optimizer is "adam" (the default) or "sgd".
	Optimizer string
	// LearningRate defaults to 0.001 for Adam and 0.01 for SGD.
	LearningRate float64
	// ValidationSplit holds out the last fraction of the examples, as
	// Keras does, to report val_loss and to stop early.
	ValidationSplit float64
	// Patience stops training after that many epochs without a better
	// val_loss and restores the best weights; 0 trains every epoch.
	Patience int
	// L2 adds L2·‖w‖² of every weight to the loss, through the optimizer.
	L2 float64
	// Seed makes shuffling and dropout repeatable.
	Seed uint64
	// Progress receives a Keras-like line per epoch; nil is silent.
	Progress io.Writer
}

// Epoch is what one epoch measured. Accuracy is NaN for MSE.
type Epoch struct {
	Loss, Accuracy       float64
	ValLoss, ValAccuracy float64
	Duration             time.Duration
}

// History is Fit's record.
type History struct {
	Epochs    []Epoch
	BestEpoch int // index of the epoch whose weights the model keeps
}

// Fit trains the model on x (examples × input size) and y (one class id or
// label per example, or examples × output size for MSE). Each epoch
// shuffles the training part and drops its last incomplete batch, so
// every step sees batch-size examples. Cancelling ctx stops between
// batches and keeps the weights reached so far.
func (m *Model) Fit(ctx context.Context, x, y []float32, cfg FitConfig) (*History, error) {
	if cfg.Optimizer == "" {
		cfg.Optimizer = "adam"
	}
	if cfg.LearningRate == 0 {
		cfg.LearningRate = map[string]float64{"adam": 0.001, "sgd": 0.01}[cfg.Optimizer]
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 32
	}
	inSize, outSize := size(m.Net.Input), outputSize(m.Net)
	n := len(x) / inSize
	if len(x) != n*inSize || n == 0 {
		return nil, fmt.Errorf("fit: %d input values are not a whole number of examples of %d", len(x), inSize)
	}
	yWidth := 1
	if cfg.Loss == MeanSquaredError {
		yWidth = outSize
	}
	if len(y) != n*yWidth {
		return nil, fmt.Errorf("fit: %d examples but %d targets (want %d per example)", n, len(y), yWidth)
	}
	nVal := int(float64(n) * cfg.ValidationSplit)
	nTrain := n - nVal
	if nTrain < cfg.BatchSize {
		return nil, fmt.Errorf("fit: %d training examples are fewer than one batch of %d", nTrain, cfg.BatchSize)
	}
	if cfg.Patience > 0 && nVal == 0 {
		return nil, fmt.Errorf("fit: early stopping needs a validation split")
	}

	gr, err := compile(m.Net, m.Weights, cfg.BatchSize, forTraining)
	if err != nil {
		return nil, fmt.Errorf("fit: %w", err)
	}
	target, loss, err := gr.loss(cfg.Loss)
	if err != nil {
		return nil, fmt.Errorf("fit: %w", err)
	}
	if _, err := G.Grad(loss, gr.params...); err != nil {
		return nil, fmt.Errorf("fit: gradients: %w", err)
	}
	// Added after the gradients: it is not part of what they flow through.
	var outputs []float32
	if _, err := snapshot(gr.out, &outputs); err != nil {
		return nil, fmt.Errorf("fit: %w", err)
	}
	vm := G.NewTapeMachine(gr.g, G.BindDualValues(gr.params...))
	defer vm.Close()
	var step func() error
	switch cfg.Optimizer {
	case "adam":
		a := newAdam(cfg.LearningRate, cfg.L2)
		step = func() error { return a.Step(gr.params) }
	case "sgd":
		opts := []G.SolverOpt{G.WithLearnRate(cfg.LearningRate)}
		if cfg.L2 > 0 {
			opts = append(opts, G.WithL2Reg(cfg.L2))
		}
		solver := G.NewVanillaSolver(opts...)
		step = func() error { return solver.Step(G.NodesToValueGrads(gr.params)) }
	default:
		return nil, fmt.Errorf("fit: optimizer %q: want adam or sgd", cfg.Optimizer)
	}

	rng := rand.New(rand.NewPCG(cfg.Seed, cfg.Seed+1))
	order := make([]int, nTrain)
	for i := range order {
		order[i] = i
	}
	xb := make([]float32, cfg.BatchSize*inSize)
	targetWidth := size(target.Shape()[1:])
	yb := make([]float32, cfg.BatchSize*targetWidth)
	steps := nTrain / cfg.BatchSize
	hist := &History{BestEpoch: -1}
	best := math.Inf(1)
	var bestWeights network.Weights
	for epoch := 0; epoch < cfg.Epochs; epoch++ {
		start := time.Now()
		bar := newProgress(cfg.Progress, epoch+1, cfg.Epochs, steps)
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		var sumLoss float64
		var correct, seen int
		for s := 0; s < steps; s++ {
			if err := ctx.Err(); err != nil {
				return hist, fmt.Errorf("fit: stopped in epoch %d: %w", epoch+1, err)
			}
			idx := order[s*cfg.BatchSize : (s+1)*cfg.BatchSize]
			for b, i := range idx {
				copy(xb[b*inSize:(b+1)*inSize], x[i*inSize:(i+1)*inSize])
				clear(yb[b*targetWidth : (b+1)*targetWidth])
				switch cfg.Loss {
				case CategoricalCrossEntropy:
					yb[b*targetWidth+int(y[i])] = 1
				case BinaryCrossEntropy:
					yb[b] = y[i]
				default:
					copy(yb[b*targetWidth:(b+1)*targetWidth], y[i*yWidth:(i+1)*yWidth])
				}
			}
			if err := gr.setInput(xb); err != nil {
				return hist, fmt.Errorf("fit: %w", err)
			}
			if err := G.Let(target, tensor.New(tensor.WithShape(target.Shape()...), tensor.WithBacking(yb))); err != nil {
				return hist, fmt.Errorf("fit: %w", err)
			}
			for _, mask := range gr.masks {
				mask.draw(rng)
				if err := G.Let(mask.node, tensor.New(tensor.WithShape(mask.node.Shape()...), tensor.WithBacking(mask.data))); err != nil {
					return hist, fmt.Errorf("fit: %w", err)
				}
			}
			if err := vm.RunAll(); err != nil {
				return hist, fmt.Errorf("fit: step %d of epoch %d: %w", s+1, epoch+1, err)
			}
			if err := step(); err != nil {
				return hist, fmt.Errorf("fit: update: %w", err)
			}
			l := float64(loss.Value().Data().(float32))
			if math.IsNaN(l) || math.IsInf(l, 0) {
				return hist, fmt.Errorf("fit: loss became %v at step %d of epoch %d: lower the learning rate or standardise the inputs", l, s+1, epoch+1)
			}
			sumLoss += l
			for b, i := range idx {
				if c, ok := hit(cfg.Loss, outputs[b*outSize:(b+1)*outSize], y[i*yWidth:(i+1)*yWidth]); ok {
					correct += c
					seen++
				}
			}
			vm.Reset()
			bar.step(s+1, sumLoss/float64(s+1), ratio(correct, seen))
		}
		e := Epoch{Loss: sumLoss / float64(steps), Accuracy: ratio(correct, seen), ValLoss: math.NaN(), ValAccuracy: math.NaN()}
		if nVal > 0 {
			e.ValLoss, e.ValAccuracy, err = m.Evaluate(x[nTrain*inSize:], y[nTrain*yWidth:], cfg.Loss)
			if err != nil {
				return hist, fmt.Errorf("fit: validate: %w", err)
			}
		}
		e.Duration = time.Since(start)
		hist.Epochs = append(hist.Epochs, e)
		bar.done(e)
		if nVal == 0 || e.ValLoss < best {
			best, hist.BestEpoch = e.ValLoss, epoch
			if cfg.Patience > 0 {
				bestWeights = m.cloneWeights()
			}
		} else if cfg.Patience > 0 && epoch-hist.BestEpoch >= cfg.Patience {
			break
		}
	}
	for name, a := range bestWeights {
		copy(m.Weights[name].Data, a.Data)
	}
	return hist, nil
}

func (m *Model) cloneWeights() network.Weights {
	c := network.Weights{}
	for name, a := range m.Weights {
		c[name] = &network.Array{Shape: a.Shape, Data: append([]float32(nil), a.Data...)}
	}
	return c
}

func (d *dropMask) draw(rng *rand.Rand) {
	keep := float32(1 / (1 - d.rate))
	for i := range d.data {
		if rng.Float64() < d.rate {
			d.data[i] = 0
		} else {
			d.data[i] = keep
		}
	}
}

// loss adds the target input and the loss node for the named loss.
func (gr *graph) loss(name string) (*G.Node, *G.Node, error) {
	outShape := gr.out.Shape()
	target := G.NewTensor(gr.g, tensor.Float32, len(outShape), G.WithShape(outShape...), G.WithName("y"))
	var l *G.Node
	var err error
	switch name {
	case CategoricalCrossEntropy:
		if gr.final != "softmax" {
			return nil, nil, errors.New("categorical_crossentropy needs the network to end in a softmax")
		}
		if gr.mode == forTraining {
			l, err = softmaxCrossEntropy(gr.logits, target)
			break
		}
		var logp, picked *G.Node
		if logp, err = logSoftmax(gr.logits); err == nil {
			if picked, err = G.HadamardProd(target, logp); err == nil {
				if picked, err = G.Sum(picked, 1); err == nil {
					if l, err = G.Mean(picked); err == nil {
						l, err = G.Neg(l)
					}
				}
			}
		}
	case BinaryCrossEntropy:
		if gr.final != "sigmoid" || outShape[1] != 1 {
			return nil, nil, errors.New("binary_crossentropy needs the network to end in one sigmoid unit")
		}
		// softplus(z) − y·z is −y·log σ(z) − (1−y)·log(1−σ(z)) without
		// the log of a rounded-off zero.
		var sp, yz *G.Node
		if sp, err = G.Softplus(gr.logits); err == nil {
			if yz, err = G.HadamardProd(target, gr.logits); err == nil {
				if l, err = G.Sub(sp, yz); err == nil {
					l, err = G.Mean(l)
				}
			}
		}
	case MeanSquaredError:
		var d *G.Node
		if d, err = G.Sub(gr.out, target); err == nil {
			if d, err = G.Square(d); err == nil {
				l, err = G.Mean(d)
			}
		}
	default:
		return nil, nil, fmt.Errorf("loss %q: want %s, %s or %s", name, CategoricalCrossEntropy, BinaryCrossEntropy, MeanSquaredError)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("loss %s: %w", name, err)
	}
	return target, l, nil
}

// logSoftmax is z − max(z) − log Σ exp(z − max(z)) along the last axis,
// built from plain ops: gorgonia 0.9.18 gives SoftMax and LogSoftMax of
// one node the same hash, so a graph holding both computes one of them
// twice (the loss then maximised the probability, not its log).
func logSoftmax(z *G.Node) (*G.Node, error) {
	m, err := G.Max(z, 1)
	if err != nil {
		return nil, err
	}
	if m, err = G.Reshape(m, tensor.Shape{z.Shape()[0], 1}); err != nil {
		return nil, err
	}
	shifted, err := G.BroadcastSub(z, m, nil, []byte{1})
	if err != nil {
		return nil, err
	}
	e, err := G.Exp(shifted)
	if err != nil {
		return nil, err
	}
	sum, err := G.Sum(e, 1)
	if err != nil {
		return nil, err
	}
	logSum, err := G.Log(sum)
	if err != nil {
		return nil, err
	}
	if logSum, err = G.Reshape(logSum, tensor.Shape{z.Shape()[0], 1}); err != nil {
		return nil, err
	}
	return G.BroadcastSub(shifted, logSum, nil, []byte{1})
}

// hit says whether one prediction was right, for losses that have an
// accuracy.
func hit(loss string, out, y []float32) (int, bool) {
	switch loss {
	case CategoricalCrossEntropy:
		if argmax(out) == int(y[0]) {
			return 1, true
		}
		return 0, true
	case BinaryCrossEntropy:
		if (out[0] >= 0.5) == (y[0] >= 0.5) {
			return 1, true
		}
		return 0, true
	}
	return 0, false
}

func argmax(v []float32) int {
	best := 0
	for i := range v {
		if v[i] > v[best] {
			best = i
		}
	}
	return best
}

func ratio(a, b int) float64 {
	if b == 0 {
		return math.NaN()
	}
	return float64(a) / float64(b)
}

// PredictBatch is the batch size Predict and Evaluate compile for.
const PredictBatch = 256

// Predict runs the network on n examples in x and returns n × output size
// values.
func (m *Model) Predict(x []float32) ([]float32, error) {
	inSize := size(m.Net.Input)
	n := len(x) / inSize
	if n*inSize != len(x) {
		return nil, fmt.Errorf("predict: %d values are not a whole number of examples of %d", len(x), inSize)
	}
	var out []float32
	cache := map[int]*Inference{}
	defer func() {
		for _, inf := range cache {
			inf.Close()
		}
	}()
	for off := 0; off < n; off += PredictBatch {
		b := min(PredictBatch, n-off)
		inf := cache[b]
		if inf == nil {
			var err error
			if inf, err = NewInference(m.Net, m.Weights, b); err != nil {
				return nil, fmt.Errorf("predict: %w", err)
			}
			cache[b] = inf
		}
		o, err := inf.Run(x[off*inSize : (off+b)*inSize])
		if err != nil {
			return nil, fmt.Errorf("predict: examples %d-%d: %w", off, off+b-1, err)
		}
		out = append(out, o...)
	}
	return out, nil
}

// Evaluate returns the loss and accuracy (NaN for MSE) on x and y.
func (m *Model) Evaluate(x, y []float32, loss string) (float64, float64, error) {
	out, err := m.Predict(x)
	if err != nil {
		return 0, 0, err
	}
	k := outputSize(m.Net)
	n := len(out) / k
	yWidth := 1
	if loss == MeanSquaredError {
		yWidth = k
	}
	var sum float64
	var correct, seen int
	const eps = 1e-7
	for i := 0; i < n; i++ {
		o, t := out[i*k:(i+1)*k], y[i*yWidth:(i+1)*yWidth]
		switch loss {
		case CategoricalCrossEntropy:
			sum -= math.Log(math.Max(float64(o[int(t[0])]), eps))
		case BinaryCrossEntropy:
			p := math.Min(math.Max(float64(o[0]), eps), 1-eps)
			sum -= float64(t[0])*math.Log(p) + float64(1-t[0])*math.Log(1-p)
		default:
			for j := range o {
				d := float64(o[j] - t[j])
				sum += d * d / float64(k)
			}
		}
		if c, ok := hit(loss, o, t); ok {
			correct += c
			seen++
		}
	}
	return sum / float64(n), ratio(correct, seen), nil
}

// Save writes the network as <dir>/network.json and the weights as
// <dir>/weights.npz, each through a temporary file so a crash never
// leaves half a model.
func (m *Model) Save(dir string) error {
	js, err := m.Net.Encode()
	if err != nil {
		return fmt.Errorf("save model: %w", err)
	}
	if err := writeAtomic(filepath.Join(dir, "network.json"), func(w io.Writer) error { _, err := w.Write(append(js, '\n')); return err }); err != nil {
		return err
	}
	return writeAtomic(filepath.Join(dir, "weights.npz"), func(w io.Writer) error { return network.WriteNPZ(w, m.Weights) })
}

// Load reads what Save wrote.
func Load(dir string) (*Model, error) {
	js, err := os.ReadFile(filepath.Join(dir, "network.json"))
	if err != nil {
		return nil, fmt.Errorf("load model: %w", err)
	}
	net, err := network.Decode(js)
	if err != nil {
		return nil, fmt.Errorf("load model %s: %w", dir, err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "weights.npz"))
	if err != nil {
		return nil, fmt.Errorf("load model: %w", err)
	}
	w, err := network.ReadNPZ(raw)
	if err != nil {
		return nil, fmt.Errorf("load model %s: %w", dir, err)
	}
	if err := net.CheckWeights(w); err != nil {
		return nil, fmt.Errorf("load model %s: %w", dir, err)
	}
	return &Model{Net: net, Weights: w}, nil
}

func writeAtomic(path string, write func(io.Writer) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := write(tmp); err != nil {
		tmp.Close()
		return fmt.Errorf("save %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	// CreateTemp makes the file private; a model is meant to be shared.
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	return nil
}
