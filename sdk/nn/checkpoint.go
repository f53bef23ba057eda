package nn

import (
	"context"
	"sync/atomic"

	G "gorgonia.org/gorgonia"
)

// checkpointOp passes its input through and fails once the run's context
// has ended, so a cancelled batch stops at the next layer boundary rather
// than running every layer to the end (gorgonia's tape machine has no
// cancellation of its own).
type checkpointOp struct {
	passThrough
	ctx *atomic.Pointer[context.Context]
}

func checkpoint(h *G.Node, ctx *atomic.Pointer[context.Context]) (*G.Node, error) {
	return G.ApplyOp(&checkpointOp{passThrough: newPassThrough("checkpoint"), ctx: ctx}, h)
}

func (op *checkpointOp) Do(in ...G.Value) (G.Value, error) {
	if ctx := op.ctx.Load(); ctx != nil {
		if err := (*ctx).Err(); err != nil {
			return nil, err
		}
	}
	return in[0], nil
}
