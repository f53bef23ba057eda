package sdk

import (
	"encoding/binary"
	"fmt"
	"math"
)

// DType is the element type of a Tensor.
type DType int

// Element types a Tensor can carry.
const (
	DTypeUnspecified DType = iota
	Uint8
	Float32
	Float64
	Int64
)

// Size is the number of bytes one element of the type occupies.
func (d DType) Size() int {
	switch d {
	case Uint8:
		return 1
	case Float32:
		return 4
	case Float64, Int64:
		return 8
	}
	return 0
}

func (d DType) String() string {
	switch d {
	case Uint8:
		return "uint8"
	case Float32:
		return "float32"
	case Float64:
		return "float64"
	case Int64:
		return "int64"
	}
	return "unspecified"
}

// Tensor is a dense, row-major, little-endian array.
type Tensor struct {
	Shape []int
	DType DType
	Data  []byte
}

// NumElements is the product of the shape.
func (t *Tensor) NumElements() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// Validate checks that the data length matches shape and dtype.
func (t *Tensor) Validate() error {
	if t.DType.Size() == 0 {
		return fmt.Errorf("tensor: unknown dtype %d", t.DType)
	}
	for i, d := range t.Shape {
		if d < 0 {
			return fmt.Errorf("tensor: negative dimension %d at axis %d", d, i)
		}
	}
	if want := t.NumElements() * t.DType.Size(); len(t.Data) != want {
		return fmt.Errorf("tensor: shape %v of %s needs %d bytes, got %d", t.Shape, t.DType, want, len(t.Data))
	}
	return nil
}

// Float32s decodes the tensor's elements as float32, converting from the
// stored dtype.
func (t *Tensor) Float32s() ([]float32, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	n := t.NumElements()
	out := make([]float32, n)
	switch t.DType {
	case Uint8:
		for i, b := range t.Data {
			out[i] = float32(b)
		}
	case Float32:
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(t.Data[4*i:]))
		}
	case Float64:
		for i := range out {
			out[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(t.Data[8*i:])))
		}
	case Int64:
		for i := range out {
			out[i] = float32(int64(binary.LittleEndian.Uint64(t.Data[8*i:])))
		}
	}
	return out, nil
}

// Column is one named column of a table: Numbers (NaN where missing) or
// Strings.
type Column struct {
	Name    string
	Numbers []float64
	Strings []string
}

// Batch is a group of examples sent to Predict. Exactly one of Images, Texts
// or Columns is set, depending on the challenge's input kind. Images are
// uint8 [n, height, width]; none is set for an image batch sent to a model
// whose Info said EngineReadsBatches (then ID names the batch).
type Batch struct {
	// ID is the judge's id for this batch when it lends an Engine:
	// engine.Network.RunJudgeBatch runs a network on the batch's images
	// without sending them back. 0 otherwise.
	ID      uint64
	Size    int
	Images  *Tensor
	Texts   []string
	Columns []Column
}

// Predictions answer a Batch: Classes for classification (optionally with
// per-class Probabilities), Values for regression; one per example.
type Predictions struct {
	Classes       []int
	Probabilities [][]float32
	Values        []float64
}

// Info describes a model.
type Info struct {
	Name       string
	Version    string
	SDKVersion string
	// EngineReadsBatches says the model runs every image batch on the
	// judge's Engine by its ID (engine.Network.RunJudgeBatch) and never
	// reads Batch.Images: a judge that lends an Engine then sends such
	// batches with their ID and Size but without their images, which
	// the Engine has already (1.3 ms of a 1,000-image batch's 6.5 here).
	EngineReadsBatches bool
	// OutputMarked, in the judge's copy, says the plugin wrote
	// OutputMarker to each of its outputs before answering Describe (the
	// SDK does so for every model).
	OutputMarked bool
}
