package nn

import (
	"fmt"
	"hash"
	"sync/atomic"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// passThrough is what an op that hands its input on unchanged needs for
// gorgonia, apart from Do: its shape and type are its input's, and each
// one hashes as itself, so two are never merged into one node.
type passThrough struct {
	name string
	id   int
}

var passThroughs atomic.Int64

func newPassThrough(name string) passThrough {
	return passThrough{name: name, id: int(passThroughs.Add(1))}
}

func (op *passThrough) Arity() int { return 1 }

func (op *passThrough) Type() hm.Type {
	a := hm.TypeVariable('a')
	return hm.NewFnType(a, a)
}

func (op *passThrough) InferShape(in ...G.DimSizer) (tensor.Shape, error) {
	s, ok := in[0].(tensor.Shape)
	if !ok {
		return nil, fmt.Errorf("%s: input shape is %T", op.name, in[0])
	}
	return s.Clone(), nil
}

func (op *passThrough) ReturnsPtr() bool      { return true }
func (op *passThrough) CallsExtern() bool     { return false }
func (op *passThrough) OverwritesInput() int  { return -1 }
func (op *passThrough) WriteHash(h hash.Hash) { fmt.Fprintf(h, "%s%d", op.name, op.id) }
func (op *passThrough) Hashcode() uint32      { return uint32(op.id) }
func (op *passThrough) String() string        { return fmt.Sprintf("%s%d", op.name, op.id) }

// snapshotOp copies its input into a Go slice when the forward pass
// reaches it. Training reads the network's outputs through it: gorgonia's
// tape machine reuses a value's memory once its analysis thinks the value
// is dead, and the backward pass of a sigmoid output wrote its derivative
// over the outputs the epoch's accuracy was read from.
type snapshotOp struct {
	passThrough
	into *[]float32
}

func snapshot(x *G.Node, into *[]float32) (*G.Node, error) {
	return G.ApplyOp(&snapshotOp{passThrough: newPassThrough("snapshot"), into: into}, x)
}

func (op *snapshotOp) Do(in ...G.Value) (G.Value, error) {
	data, ok := in[0].Data().([]float32)
	if !ok {
		return nil, fmt.Errorf("snapshot: input is %T, not float32", in[0].Data())
	}
	*op.into = append((*op.into)[:0], data...)
	return in[0], nil
}
