package nn

import (
	"fmt"
	"hash"
	"sync/atomic"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// snapshotOp copies its input into a Go slice when the forward pass
// reaches it. Training reads the network's outputs through it: gorgonia's
// tape machine reuses a value's memory once its analysis thinks the value
// is dead, and the backward pass of a sigmoid output wrote its derivative
// over the outputs the epoch's accuracy was read from.
type snapshotOp struct {
	into *[]float32
	id   int
}

func snapshot(x *G.Node, into *[]float32) (*G.Node, error) {
	return G.ApplyOp(&snapshotOp{into: into, id: nextSnapshot()}, x)
}

var snapshots atomic.Int64

// nextSnapshot keeps two snapshots of one node from hashing alike.
func nextSnapshot() int { return int(snapshots.Add(1)) }

func (op *snapshotOp) Arity() int { return 1 }

func (op *snapshotOp) Type() hm.Type {
	a := hm.TypeVariable('a')
	return hm.NewFnType(a, a)
}

func (op *snapshotOp) InferShape(in ...G.DimSizer) (tensor.Shape, error) {
	s, ok := in[0].(tensor.Shape)
	if !ok {
		return nil, fmt.Errorf("snapshot: input shape is %T", in[0])
	}
	return s.Clone(), nil
}

func (op *snapshotOp) Do(in ...G.Value) (G.Value, error) {
	data, ok := in[0].Data().([]float32)
	if !ok {
		return nil, fmt.Errorf("snapshot: input is %T, not float32", in[0].Data())
	}
	*op.into = append((*op.into)[:0], data...)
	return in[0], nil
}

func (op *snapshotOp) ReturnsPtr() bool     { return true }
func (op *snapshotOp) CallsExtern() bool    { return false }
func (op *snapshotOp) OverwritesInput() int { return -1 }
func (op *snapshotOp) WriteHash(h hash.Hash) {
	fmt.Fprintf(h, "snapshot%d", op.id)
}
func (op *snapshotOp) Hashcode() uint32 { return uint32(op.id) }
func (op *snapshotOp) String() string   { return fmt.Sprintf("snapshot%d", op.id) }
