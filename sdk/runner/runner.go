// Package runner is the generic plugin `hackctl pack` makes: a model (ONNX,
// or our network JSON + .npz) and the preprocessing its inputs need,
// appended to a copy of hackctl, which serves them to the judge, so a
// participant who trains in Python never writes Go.
package runner

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"unicode"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hackarena/hackarena/sdk"
	"github.com/hackarena/hackarena/sdk/engine"
	"github.com/hackarena/hackarena/sdk/network"
	"github.com/hackarena/hackarena/sdk/onnx"
)

// Section names of a packed payload.
const (
	SectionONNX       = "model.onnx"
	SectionNetwork    = "network.json"
	SectionWeights    = "weights.npz"
	SectionPreprocess = "preprocess.json"
)

// magic ends a packed executable, after the payload's length.
const magic = "HKRUNNR1"

// MaxPayload bounds what a packed executable may carry (the upload limit
// is smaller still).
const MaxPayload = 1 << 30

// Payload is what a packed executable carries.
type Payload struct {
	Sections map[string][]byte
}

// Encode appends the payload's sections and trailer to w: each section is
// its name's length (uint16), the name, its data's length (uint64) and the
// data; the trailer is the payload's length (uint64) and the magic.
func (p *Payload) Encode(w io.Writer) error {
	var buf bytes.Buffer
	for _, name := range []string{SectionONNX, SectionNetwork, SectionWeights, SectionPreprocess} {
		data, ok := p.Sections[name]
		if !ok {
			continue
		}
		_ = binary.Write(&buf, binary.LittleEndian, uint16(len(name)))
		buf.WriteString(name)
		_ = binary.Write(&buf, binary.LittleEndian, uint64(len(data)))
		buf.Write(data)
	}
	_ = binary.Write(&buf, binary.LittleEndian, uint64(buf.Len()))
	buf.WriteString(magic)
	_, err := w.Write(buf.Bytes())
	return err
}

// ErrNoPayload is an executable that carries no packed model.
var ErrNoPayload = errors.New("no packed model")

// Read finds the payload at the end of the file at path.
func Read(path string) (*Payload, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := fi.Size()
	if size < 16 {
		return nil, ErrNoPayload
	}
	trailer := make([]byte, 16)
	if _, err := f.ReadAt(trailer, size-16); err != nil {
		return nil, err
	}
	if string(trailer[8:]) != magic {
		return nil, ErrNoPayload
	}
	n := binary.LittleEndian.Uint64(trailer[:8])
	if n > MaxPayload || int64(n) > size-16 {
		return nil, fmt.Errorf("packed model: a payload of %d bytes does not fit the file", n)
	}
	data := make([]byte, n)
	if _, err := f.ReadAt(data, size-16-int64(n)); err != nil {
		return nil, err
	}
	return decodeSections(data)
}

func decodeSections(data []byte) (*Payload, error) {
	p := &Payload{Sections: map[string][]byte{}}
	for len(data) > 0 {
		if len(data) < 2 {
			return nil, errors.New("packed model: a section is cut short")
		}
		nl := int(binary.LittleEndian.Uint16(data))
		data = data[2:]
		if len(data) < nl+8 {
			return nil, errors.New("packed model: a section is cut short")
		}
		name := string(data[:nl])
		dl := binary.LittleEndian.Uint64(data[nl:])
		data = data[nl+8:]
		if dl > uint64(len(data)) {
			return nil, fmt.Errorf("packed model: section %q is cut short", name)
		}
		p.Sections[name] = data[:dl]
		data = data[dl:]
	}
	return p, nil
}

