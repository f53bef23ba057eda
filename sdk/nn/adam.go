package nn

import (
	"fmt"
	"math"
	"runtime"

	G "gorgonia.org/gorgonia"
)

// adam is the Adam update in place: one pass over each weight array per
// step, its moments kept in arrays made once. Gorgonia's AdamSolver took
// 80% of an MNIST MLP epoch (batch 128), cloning every gradient and
// moment into new tensors each step; this does the same float32
// arithmetic in the same order, except that moments below flushBelow
// count as zero.
type adam struct {
	lr, beta1, beta2, eps, l2 float64
	iter                      int
	m, v                      [][]float32
}

func newAdam(lr, l2 float64) *adam {
	return &adam{lr: lr, beta1: 0.9, beta2: 0.999, eps: 1e-7, l2: l2}
}

// Step updates each parameter by its gradient and zeroes the gradient
// (the backward pass adds into it).
func (a *adam) Step(params []*G.Node) error {
	if a.m == nil {
		a.m, a.v = make([][]float32, len(params)), make([][]float32, len(params))
	}
	a.iter++
	// As gorgonia computes them: the corrections in float64, their
	// inverses, the rates and ε in float32.
	correction1 := 1 - math.Pow(a.beta1, float64(a.iter))
	correction2 := 1 - math.Pow(a.beta2, float64(a.iter))
	inv1, inv2 := float32(1)/float32(correction1), float32(1)/float32(correction2)
	beta1, beta2 := float32(a.beta1), float32(a.beta2)
	omb1, omb2 := float32(1)-beta1, float32(1)-beta2
	eps, negEta, l2 := float32(a.eps), -float32(a.lr), float32(a.l2)
	for i, p := range params {
		w, ok := p.Value().Data().([]float32)
		if !ok {
			return fmt.Errorf("adam: parameter %s is %T, not float32", p.Name(), p.Value().Data())
		}
		gv, err := p.Grad()
		if err != nil {
			return fmt.Errorf("adam: no gradient for %s: %w", p.Name(), err)
		}
		g, ok := gv.Data().([]float32)
		if !ok || len(g) != len(w) {
			return fmt.Errorf("adam: the gradient of %s is not %d float32s", p.Name(), len(w))
		}
		if a.m[i] == nil {
			a.m[i], a.v[i] = make([]float32, len(w)), make([]float32, len(w))
		}
		m, v := a.m[i], a.v[i]
		k := adamKernel{beta1: beta1, beta2: beta2, omb1: omb1, omb2: omb2, inv1: inv1, inv2: inv2, eps: eps, negEta: negEta, l2: l2}
		if len(w) < adamParallelFrom {
			k.update(w, g, m, v)
			continue
		}
		parallel(len(w), runtime.GOMAXPROCS(0), func(_, lo, hi int) {
			k.update(w[lo:hi], g[lo:hi], m[lo:hi], v[lo:hi])
		})
	}
	return nil
}

// adamParallelFrom is the size from which an array's update is spread
// over the threads: elementwise, so the result is the same however it is
// split.
const adamParallelFrom = 1 << 14

// adamKernel is one step's constants.
type adamKernel struct {
	beta1, beta2, omb1, omb2, inv1, inv2, eps, negEta, l2 float32
}

// flushBelow is where a moment counts as zero. A weight whose gradient
// stops (a dead unit, an input that is always 0) has its moments decay
// geometrically through float32's subnormal range, where each operation
// costs the CPU about 50 times a normal one: Adam's step took 60 ns a
// weight instead of 2 on data that led there. Updates this small change
// nothing a float32 weight can hold.
const flushBelow = 1e-30

func (k *adamKernel) update(w, g, m, v []float32) {
	// In locals: read through k, each would be loaded again after every
	// store to the arrays.
	beta1, beta2, omb1, omb2, inv1, inv2, eps, negEta, l2 := k.beta1, k.beta2, k.omb1, k.omb2, k.inv1, k.inv2, k.eps, k.negEta, k.l2
	m, v, g = m[:len(w)], v[:len(w)], g[:len(w)]
	for j := range w {
		gj := g[j]
		if l2 != 0 {
			gj += w[j] * l2
		}
		t1 := gj * omb1
		// A gradient below 1e-15 squares to a subnormal: it counts as 0
		// there.
		gs := flushTiny(gj, tinyGradient)
		g2 := gs * gs
		g2 *= omb2
		t1 += m[j] * beta1
		g2 += v[j] * beta2
		t1, g2 = flushTiny(t1, tinyMoment), flushTiny(g2, tinyMoment)
		m[j], v[j] = t1, g2
		mHat := t1 * inv1
		vHat := g2 * inv2
		vHat = float32(math.Sqrt(float64(vHat))) + eps
		mHat *= negEta
		w[j] += mHat / vHat
		g[j] = 0
	}
}

// The bits of |x| below which flushTiny makes x zero.
var (
	tinyGradient = math.Float32bits(1e-15)
	tinyMoment   = math.Float32bits(flushBelow)
)

// flushTiny is 0 when |x| is below the float32 whose bits are below, else
// x, without a branch: which way it goes varies from weight to weight.
func flushTiny(x float32, below uint32) float32 {
	b := math.Float32bits(x)
	small := uint32(int32((b&0x7fffffff)-below) >> 31) // all ones when smaller
	return math.Float32frombits(b &^ small)
}
