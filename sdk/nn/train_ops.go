package nn

import (
	"fmt"
	"hash"
	"math"
	"runtime"
	"sync/atomic"

	"github.com/chewxy/hm"
	"gonum.org/v1/gonum/blas"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// The training ops: gorgonia's graph and its symbolic differentiation
// drive training, and these ops are how it is meant to be extended: each
// carries its forward kernel and builds its own gradient nodes. A Dense
// layer is one sgemm with the bias and the activation fused; a
// convolution is im2col over groups of examples and one sgemm per group
// (gorgonia's Conv2d transposed its product into NCHW and back, and
// broadcast the bias through a copy the size of the output); softmax with
// cross-entropy is one op whose gradient is p − y. The backward op of a
// layer computes its three gradients in one pass and hands the weights'
// two on through pick ops. Each op keeps its output arrays and fills them
// again on every step, so a step allocates no activation or gradient
// array.
//
// Each op's buffers belong to one graph and one step at a time: the tape
// machine runs a graph's ops one after the other, and a backward op runs
// after its forward op in the same pass (it takes the forward output as
// an input).

// trainOps numbers the ops, so that no two of them hash alike and
// gorgonia never merges two nodes into one.
var trainOps atomic.Int64

// buffer is an op's output array, made at the first step and reused.
type buffer []float32

func (b *buffer) get(n int) []float32 {
	if cap(*b) < n {
		*b = make([]float32, n)
	}
	return (*b)[:n]
}

// trainOp is what every training op shares for gorgonia: a name and a
// number to hash by, and a function type over one element type from
// tensors of its inputs' numbers of axes to one of out axes (0: a
// scalar).
type trainOp struct {
	name string
	id   int64
	dims []int // the inputs', then the output's
}

func newTrainOp(name string, out int, in ...*G.Node) trainOp {
	dims := make([]int, 0, len(in)+1)
	for _, n := range in {
		dims = append(dims, n.Dims())
	}
	return trainOp{name: name, id: trainOps.Add(1), dims: append(dims, out)}
}

func (op *trainOp) Arity() int { return len(op.dims) - 1 }

func (op *trainOp) Type() hm.Type {
	a := hm.TypeVariable('a')
	types := make([]hm.Type, len(op.dims))
	for i, d := range op.dims {
		types[i] = a
		if d > 0 {
			types[i] = G.TensorType{Dims: d, Of: a}
		}
	}
	return hm.NewFnType(types...)
}

func (op *trainOp) ReturnsPtr() bool      { return false }
func (op *trainOp) CallsExtern() bool     { return false }
func (op *trainOp) OverwritesInput() int  { return -1 }
func (op *trainOp) WriteHash(h hash.Hash) { fmt.Fprintf(h, "%s%d", op.name, op.id) }
func (op *trainOp) Hashcode() uint32      { return uint32(op.id) }
func (op *trainOp) String() string        { return fmt.Sprintf("%s%d", op.name, op.id) }

func float32s(name string, vs ...G.Value) ([][]float32, error) {
	out := make([][]float32, len(vs))
	for i, v := range vs {
		d, ok := v.Data().([]float32)
		if !ok {
			if f, isScalar := v.Data().(float32); isScalar {
				d = []float32{f}
			} else {
				return nil, fmt.Errorf("%s: input %d is %T, not float32", name, i, v.Data())
			}
		}
		out[i] = d
	}
	return out, nil
}

func tensorOf(data []float32, shape tensor.Shape) G.Value {
	return tensor.New(tensor.WithShape(shape.Clone()...), tensor.WithBacking(data))
}

// trainActivation says whether a training op applies act itself: the
// activations whose derivative follows from their output.
func trainActivation(act string) bool {
	switch act {
	case "", "linear", "relu", "sigmoid", "tanh":
		return true
	}
	return false
}

// activationGrad is the gradient before the activation, from the
// gradient after it and the activation's output, in dz; linear gives grad
// itself.
func activationGrad(act string, out, grad []float32, dz *buffer) []float32 {
	if !trainActivation(act) || act == "" || act == "linear" {
		return grad
	}
	d := dz.get(len(grad))
	activationGradInto(act, d, out, grad)
	return d
}

// activationGradInto writes into d the gradient before the activation.
func activationGradInto(act string, d, out, grad []float32) {
	grad, d = grad[:len(out)], d[:len(out)]
	switch act {
	case "relu":
		// Without a branch (which way it goes is a coin toss per value):
		// the output is +0 or positive, so its bits are 0 exactly where
		// the gradient stops.
		for i, o := range out {
			keep := uint32(int32(-math.Float32bits(o)) >> 31)
			d[i] = math.Float32frombits(math.Float32bits(grad[i]) & keep)
		}
	case "sigmoid":
		for i, o := range out {
			d[i] = grad[i] * o * (1 - o)
		}
	case "tanh":
		for i, o := range out {
			d[i] = grad[i] * (1 - o*o)
		}
	default:
		copy(d, grad)
	}
}

// pickOp hands on one gradient a backward op computed alongside the one
// it returned.
type pickOp struct {
	trainOp
	shape tensor.Shape
	from  *[]float32
}

func pick(back *G.Node, shape tensor.Shape, from *[]float32) (*G.Node, error) {
	return G.ApplyOp(&pickOp{trainOp: newTrainOp("pick", len(shape), back), shape: shape.Clone(), from: from}, back)
}

func (op *pickOp) InferShape(...G.DimSizer) (tensor.Shape, error) { return op.shape.Clone(), nil }

func (op *pickOp) Do(...G.Value) (G.Value, error) {
	if len(*op.from) != op.shape.TotalSize() {
		return nil, fmt.Errorf("%s: the backward pass left %d values, want %v", op, len(*op.from), op.shape)
	}
	return tensorOf(*op.from, op.shape), nil
}

func (op *pickOp) DiffWRT(int) []bool { return []bool{false} }
func (op *pickOp) SymDiff(G.Nodes, *G.Node, *G.Node) (G.Nodes, error) {
	return nil, fmt.Errorf("%s has no gradient", op)
}

// trainDenseOp is act(x·W + b) for x [rows, k], W [k, units], b [units].
type trainDenseOp struct {
	trainOp
	activation string
	// inputGrad is false for a layer nothing trainable comes before: the
	// gradient of its input would go nowhere.
	inputGrad bool
	out       buffer
	// The backward pass's results.
	dz, dx   buffer
	dW, db   []float32
	dWb, dbb buffer
	sums     []float64
}

func trainDense(x, w, b *G.Node, activation string, inputGrad bool) (*G.Node, error) {
	return G.ApplyOp(&trainDenseOp{trainOp: newTrainOp("dense", 2, x, w, b), activation: activation, inputGrad: inputGrad}, x, w, b)
}

func (op *trainDenseOp) InferShape(in ...G.DimSizer) (tensor.Shape, error) { return denseShape(in...) }

func (op *trainDenseOp) Do(in ...G.Value) (G.Value, error) {
	v, err := float32s(op.String(), in...)
	if err != nil {
		return nil, err
	}
	x, w, b := v[0], v[1], v[2]
	rows, units := len(x)/(len(w)/len(b)), len(b)
	out := op.out.get(rows * units)
	denseRows(out, x, w, b, op.activation)
	return tensorOf(out, tensor.Shape{rows, units}), nil
}

func (op *trainDenseOp) DiffWRT(int) []bool { return []bool{op.inputGrad, true, true} }

func (op *trainDenseOp) SymDiff(in G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	back := &denseBackOp{trainOp: newTrainOp("denseback", in[0].Dims(), in[0], in[1], out, grad), fwd: op, xShape: in[0].Shape().Clone()}
	return layerGrads(back, in, out, grad, &op.dW, &op.db)
}

// layerGrads applies a layer's backward op to (x, W, out, grad): its node
// is x's gradient, and pick nodes hand on the gradients of W and b it
// leaves in *dW and *db.
func layerGrads(backOp G.Op, in G.Nodes, out, grad *G.Node, dW, db *[]float32) (G.Nodes, error) {
	back, err := G.ApplyOp(backOp, in[0], in[1], out, grad)
	if err != nil {
		return nil, err
	}
	dWNode, err := pick(back, in[1].Shape(), dW)
	if err != nil {
		return nil, err
	}
	dbNode, err := pick(back, in[2].Shape(), db)
	if err != nil {
		return nil, err
	}
	return G.Nodes{back, dWNode, dbNode}, nil
}

// denseBackOp takes x, W, the layer's output and its gradient, returns
// the gradient of x (a placeholder when nothing needs it) and leaves
// those of W and b in the forward op.
type denseBackOp struct {
	trainOp
	fwd    *trainDenseOp
	xShape tensor.Shape
}

func (op *denseBackOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	if !op.fwd.inputGrad {
		return tensor.Shape{1, 1}, nil
	}
	return op.xShape.Clone(), nil
}

func (op *denseBackOp) Do(in ...G.Value) (G.Value, error) {
	v, err := float32s(op.String(), in...)
	if err != nil {
		return nil, err
	}
	f := op.fwd
	x, w, out, grad := v[0], v[1], v[2], v[3]
	k := op.xShape[1]
	units := len(w) / k
	rows := len(x) / k
	dz := activationGrad(f.activation, out, grad, &f.dz)
	f.dW = f.dWb.get(k * units)
	G.WhichBLAS().Sgemm(blas.Trans, blas.NoTrans, k, units, rows, 1, x, k, dz, units, 0, f.dW, units)
	f.db = f.dbb.get(units)
	if len(f.sums) != units {
		f.sums = make([]float64, units)
	}
	columnSums(f.db, dz, f.sums)
	if !f.inputGrad {
		return tensorOf(f.dx.get(1), tensor.Shape{1, 1}), nil
	}
	dx := f.dx.get(rows * k)
	G.WhichBLAS().Sgemm(blas.NoTrans, blas.Trans, rows, k, units, 1, dz, units, w, units, 0, dx, k)
	return tensorOf(dx, op.xShape), nil
}

func (op *denseBackOp) DiffWRT(int) []bool { return []bool{false, false, false, false} }
func (op *denseBackOp) SymDiff(G.Nodes, *G.Node, *G.Node) (G.Nodes, error) {
	return nil, fmt.Errorf("%s has no gradient", op)
}

// columnSums writes the sums of m's columns (rows as long as sums) into
// sums, adding in float64 (acc, as long) and in row order.
func columnSums(sums, m []float32, acc []float64) {
	width := len(sums)
	clear(acc)
	for r := 0; r+width <= len(m); r += width {
		for j, v := range m[r : r+width] {
			acc[j] += float64(v)
		}
	}
	for j, a := range acc {
		sums[j] = float32(a)
	}
}

// convGeometry is a convolution over NCHW: c channels of h×w in, f
// filters of kh×kw, oh×ow out, pads [top, left, bottom, right].
type convGeometry struct {
	c, h, w, f, kh, kw, oh, ow int
	stride, pads, dil          []int
}

func (g *convGeometry) taps() int  { return g.c * g.kh * g.kw }
func (g *convGeometry) cells() int { return g.oh * g.ow }

// trainConvOp is act(conv(x, W) + b) for x [batch, c, h, w], W [f, c, kh,
// kw], b [f]. Examples go in groups of a fixed size (about convColumns
// columns per product, whatever the number of threads), so a model
// trains to the same values on any machine.
type trainConvOp struct {
	trainOp
	geo        convGeometry
	activation string
	inputGrad  bool
	batch      int
	group      int
	out        buffer
	// Per worker: the windows and a product; per group: its share of the
	// weights' gradients, summed in group order, and, when they fit in
	// keepWindowsBytes, its windows, which the backward pass then reads
	// instead of laying them out again.
	cols, prods     []buffer
	kept            []buffer
	dx              buffer
	dWParts, dbPart []buffer
	dW, db          []float32
	dWb, dbb        buffer
}

func trainConv(x, w, b *G.Node, geo convGeometry, activation string, inputGrad bool) (*G.Node, error) {
	batch := x.Shape()[0]
	group := max(1, min(batch, convColumns/geo.cells()))
	workers := runtime.GOMAXPROCS(0)
	op := &trainConvOp{trainOp: newTrainOp("conv", 4, x, w, b), geo: geo, activation: activation, inputGrad: inputGrad,
		batch: batch, group: group, cols: make([]buffer, workers), prods: make([]buffer, workers)}
	if int64(geo.taps())*int64(batch)*int64(geo.cells())*4 <= keepWindowsBytes {
		op.kept = make([]buffer, op.groups())
	}
	return G.ApplyOp(op, x, w, b)
}

func (op *trainConvOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	return tensor.Shape{op.batch, op.geo.f, op.geo.oh, op.geo.ow}, nil
}

func (op *trainConvOp) groups() int { return (op.batch + op.group - 1) / op.group }

// eachGroup runs f on every group of examples [lo, hi), spread over the
// workers, each with its index for buffers of its own.
func (op *trainConvOp) eachGroup(f func(worker, g, lo, hi int)) {
	parallel(op.groups(), len(op.cols), func(wi, glo, ghi int) {
		for g := glo; g < ghi; g++ {
			f(wi, g, g*op.group, min((g+1)*op.group, op.batch))
		}
	})
}

// keepWindowsBytes bounds the windows a convolution keeps from its
// forward pass for its backward pass (laying them out twice took a fifth
// of the seed's CNN's step).
const keepWindowsBytes = 64 << 20

// im2col lays out the windows of examples [lo, hi) (group gi) of x as the
// columns of a matrix [taps, (hi−lo)·cells]: the group's own, kept for
// the backward pass, or the worker's.
func (op *trainConvOp) im2col(wi, gi int, x []float32, lo, hi int) []float32 {
	g := &op.geo
	n := (hi - lo) * g.cells()
	buf := &op.cols[wi]
	if op.kept != nil {
		buf = &op.kept[gi]
	}
	col := buf.get(g.taps() * n)
	inLen := g.c * g.h * g.w
	for e := lo; e < hi; e++ {
		im2colAt(col, n, (e-lo)*g.cells(), x[e*inLen:(e+1)*inLen], g.c, g.h, g.w, g.kh, g.kw, g.oh, g.ow, g.stride, g.pads, g.dil)
	}
	return col
}

func (op *trainConvOp) Do(in ...G.Value) (G.Value, error) {
	v, err := float32s(op.String(), in...)
	if err != nil {
		return nil, err
	}
	x, w, b := v[0], v[1], v[2]
	g := &op.geo
	cells, outLen := g.cells(), g.f*g.cells()
	y := op.out.get(op.batch * outLen)
	op.eachGroup(func(wi, gi, lo, hi int) {
		col := op.im2col(wi, gi, x, lo, hi)
		n := (hi - lo) * cells
		prod := op.prods[wi].get(g.f * n)
		G.WhichBLAS().Sgemm(blas.NoTrans, blas.NoTrans, g.f, n, g.taps(), 1, w, g.taps(), col, n, 0, prod, n)
		for e := lo; e < hi; e++ {
			dst := y[e*outLen : (e+1)*outLen]
			biasOut(dst, prod, n, (e-lo)*cells, cells, b, op.activation == "relu")
			if op.activation != "relu" {
				activateRows(dst, cells, op.activation)
			}
		}
	})
	return tensorOf(y, tensor.Shape{op.batch, g.f, g.oh, g.ow}), nil
}

func (op *trainConvOp) DiffWRT(int) []bool { return []bool{op.inputGrad, true, true} }

func (op *trainConvOp) SymDiff(in G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	back := &convBackOp{trainOp: newTrainOp("convback", 4, in[0], in[1], out, grad), fwd: op}
	return layerGrads(back, in, out, grad, &op.dW, &op.db)
}

// convBackOp takes x, W, the convolution's output and its gradient. Per
// group of examples: the windows (kept from the forward pass, or laid out
// again), the
// gradient gathered into [f, columns], the weights' share as that times
// the windows' transpose, and the input's as col2im of Wᵀ times it.
type convBackOp struct {
	trainOp
	fwd *trainConvOp
}

func (op *convBackOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	f := op.fwd
	if !f.inputGrad {
		return tensor.Shape{1, 1, 1, 1}, nil
	}
	return tensor.Shape{f.batch, f.geo.c, f.geo.h, f.geo.w}, nil
}

func (op *convBackOp) Do(in ...G.Value) (G.Value, error) {
	v, err := float32s(op.String(), in...)
	if err != nil {
		return nil, err
	}
	f := op.fwd
	g := &f.geo
	x, w, out, grad := v[0], v[1], v[2], v[3]
	cells, outLen, inLen, taps := g.cells(), g.f*g.cells(), g.c*g.h*g.w, g.taps()
	groups := f.groups()
	if len(f.dWParts) < groups {
		f.dWParts, f.dbPart = make([]buffer, groups), make([]buffer, groups)
	}
	var dx []float32
	if f.inputGrad {
		dx = f.dx.get(f.batch * inLen)
	}
	f.eachGroup(func(wi, gi, lo, hi int) {
		n := (hi - lo) * cells
		var col []float32
		if f.kept != nil {
			col = f.kept[gi] // the forward pass's windows
		} else {
			col = f.im2col(wi, gi, x, lo, hi)
		}
		// The gradient before the activation, gathered into [f, n].
		dzc := f.prods[wi].get(g.f * n)
		for e := lo; e < hi; e++ {
			for fi := 0; fi < g.f; fi++ {
				at := e*outLen + fi*cells
				activationGradInto(f.activation, dzc[fi*n+(e-lo)*cells:][:cells], out[at:at+cells], grad[at:at+cells])
			}
		}
		dW := f.dWParts[gi].get(g.f * taps)
		G.WhichBLAS().Sgemm(blas.NoTrans, blas.Trans, g.f, taps, n, 1, dzc, n, col, n, 0, dW, taps)
		db := f.dbPart[gi].get(g.f)
		for fi := range db {
			var s float64
			for _, d := range dzc[fi*n : (fi+1)*n] {
				s += float64(d)
			}
			db[fi] = float32(s)
		}
		if dx == nil {
			return
		}
		// The windows are spent: their gradient takes their place.
		G.WhichBLAS().Sgemm(blas.Trans, blas.NoTrans, taps, n, g.f, 1, w, taps, dzc, n, 0, col, n)
		for e := lo; e < hi; e++ {
			dst := dx[e*inLen : (e+1)*inLen]
			clear(dst)
			col2imAt(dst, col, n, (e-lo)*cells, g.c, g.h, g.w, g.kh, g.kw, g.oh, g.ow, g.stride, g.pads, g.dil)
		}
	})
	f.dW = f.dWb.get(g.f * taps)
	copy(f.dW, f.dWParts[0])
	for gi := 1; gi < groups; gi++ {
		for i, d := range f.dWParts[gi] {
			f.dW[i] += d
		}
	}
	f.db = f.dbb.get(g.f)
	copy(f.db, f.dbPart[0])
	for gi := 1; gi < groups; gi++ {
		for i, d := range f.dbPart[gi] {
			f.db[i] += d
		}
	}
	if dx == nil {
		return tensorOf(f.dx.get(1), tensor.Shape{1, 1, 1, 1}), nil
	}
	return tensorOf(dx, tensor.Shape{f.batch, g.c, g.h, g.w}), nil
}

func (op *convBackOp) DiffWRT(int) []bool { return []bool{false, false, false, false} }
func (op *convBackOp) SymDiff(G.Nodes, *G.Node, *G.Node) (G.Nodes, error) {
	return nil, fmt.Errorf("%s has no gradient", op)
}

// col2imAt adds columns first..first+oh·ow of col (rows n long, laid out
// as im2colAt's) back onto the input positions they were read from: the
// gradient of im2colAt.
func col2imAt(dx, col []float32, n, first int, c, h, w, kh, kw, oh, ow int, stride, pads, dil []int) {
	cells := oh * ow
	for ci := 0; ci < c; ci++ {
		plane := dx[ci*h*w : (ci+1)*h*w]
		for ky := 0; ky < kh; ky++ {
			for kx := 0; kx < kw; kx++ {
				src := col[((ci*kh+ky)*kw+kx)*n+first:][:cells]
				for oy := 0; oy < oh; oy++ {
					y := oy*stride[0] - pads[0] + ky*dil[0]
					if y < 0 || y >= h {
						continue
					}
					row := src[oy*ow : (oy+1)*ow]
					dst := plane[y*w : (y+1)*w]
					x0 := kx*dil[1] - pads[1]
					if stride[1] == 1 && x0 >= 0 && x0+ow <= w {
						to := dst[x0 : x0+ow]
						to = to[:len(row)]
						for ox, d := range row {
							to[ox] += d
						}
						continue
					}
					for ox, d := range row {
						if xx := x0 + ox*stride[1]; xx >= 0 && xx < w {
							dst[xx] += d
						}
					}
				}
			}
		}
	}
}

// softmaxCrossEntropyOp is the mean over rows of −Σ y·log softmax(z), for
// logits z and targets y [rows, classes]; it keeps the probabilities for
// its gradient, (softmax(z) − y)/rows.
type softmaxCrossEntropyOp struct {
	trainOp
	probs buffer
	dz    buffer
}

func softmaxCrossEntropy(z, y *G.Node) (*G.Node, error) {
	return G.ApplyOp(&softmaxCrossEntropyOp{trainOp: newTrainOp("softmaxce", 0, z, y)}, z, y)
}

func (op *softmaxCrossEntropyOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	return tensor.ScalarShape(), nil
}

func (op *softmaxCrossEntropyOp) Do(in ...G.Value) (G.Value, error) {
	v, err := float32s(op.String(), in...)
	if err != nil {
		return nil, err
	}
	z, y := v[0], v[1]
	classes := in[0].Shape()[1]
	p := op.probs.get(len(z))
	copy(p, z)
	var loss float64
	for r := 0; r+classes <= len(z); r += classes {
		row, target := p[r:r+classes], y[r:r+classes]
		top := row[0]
		for _, x := range row {
			top = max(top, x)
		}
		var sum float64
		for _, x := range row {
			sum += math.Exp(float64(x - top))
		}
		logSum := math.Log(sum)
		for i, x := range row {
			logp := float64(x-top) - logSum
			if target[i] != 0 {
				loss -= float64(target[i]) * logp
			}
			row[i] = float32(math.Exp(logp))
		}
	}
	rows := len(z) / classes
	return G.NewF32(float32(loss / float64(rows))), nil
}

func (op *softmaxCrossEntropyOp) DiffWRT(int) []bool { return []bool{true, false} }

func (op *softmaxCrossEntropyOp) SymDiff(in G.Nodes, _, grad *G.Node) (G.Nodes, error) {
	back, err := G.ApplyOp(&softmaxCrossEntropyBackOp{trainOp: newTrainOp("softmaxceback", 2, in[0], in[1], grad), fwd: op, shape: in[0].Shape().Clone()}, in[0], in[1], grad)
	if err != nil {
		return nil, err
	}
	return G.Nodes{back, nil}, nil
}

type softmaxCrossEntropyBackOp struct {
	trainOp
	fwd   *softmaxCrossEntropyOp
	shape tensor.Shape
}

func (op *softmaxCrossEntropyBackOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	return op.shape.Clone(), nil
}

func (op *softmaxCrossEntropyBackOp) Do(in ...G.Value) (G.Value, error) {
	v, err := float32s(op.String(), in...)
	if err != nil {
		return nil, err
	}
	y, g := v[1], v[2]
	p := op.fwd.probs
	if len(p) != len(y) {
		return nil, fmt.Errorf("%s: the forward pass left %d probabilities for %d targets", op, len(p), len(y))
	}
	scale := g[0] / float32(op.shape[0])
	dz := op.fwd.dz.get(len(p))
	for i, pi := range p {
		dz[i] = (pi - y[i]) * scale
	}
	return tensorOf(dz, op.shape), nil
}

func (op *softmaxCrossEntropyBackOp) DiffWRT(int) []bool { return []bool{false, false, false} }
func (op *softmaxCrossEntropyBackOp) SymDiff(G.Nodes, *G.Node, *G.Node) (G.Nodes, error) {
	return nil, fmt.Errorf("%s has no gradient", op)
}

// trainMaxPoolOp is a max pooling whose windows lie inside the input (no
// padding, no dilation), over NCHW: it keeps where each maximum was, and
// its gradient sends each output's gradient back there. Gorgonia's took a
// fifth of the seed's CNN's training step.
type trainMaxPoolOp struct {
	trainOp
	planes, h, w, oh, ow int
	k, stride            []int
	inShape, outShape    tensor.Shape
	inputGrad            bool
	out, dx              buffer
	at                   []int32
}

func trainMaxPool(x *G.Node, k, stride []int, outShape []int, inputGrad bool) (*G.Node, error) {
	in := x.Shape()
	op := &trainMaxPoolOp{trainOp: newTrainOp("maxpool", 4, x), planes: in[0] * in[1], h: in[2], w: in[3],
		oh: outShape[2], ow: outShape[3], k: k, stride: stride,
		inShape: in.Clone(), outShape: tensor.Shape(outShape).Clone(), inputGrad: inputGrad}
	return G.ApplyOp(op, x)
}

func (op *trainMaxPoolOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	return op.outShape.Clone(), nil
}

func (op *trainMaxPoolOp) Do(in ...G.Value) (G.Value, error) {
	v, err := float32s(op.String(), in...)
	if err != nil {
		return nil, err
	}
	x := v[0]
	h, w, oh, ow := op.h, op.w, op.oh, op.ow
	y := op.out.get(op.planes * oh * ow)
	if len(op.at) != len(y) {
		op.at = make([]int32, len(y))
	}
	kh, kw, sh, sw := op.k[0], op.k[1], op.stride[0], op.stride[1]
	parallel(op.planes, runtime.GOMAXPROCS(0), func(_, lo, hi int) {
		for plane := lo; plane < hi; plane++ {
			src := x[plane*h*w : (plane+1)*h*w]
			dst, at := y[plane*oh*ow:(plane+1)*oh*ow], op.at[plane*oh*ow:(plane+1)*oh*ow]
			first := int32(plane * h * w)
			for oy := 0; oy < oh; oy++ {
				for ox := 0; ox < ow; ox++ {
					base := oy*sh*w + ox*sw
					best, bestAt := math.Float32bits(src[base]), int32(base)
					for ky := 0; ky < kh; ky++ {
						row := src[base+ky*w : base+ky*w+kw]
						for kx, v := range row {
							// Without a branch (which value wins is a coin
							// toss; with one the pooling took a fifth of the
							// seed's CNN's step): best − v is negative
							// exactly when v is larger, and the first of
							// equal values keeps the place.
							vb := math.Float32bits(v)
							larger := int32(math.Float32bits(math.Float32frombits(best)-v)) >> 31
							best = best&^uint32(larger) | vb&uint32(larger)
							bestAt = bestAt&^larger | int32(base+ky*w+kx)&larger
						}
					}
					dst[oy*ow+ox], at[oy*ow+ox] = math.Float32frombits(best), first+bestAt
				}
			}
		}
	})
	return tensorOf(y, op.outShape), nil
}

func (op *trainMaxPoolOp) DiffWRT(int) []bool { return []bool{op.inputGrad} }

func (op *trainMaxPoolOp) SymDiff(in G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	back, err := G.ApplyOp(&maxPoolBackOp{trainOp: newTrainOp("maxpoolback", 4, grad), fwd: op}, grad)
	if err != nil {
		return nil, err
	}
	return G.Nodes{back}, nil
}

type maxPoolBackOp struct {
	trainOp
	fwd *trainMaxPoolOp
}

func (op *maxPoolBackOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	return op.fwd.inShape.Clone(), nil
}

func (op *maxPoolBackOp) Do(in ...G.Value) (G.Value, error) {
	v, err := float32s(op.String(), in...)
	if err != nil {
		return nil, err
	}
	f := op.fwd
	grad := v[0]
	if len(grad) != len(f.at) {
		return nil, fmt.Errorf("%s: %d gradients for %d pooled values", op, len(grad), len(f.at))
	}
	dx := f.dx.get(f.inShape.TotalSize())
	// Each plane's maxima lie in the plane: the planes go to the threads.
	plane, pooled := f.h*f.w, f.oh*f.ow
	parallel(f.planes, runtime.GOMAXPROCS(0), func(_, lo, hi int) {
		clear(dx[lo*plane : hi*plane])
		at := f.at[lo*pooled : hi*pooled]
		for o, g := range grad[lo*pooled : hi*pooled] {
			dx[at[o]] += g
		}
	})
	return tensorOf(dx, f.inShape), nil
}

func (op *maxPoolBackOp) DiffWRT(int) []bool { return []bool{false} }
func (op *maxPoolBackOp) SymDiff(G.Nodes, *G.Node, *G.Node) (G.Nodes, error) {
	return nil, fmt.Errorf("%s has no gradient", op)
}