// Preprocess says how the runner turns a batch into the model's inputs and
// its outputs into predictions. Every part is optional: an image model
// gets raw pixel values, a model with one output is a regression.
type Preprocess struct {
	// Task is "classification" or "regression" (default: classification
	// when the model has more than one output per example).
	Task string `json:"task,omitempty"`
	// Threshold: a classifier with one output says class 1 above it
	// (default 0.5, for a sigmoid; 0 for a logit).
	Threshold *float64   `json:"threshold,omitempty"`
	Image     *ImagePrep `json:"image,omitempty"`
	Text      *TextPrep  `json:"text,omitempty"`
	Table     *TablePrep `json:"table,omitempty"`
	Output    *OutputMap `json:"output,omitempty"`
}

// ImagePrep maps each pixel value v (0..255) to v·Scale + Offset (Scale 0
// means 1); a model that scales its own input needs none.
type ImagePrep struct {
	Scale  float64 `json:"scale"`
	Offset float64 `json:"offset"`
}

// TextPrep turns a text into Length token ids: words as the platform's
// reference plugins split them (lowercase; letters, digits and
// apostrophes; "<br />" is a space), numbered FirstID + their index in
// Vocabulary, others UnknownID; padded with PadID and cut on the given
// sides ("pre" or "post").
type TextPrep struct {
	Vocabulary []string `json:"vocabulary"`
	FirstID    int      `json:"first_id"`
	PadID      int      `json:"pad_id"`
	UnknownID  int      `json:"unknown_id"`
	Length     int      `json:"length"`
	Padding    string   `json:"padding"`
	Truncating string   `json:"truncating"`
}

// TablePrep lists the model's input features in order: a numeric column,
// standardised ((v - Mean) / Std; a missing value is the mean, 0), or a
// categorical one, one-hot over Categories (another value is all zeros).
type TablePrep struct {
	Features []TableFeature `json:"features"`
}

// TableFeature is one numeric column or one categorical column.
type TableFeature struct {
	Column     string   `json:"column"`
	Mean       float64  `json:"mean,omitempty"`
	Std        float64  `json:"std,omitempty"`
	Categories []string `json:"categories,omitempty"`
}

// OutputMap turns a regression output o into o·Scale + Offset (Scale 0
// means 1), then e^ that when Exp (a model trained on log prices).
type OutputMap struct {
	Scale  float64 `json:"scale"`
	Offset float64 `json:"offset"`
	Exp    bool    `json:"exp"`
}

