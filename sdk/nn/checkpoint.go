package nn

import (
	"context"
	"fmt"
	"hash"
	"sync/atomic"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// checkpointOp passes its input through and fails once the run's context
// has ended, so a cancelled batch stops at the next layer boundary rather
// than running every layer to the end (gorgonia's tape machine has no
// cancellation of its own).
type checkpointOp struct {
	ctx *atomic.Pointer[context.Context]
}

func checkpoint(h *G.Node, ctx *atomic.Pointer[context.Context]) (*G.Node, error) {
	return G.ApplyOp(&checkpointOp{ctx: ctx}, h)
}

func (op *checkpointOp) Arity() int { return 1 }

func (op *checkpointOp) Type() hm.Type {
	a := hm.TypeVariable('a')
	return hm.NewFnType(a, a)
}

func (op *checkpointOp) InferShape(in ...G.DimSizer) (tensor.Shape, error) {
	s, ok := in[0].(tensor.Shape)
	if !ok {
		return nil, fmt.Errorf("checkpoint: input shape %v", in[0])
	}
	return s.Clone(), nil
}

func (op *checkpointOp) Do(in ...G.Value) (G.Value, error) {
	if ctx := op.ctx.Load(); ctx != nil {
		if err := (*ctx).Err(); err != nil {
			return nil, err
		}
	}
	return in[0], nil
}

func (op *checkpointOp) ReturnsPtr() bool      { return true }
func (op *checkpointOp) CallsExtern() bool     { return false }
func (op *checkpointOp) OverwritesInput() int  { return -1 }
func (op *checkpointOp) WriteHash(h hash.Hash) { fmt.Fprintf(h, "checkpoint%p", op) }
func (op *checkpointOp) Hashcode() uint32 {
	// Every checkpoint is its own node: two must never be merged.
	var s uint32 = 2166136261
	for _, c := range fmt.Sprintf("checkpoint%p", op) {
		s = (s ^ uint32(c)) * 16777619
	}
	return s
}
func (op *checkpointOp) String() string { return "checkpoint" }