// DecodePreprocess reads a preprocess.json strictly: a misspelt key would
// silently change what the model sees.
func DecodePreprocess(data []byte) (*Preprocess, error) {
	p := &Preprocess{}
	if len(bytes.TrimSpace(data)) == 0 {
		return p, nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(p); err != nil {
		return nil, fmt.Errorf("preprocess.json: %w", err)
	}
	if p.Task != "" && p.Task != "classification" && p.Task != "regression" {
		return nil, fmt.Errorf("preprocess.json: task %q: want classification or regression", p.Task)
	}
	if t := p.Text; t != nil {
		if t.Length <= 0 || t.Length > network.MaxElements {
			return nil, fmt.Errorf("preprocess.json: text.length %d must be > 0", t.Length)
		}
		for _, side := range []string{t.Padding, t.Truncating} {
			if side != "" && side != "pre" && side != "post" {
				return nil, fmt.Errorf("preprocess.json: text padding and truncating are \"pre\" or \"post\", not %q", side)
			}
		}
	}
	if t := p.Table; t != nil {
		for _, f := range t.Features {
			if f.Column == "" {
				return nil, errors.New("preprocess.json: a table feature has no column")
			}
		}
	}
	return p, nil
}

// Check reports what would stop the payload's model from loading, as the
// Engine would say it, before anything is packed or sent.
func (p *Payload) Check() (*network.Network, *Preprocess, error) {
	prep, err := DecodePreprocess(p.Sections[SectionPreprocess])
	if err != nil {
		return nil, nil, err
	}
	if model, ok := p.Sections[SectionONNX]; ok {
		net, _, err := onnx.Load(model)
		return net, prep, err
	}
	js, ok := p.Sections[SectionNetwork]
	if !ok {
		return nil, nil, errors.New("packed model: no model.onnx and no network.json")
	}
	net, err := network.Decode(js)
	if err != nil {
		return nil, nil, err
	}
	ps, err := net.Params()
	if err != nil {
		return nil, nil, err
	}
	var budget int64
	for _, q := range ps {
		budget += 4 * int64(size(q.Shape))
	}
	if _, err := net.ReadWeights(p.Sections[SectionWeights], budget); err != nil {
		return nil, nil, err
	}
	return net, prep, nil
}

func size(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// Model serves a payload: it loads the model on the Engine the judge
// lends, then answers each batch through it.
type Model struct {
	payload *Payload
	prep    *Preprocess
	net     *engine.Network
	vocab   map[string]int
}

var _ sdk.EngineUser = (*Model)(nil)

// New checks the payload's preprocessing and makes the model that serves
// it.
func New(p *Payload) (*Model, error) {
	prep, err := DecodePreprocess(p.Sections[SectionPreprocess])
	if err != nil {
		return nil, err
	}
	m := &Model{payload: p, prep: prep}
	if t := prep.Text; t != nil {
		first := t.FirstID
		if first == 0 && t.PadID == 0 && t.UnknownID == 0 {
			first, t.UnknownID = 2, 1
		}
		m.vocab = make(map[string]int, len(t.Vocabulary))
		for i, w := range t.Vocabulary {
			if _, dup := m.vocab[w]; !dup {
				m.vocab[w] = first + i
			}
		}
	}
	return m, nil
}

// UseEngine loads the model once, before the first batch.
func (m *Model) UseEngine(ctx context.Context, e *engine.Client) error {
	var err error
	if model, ok := m.payload.Sections[SectionONNX]; ok {
		m.net, err = e.LoadONNX(ctx, model)
	} else {
		m.net, err = e.LoadFiles(ctx, m.payload.Sections[SectionNetwork], m.payload.Sections[SectionWeights])
	}
	if err != nil {
		return fmt.Errorf("load the packed model: %w", err)
	}
	return nil
}

// Describe names the model. A model that reads raw pixels runs image
// batches on the Engine's own copy, so the judge need not send them.
func (m *Model) Describe(context.Context) (sdk.Info, error) {
	return sdk.Info{Name: "hackctl-pack", Version: "1", EngineReadsBatches: m.rawPixels()}, nil
}

// rawPixels says whether the model reads images as the judge has them
// (no scaling or offset) and is loaded on an Engine.
func (m *Model) rawPixels() bool {
	if m.net == nil || m.net.IDs {
		return false
	}
	return m.prep.Image == nil || (m.prep.Image.Scale == 1 || m.prep.Image.Scale == 0) && m.prep.Image.Offset == 0
}

// Predict runs one batch.
func (m *Model) Predict(ctx context.Context, b sdk.Batch) (sdk.Predictions, error) {
	if m.net == nil {
		return sdk.Predictions{}, errors.New("the packed model is not loaded: the judge offered no Engine")
	}
	out, err := m.run(ctx, b)
	if err != nil {
		return sdk.Predictions{}, err
	}
	if len(out) != b.Size*m.net.OutputSize {
		return sdk.Predictions{}, fmt.Errorf("the model gave %d values for %d examples", len(out), b.Size)
	}
	return m.answer(out, b.Size), nil
}

func (m *Model) run(ctx context.Context, b sdk.Batch) ([]float32, error) {
	per := size(m.net.Input)
	switch {
	case b.Images == nil && b.Texts == nil && b.Columns == nil && b.ID != 0 && m.rawPixels():
		// An image batch the judge kept: the Engine has its images.
		out, err := m.net.RunJudgeBatch(ctx, b.ID)
		if status.Code(err) == codes.InvalidArgument {
			// Most likely the images' size, which the model does not see.
			return nil, fmt.Errorf("%w (the model's input holds %v = %d values an example: export the model for the challenge's image size)", err, m.net.Input, per)
		}
		return out, err
	case b.Images != nil:
		if m.net.IDs {
			return nil, errors.New("the model reads token ids, and this challenge sends images")
		}
		raw := b.Images.Data
		if len(raw) != b.Size*per {
			return nil, fmt.Errorf("the model's input holds %v = %d values an example, and the challenge's images have %d: export the model for the challenge's image size", m.net.Input, per, len(raw)/max(b.Size, 1))
		}
		if m.rawPixels() {
			// Raw values: the Engine reads the judge's own copy of the batch.
			if b.ID != 0 {
				return m.net.RunJudgeBatch(ctx, b.ID)
			}
			return m.net.RunBytes(ctx, b.Size, raw)
		}
		scale, offset := float32(m.prep.Image.Scale), float32(m.prep.Image.Offset)
		x := make([]float32, len(raw))
		for i, v := range raw {
			x[i] = float32(v)*scale + offset
		}
		return m.net.Run(ctx, b.Size, x)
	case b.Texts != nil:
		t := m.prep.Text
		if t == nil {
			return nil, errors.New("this challenge sends texts, and the packed model has no text preprocessing: pack it with a preprocess.json that has \"text\" (the Python helper writes one)")
		}
		if per != t.Length {
			return nil, fmt.Errorf("the model reads %v token ids an example, and preprocess.json says text.length %d", m.net.Input, t.Length)
		}
		x := make([]float32, 0, b.Size*t.Length)
		for _, text := range b.Texts {
			x = append(x, m.sequence(text)...)
		}
		return m.net.Run(ctx, b.Size, x)
	case b.Columns != nil:
		t := m.prep.Table
		if t == nil {
			return nil, errors.New("this challenge sends table rows, and the packed model has no table preprocessing: pack it with a preprocess.json that has \"table\" (the Python helper writes one)")
		}
		return m.table(ctx, b, per)
	}
	return nil, errors.New("the batch has no images, texts or columns")
}

// Words splits a text as the platform's reference plugins do.
func Words(text string) []string {
	text = strings.ReplaceAll(strings.ToLower(text), "<br />", " ")
	return strings.FieldsFunc(text, func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '\''
	})
}

func (m *Model) sequence(text string) []float32 {
	t := m.prep.Text
	words := Words(text)
	if len(words) > t.Length {
		if t.Truncating == "post" {
			words = words[:t.Length]
		} else {
			words = words[len(words)-t.Length:]
		}
	}
	seq := make([]float32, t.Length)
	for i := range seq {
		seq[i] = float32(t.PadID)
	}
	start := 0
	if t.Padding == "pre" {
		start = t.Length - len(words)
	}
	for i, w := range words {
		id, ok := m.vocab[w]
		if !ok {
			id = t.UnknownID
		}
		seq[start+i] = float32(id)
	}
	return seq
}

func (m *Model) table(ctx context.Context, b sdk.Batch, per int) ([]float32, error) {
	cols := map[string]*sdk.Column{}
	for i := range b.Columns {
		cols[b.Columns[i].Name] = &b.Columns[i]
	}
	width := 0
	for _, f := range m.prep.Table.Features {
		if f.Categories != nil {
			width += len(f.Categories)
		} else {
			width++
		}
	}
	if width != per {
		return nil, fmt.Errorf("preprocess.json's table features make %d inputs, and the model reads %v", width, m.net.Input)
	}
	x := make([]float32, b.Size*width)
	off := 0
	for _, f := range m.prep.Table.Features {
		c := cols[f.Column]
		if c == nil {
			return nil, fmt.Errorf("preprocess.json names column %q, which this challenge does not send", f.Column)
		}
		for i := 0; i < b.Size; i++ {
			row := x[i*width+off:]
			if f.Categories != nil {
				v := cell(c, i)
				for j, cat := range f.Categories {
					if v == cat {
						row[j] = 1
					}
				}
				continue
			}
			v, ok := number(c, i)
			if !ok {
				continue // missing: the mean, which standardises to 0
			}
			std := f.Std
			if std == 0 {
				std = 1
			}
			row[0] = float32((v - f.Mean) / std)
		}
		if f.Categories != nil {
			off += len(f.Categories)
		} else {
			off++
		}
	}
	return m.net.Run(ctx, b.Size, x)
}

func cell(c *sdk.Column, i int) string {
	switch {
	case i < len(c.Strings):
		return c.Strings[i]
	case i < len(c.Numbers):
		return fmt.Sprint(c.Numbers[i])
	}
	return ""
}

func number(c *sdk.Column, i int) (float64, bool) {
	if i < len(c.Numbers) {
		v := c.Numbers[i]
		return v, !math.IsNaN(v)
	}
	if i < len(c.Strings) {
		var v float64
		if _, err := fmt.Sscan(c.Strings[i], &v); err == nil {
			return v, true
		}
	}
	return 0, false
}

func (m *Model) answer(out []float32, n int) sdk.Predictions {
	k := m.net.OutputSize
	task := m.prep.Task
	if task == "" {
		task = "classification"
		if k == 1 {
			task = "regression"
		}
	}
	if task == "regression" {
		values := make([]float64, n)
		for i := range values {
			v := float64(out[i*k])
			if o := m.prep.Output; o != nil {
				if o.Scale != 0 {
					v *= o.Scale
				}
				v += o.Offset
				if o.Exp {
					v = math.Exp(v)
				}
			}
			values[i] = v
		}
		return sdk.Predictions{Values: values}
	}
	classes, probs := make([]int, n), make([][]float32, n)
	for i := range classes {
		row := out[i*k : (i+1)*k]
		if k == 1 {
			threshold := 0.5
			if m.prep.Threshold != nil {
				threshold = *m.prep.Threshold
			}
			p := float64(row[0])
			if threshold == 0 {
				p = 1 / (1 + math.Exp(-p)) // a logit
			}
			if float64(row[0]) > threshold {
				classes[i] = 1
			}
			probs[i] = []float32{float32(1 - p), float32(p)}
			continue
		}
		classes[i], probs[i] = argmaxProbabilities(row)
	}
	return sdk.Predictions{Classes: classes, Probabilities: probs}
}

// argmaxProbabilities is a row's most likely class and the row as
// probabilities: as it is when it already is a distribution, else its
// softmax (logits, or log-probabilities).
func argmaxProbabilities(row []float32) (int, []float32) {
	best, sum, isDist := 0, 0.0, true
	for j, v := range row {
		if v > row[best] {
			best = j
		}
		if v < 0 || v > 1 || math.IsNaN(float64(v)) {
			isDist = false
		}
		sum += float64(v)
	}
	if isDist && math.Abs(sum-1) < 1e-3 {
		return best, append([]float32(nil), row...)
	}
	p := make([]float32, len(row))
	var total float64
	for j, v := range row {
		e := math.Exp(float64(v - row[best]))
		p[j] = float32(e)
		total += e
	}
	for j := range p {
		p[j] = float32(float64(p[j]) / total)
	}
	return best, p
}

// ServeIfPacked serves the payload the running executable carries, and
// reports false when it carries none (plain hackctl).
func ServeIfPacked() bool {
	exe, err := os.Executable()
	if err != nil {
		return false
	}
	p, err := Read(exe)
	if errors.Is(err, ErrNoPayload) {
		return false
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "packed model:", err)
		os.Exit(1)
	}
	m, err := New(p)
	if err != nil {
		fmt.Fprintln(os.Stderr, "packed model:", err)
		os.Exit(1)
	}
	sdk.Serve(m)
	return true
}
